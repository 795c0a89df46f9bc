"""Private subnets, Elastic IPs, NAT gateways and the private route tables."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.aws_clients import AwsClients
from activities.consistency import delete_by_id, delete_each, delete_every, if_known, until_visible
from activities.errors import aws_errors, ignore_not_found
from activities.tags import all_tagged, client_token, earlier, first_tagged, key_filters, tag_specifications
from activities.waits import wait_for
from models.nat_switch import RouteTableSwitchInput
from models.resources import (
    Deleted,
    DeleteInput,
    ElasticIp,
    Kind,
    NatGatewayInput,
    Resource,
    ResourceKey,
    RouteTableInput,
    SubnetInput,
)

LIVE_NAT_STATES = ["pending", "available"]
DEFAULT_ROUTE = "0.0.0.0/0"


class NetworkActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    # Subnets

    def _find_subnet(self, key: ResourceKey) -> dict[str, Any] | None:
        subnets = self._aws.ec2(key.scope.region).describe_subnets(Filters=key_filters(key))
        return first_tagged(subnets["Subnets"], key)

    @activity.defn
    @aws_errors
    def create_private_subnet(self, request: SubnetInput) -> Resource:
        key = request.key
        subnet = (
            earlier(key, lambda: self._find_subnet(key))
            or self._aws.ec2(key.scope.region, creates=True).create_subnet(
                VpcId=request.vpc_id,
                CidrBlock=request.cidr,
                AvailabilityZone=request.availability_zone,
                TagSpecifications=tag_specifications(key, "subnet"),
            )["Subnet"]
        )
        return Resource(kind=Kind.SUBNET, name=key.name, id=subnet["SubnetId"])

    @activity.defn
    @aws_errors
    def delete_subnet(self, request: DeleteInput) -> Deleted:
        key = request.key
        ec2 = self._aws.ec2(key.scope.region)

        def tagged() -> list[str]:
            return [
                s["SubnetId"]
                for s in all_tagged(ec2.describe_subnets(Filters=key_filters(key))["Subnets"], key)
            ]

        return delete_every(request, Kind.SUBNET, tagged, lambda i: ec2.delete_subnet(SubnetId=i))

    # Elastic IPs

    def _find_address(self, key: ResourceKey) -> dict[str, Any] | None:
        addresses = self._aws.ec2(key.scope.region).describe_addresses(Filters=key_filters(key))
        return first_tagged(addresses["Addresses"], key)

    @activity.defn
    @aws_errors
    def allocate_elastic_ip(self, key: ResourceKey) -> ElasticIp:
        address = earlier(key, lambda: self._find_address(key)) or self._aws.ec2(
            key.scope.region, creates=True
        ).allocate_address(Domain="vpc", TagSpecifications=tag_specifications(key, "elastic-ip"))
        return ElasticIp(allocation_id=address["AllocationId"], public_ip=address["PublicIp"])

    @activity.defn
    @aws_errors
    def release_elastic_ip(self, request: DeleteInput) -> Deleted:
        key = request.key
        ec2 = self._aws.ec2(key.scope.region)

        def tagged() -> list[str]:
            addresses = ec2.describe_addresses(Filters=key_filters(key))["Addresses"]
            return [a["AllocationId"] for a in all_tagged(addresses, key)]

        return delete_every(request, Kind.ELASTIC_IP, tagged, lambda i: ec2.release_address(AllocationId=i))

    # NAT gateways

    def _nat_gateways(self, key: ResourceKey, states: list[str]) -> list[dict[str, Any]]:
        filters = [*key_filters(key), {"Name": "state", "Values": states}]
        return all_tagged(
            self._aws.ec2(key.scope.region).describe_nat_gateways(Filters=filters)["NatGateways"], key
        )

    def _find_nat_gateway(self, key: ResourceKey, states: list[str]) -> dict[str, Any] | None:
        return next(iter(self._nat_gateways(key, states)), None)

    @activity.defn
    @aws_errors
    def create_nat_gateway(self, request: NatGatewayInput) -> Resource:
        key = request.key
        region = key.scope.region
        gateway = earlier(key, lambda: self._find_nat_gateway(key, LIVE_NAT_STATES)) or until_visible(
            # The address may be seconds old; the token makes the call safe to repeat.
            lambda: self._aws.ec2(region, creates=True).create_nat_gateway(
                SubnetId=request.subnet_id,
                AllocationId=request.allocation_id,
                ClientToken=client_token(key, activity.info().workflow_run_id),
                TagSpecifications=tag_specifications(key, "natgateway"),
            )["NatGateway"],
            f"address {request.allocation_id}",
        )
        gateway_id = gateway["NatGatewayId"]
        wait_for(
            self._aws.ec2(region),
            "nat_gateway_available",
            request.waiting,
            f"NAT gateway {gateway_id} to be available",
            NatGatewayIds=[gateway_id],
        )
        return Resource(kind=Kind.NAT_GATEWAY, name=key.name, id=gateway_id)

    @activity.defn
    @aws_errors
    def delete_nat_gateway(self, request: DeleteInput) -> Deleted:
        """Wait for `deleted`: until then the Elastic IP stays attached and cannot be released."""
        key = request.key
        states = [*LIVE_NAT_STATES, "deleting", "failed"]

        def tagged() -> list[str]:
            return [g["NatGatewayId"] for g in self._nat_gateways(key, states)]

        return delete_each(request, Kind.NAT_GATEWAY, tagged, lambda i: self._delete_nat_gateway(request, i))

    def _delete_nat_gateway(self, request: DeleteInput, gateway_id: str) -> None:
        ec2 = self._aws.ec2(request.key.scope.region)
        what = f"NAT gateway {gateway_id}"
        # Described first: moto answers HTTP 500 for unknown ids instead of NotFound.
        gateways = if_known(
            request, lambda: ec2.describe_nat_gateways(NatGatewayIds=[gateway_id])["NatGateways"], what
        )
        if not gateways or gateways[0]["State"] == "deleted":
            return
        if gateways[0]["State"] != "deleting":
            ignore_not_found(lambda: ec2.delete_nat_gateway(NatGatewayId=gateway_id))
        wait_for(
            ec2, "nat_gateway_deleted", request.waiting, f"{what} to be deleted", NatGatewayIds=[gateway_id]
        )

    # Route tables

    def _find_route_table(self, key: ResourceKey) -> dict[str, Any] | None:
        tables = self._aws.ec2(key.scope.region).describe_route_tables(Filters=key_filters(key))
        return first_tagged(tables["RouteTables"], key)

    @activity.defn
    @aws_errors
    def create_private_route_table(self, request: RouteTableInput) -> Resource:
        """Table, default route to the NAT, subnet associations: each made only if missing."""
        key = request.key
        create = self._aws.ec2(key.scope.region, creates=True)
        table = (
            earlier(key, lambda: self._find_route_table(key))
            or create.create_route_table(
                VpcId=request.vpc_id,
                ClientToken=client_token(key, activity.info().workflow_run_id),
                TagSpecifications=tag_specifications(key, "route-table"),
            )["RouteTable"]
        )
        table_id = table["RouteTableId"]
        default = next(
            (r for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == DEFAULT_ROUTE),
            None,
        )
        # The table (and a subnet) may be seconds old: each call names them, so each waits for AWS
        # to know them.
        if default is None:
            until_visible(
                lambda: create.create_route(
                    RouteTableId=table_id,
                    DestinationCidrBlock=DEFAULT_ROUTE,
                    NatGatewayId=request.nat_gateway_id,
                ),
                f"route table {table_id}",
            )
        elif default.get("NatGatewayId") != request.nat_gateway_id:
            until_visible(
                lambda: create.replace_route(
                    RouteTableId=table_id,
                    DestinationCidrBlock=DEFAULT_ROUTE,
                    NatGatewayId=request.nat_gateway_id,
                ),
                f"route table {table_id}",
            )
        associated = {a.get("SubnetId") for a in table.get("Associations", [])}
        for subnet_id in request.subnet_ids:
            if subnet_id not in associated:
                until_visible(
                    lambda s=subnet_id: create.associate_route_table(RouteTableId=table_id, SubnetId=s),
                    f"route table {table_id} and subnet {subnet_id}",
                )
        return Resource(kind=Kind.ROUTE_TABLE, name=key.name, id=table_id)

    @activity.defn
    @aws_errors
    def switch_route_table(self, request: RouteTableSwitchInput) -> Resource:
        """Move a subnet to a route table in one call (ReplaceRouteTableAssociation), so it always has
        one: a NAT mode switch and its rollback never leave a subnet on the VPC's main table. The
        association's id changes with every move, so a lost reply is found again by describing (a
        re-sent replace would name an id that no longer exists: botocore's retries are off)."""
        key = request.key
        ec2, create = self._aws.ec2(key.scope.region), self._aws.ec2(key.scope.region, creates=True)
        subnet, table = request.subnet_id, request.route_table_id
        what = f"route table {table} and subnet {subnet}"
        filters = [{"Name": "association.subnet-id", "Values": [subnet]}]
        current = [
            (t["RouteTableId"], a["RouteTableAssociationId"])
            for t in ec2.describe_route_tables(Filters=filters)["RouteTables"]
            for a in t.get("Associations", [])
            if a.get("SubnetId") == subnet
        ]
        if any(table_id == table for table_id, _ in current):
            return Resource(kind=Kind.ROUTE_TABLE, name=key.name, id=table)
        if current:
            association = current[0][1]
            until_visible(
                lambda: create.replace_route_table_association(AssociationId=association, RouteTableId=table),
                what,
            )
        else:
            until_visible(lambda: create.associate_route_table(RouteTableId=table, SubnetId=subnet), what)
        return Resource(kind=Kind.ROUTE_TABLE, name=key.name, id=table)

    @activity.defn
    @aws_errors
    def delete_route_table(self, request: DeleteInput) -> Deleted:
        key = request.key
        ec2 = self._aws.ec2(key.scope.region)

        def tagged() -> list[str]:
            tables = ec2.describe_route_tables(Filters=key_filters(key))["RouteTables"]
            return [t["RouteTableId"] for t in all_tagged(tables, key)]

        return delete_each(request, Kind.ROUTE_TABLE, tagged, lambda i: self._delete_route_table(request, i))

    def _delete_route_table(self, request: DeleteInput, table_id: str) -> None:
        """Its subnet associations first: AWS refuses to delete an associated table."""
        ec2 = self._aws.ec2(request.key.scope.region)
        what = f"route table {table_id}"
        tables = if_known(
            request, lambda: ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"], what
        )
        if tables is None:
            return
        for table in tables:
            for association in table.get("Associations", []):
                if not association.get("Main"):
                    ignore_not_found(
                        lambda a=association: ec2.disassociate_route_table(
                            AssociationId=a["RouteTableAssociationId"]
                        )
                    )
        delete_by_id(request, lambda: ec2.delete_route_table(RouteTableId=table_id), what)
