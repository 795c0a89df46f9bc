"""Private subnets, Elastic IPs, NAT gateways and the private route tables."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.aws_clients import AwsClients
from activities.errors import aws_errors, ignore_not_found
from activities.tags import client_token, earlier, first_tagged, key_filters, tag_specifications
from activities.waits import wait_for
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
        subnet = self._find_subnet(key)
        if subnet is None:
            return Deleted(kind=Kind.SUBNET, name=key.name)
        ignore_not_found(lambda: self._aws.ec2(key.scope.region).delete_subnet(SubnetId=subnet["SubnetId"]))
        return Deleted(kind=Kind.SUBNET, name=key.name, id=subnet["SubnetId"])

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
        address = self._find_address(key)
        if address is None:
            return Deleted(kind=Kind.ELASTIC_IP, name=key.name)
        allocation_id = address["AllocationId"]
        ignore_not_found(lambda: self._aws.ec2(key.scope.region).release_address(AllocationId=allocation_id))
        return Deleted(kind=Kind.ELASTIC_IP, name=key.name, id=allocation_id)

    # NAT gateways

    def _find_nat_gateway(self, key: ResourceKey, states: list[str]) -> dict[str, Any] | None:
        filters = [*key_filters(key), {"Name": "state", "Values": states}]
        gateways = self._aws.ec2(key.scope.region).describe_nat_gateways(Filters=filters)
        return first_tagged(gateways["NatGateways"], key)

    @activity.defn
    @aws_errors
    def create_nat_gateway(self, request: NatGatewayInput) -> Resource:
        key = request.key
        region = key.scope.region
        gateway = (
            earlier(key, lambda: self._find_nat_gateway(key, LIVE_NAT_STATES))
            or self._aws.ec2(region, creates=True).create_nat_gateway(
                SubnetId=request.subnet_id,
                AllocationId=request.allocation_id,
                ClientToken=client_token(key, activity.info().workflow_run_id),
                TagSpecifications=tag_specifications(key, "natgateway"),
            )["NatGateway"]
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
        ec2 = self._aws.ec2(key.scope.region)
        gateway = self._find_nat_gateway(key, [*LIVE_NAT_STATES, "deleting", "failed"])
        if gateway is None:
            return Deleted(kind=Kind.NAT_GATEWAY, name=key.name)
        gateway_id = gateway["NatGatewayId"]
        if gateway["State"] != "deleting":
            # Described first: moto answers HTTP 500 for unknown ids instead of NotFound.
            ignore_not_found(lambda: ec2.delete_nat_gateway(NatGatewayId=gateway_id))
        wait_for(
            ec2,
            "nat_gateway_deleted",
            request.waiting,
            f"NAT gateway {gateway_id} to be deleted",
            NatGatewayIds=[gateway_id],
        )
        return Deleted(kind=Kind.NAT_GATEWAY, name=key.name, id=gateway_id)

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
        if default is None:
            create.create_route(
                RouteTableId=table_id,
                DestinationCidrBlock=DEFAULT_ROUTE,
                NatGatewayId=request.nat_gateway_id,
            )
        elif default.get("NatGatewayId") != request.nat_gateway_id:
            create.replace_route(
                RouteTableId=table_id,
                DestinationCidrBlock=DEFAULT_ROUTE,
                NatGatewayId=request.nat_gateway_id,
            )
        associated = {a.get("SubnetId") for a in table.get("Associations", [])}
        for subnet_id in request.subnet_ids:
            if subnet_id not in associated:
                create.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)
        return Resource(kind=Kind.ROUTE_TABLE, name=key.name, id=table_id)

    @activity.defn
    @aws_errors
    def delete_route_table(self, request: DeleteInput) -> Deleted:
        key = request.key
        ec2 = self._aws.ec2(key.scope.region)
        table = self._find_route_table(key)
        if table is None:
            return Deleted(kind=Kind.ROUTE_TABLE, name=key.name)
        for association in table.get("Associations", []):
            if not association.get("Main"):
                ignore_not_found(
                    lambda a=association: ec2.disassociate_route_table(
                        AssociationId=a["RouteTableAssociationId"]
                    )
                )
        ignore_not_found(lambda: ec2.delete_route_table(RouteTableId=table["RouteTableId"]))
        return Deleted(kind=Kind.ROUTE_TABLE, name=key.name, id=table["RouteTableId"])
