"""Find every resource of a deployment by its tags, so teardown needs no workflow history."""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity

from activities.aws_clients import AwsClients
from activities.certificates import CertificateActivities, validation_record
from activities.dns import still_ours
from activities.errors import aws_errors
from activities.load_balancing import LOAD_BALANCERS, TARGET_GROUPS, find_by_name, tags_of
from activities.tags import all_owned, owned_by, scope_filters, tag_value
from activities.waits import Heartbeats, pause
from models.naming import (
    ALIAS_RECORD,
    ALIAS_TAG,
    HOSTED_ZONE_TAG,
    RESOURCE_TAG,
    VALIDATION_RECORD,
    listener,
    load_balancer_name,
    target_group_name,
)
from models.resources import DnsRecord, Inventory, Kind, RemainingInput, Resource, Scope

EC2_LOOKUPS: list[tuple[Kind, str, str, str, list[dict[str, Any]]]] = [
    (Kind.SUBNET, "describe_subnets", "Subnets", "SubnetId", []),
    (Kind.ELASTIC_IP, "describe_addresses", "Addresses", "AllocationId", []),
    (
        Kind.NAT_GATEWAY,
        "describe_nat_gateways",
        "NatGateways",
        "NatGatewayId",
        [{"Name": "state", "Values": ["pending", "available", "deleting", "failed"]}],
    ),
    (Kind.ROUTE_TABLE, "describe_route_tables", "RouteTables", "RouteTableId", []),
    (Kind.SECURITY_GROUP, "describe_security_groups", "SecurityGroups", "GroupId", []),
]


class InventoryActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    @activity.defn
    @aws_errors
    def discover_resources(self, scope: Scope) -> Inventory:
        ec2 = self._aws.ec2(scope.region)
        found: list[Resource] = []
        for kind, operation, field, id_field, extra in EC2_LOOKUPS:
            items = getattr(ec2, operation)(Filters=[*scope_filters(scope), *extra])[field]
            found += [_resource(kind, item, item[id_field]) for item in all_owned(items, scope)]
        reservations = ec2.describe_instances(
            Filters=[
                *scope_filters(scope),
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped", "shutting-down"],
                },
            ]
        )["Reservations"]
        instances = all_owned([i for r in reservations for i in r["Instances"]], scope)
        found += [_resource(Kind.INSTANCE, i, i["InstanceId"]) for i in instances]
        found += self._load_balancing(scope)
        found += self._certificates(scope)
        return Inventory(resources=found)

    @activity.defn
    @aws_errors
    def remaining_resources(self, request: RemainingInput) -> Inventory:
        """What still carries the deployment's tag after a teardown: looked up until nothing is left
        or the consistency window has passed (a resource deleted seconds ago may still be listed)."""
        heartbeat = Heartbeats()
        deadline = time.monotonic() + request.timing.consistency_window_seconds
        while True:
            remaining = self.discover_resources(request.scope)
            if not remaining.resources or time.monotonic() >= deadline:
                return remaining
            heartbeat("checking that nothing of the deployment is left")
            pause(request.timing.poll_interval_seconds, "checking that nothing of the deployment is left")

    def _load_balancing(self, scope: Scope) -> list[Resource]:
        elbv2 = self._aws.elbv2(scope.region)
        found: list[Resource] = []
        for kind, lookup, name in [
            (Kind.TARGET_GROUP, TARGET_GROUPS, target_group_name(scope.deployment_id)),
            (Kind.LOAD_BALANCER, LOAD_BALANCERS, load_balancer_name(scope.deployment_id)),
        ]:
            item = find_by_name(elbv2, lookup, name)
            if item is None:
                continue
            arn = item[lookup.arn_field]
            tags = tags_of(elbv2, arn)
            if not owned_by(tags, scope):
                continue
            found.append(Resource(kind=kind, name=tag_value(tags, RESOURCE_TAG) or name, id=arn))
            if kind is Kind.LOAD_BALANCER:
                listeners = elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]
                found += [
                    Resource(kind=Kind.LISTENER, name=listener(lsn["Port"]), id=lsn["ListenerArn"])
                    for lsn in listeners
                ]
                https = [lsn["ListenerArn"] for lsn in listeners if lsn["Protocol"] == "HTTPS"]
                found += self._alias_records(scope, item["DNSName"], https)
        return found

    def _alias_records(
        self, scope: Scope, dns_name_of_alb: str, https_listeners: list[str]
    ) -> list[Resource]:
        """The alias record each HTTPS listener's tag names, while it still points at the ALB."""
        elbv2 = self._aws.elbv2(scope.region)
        found = []
        for arn in https_listeners:
            where = tag_value(tags_of(elbv2, arn), ALIAS_TAG)
            if where is None:
                continue
            zone_id, domain = where.split("/", 1)
            record = DnsRecord(zone_id=zone_id, name=f"{domain}.", type="A", value=dns_name_of_alb)
            found += self._if_there(scope, ALIAS_RECORD, record)
        return found

    def _certificates(self, scope: Scope) -> list[Resource]:
        """The certificates the deployment requested, and each one's validation record in its zone."""
        certificates = CertificateActivities(self._aws)
        owned = certificates.owned_if_readable(scope)
        found = []
        for summary, tags in owned:
            arn = summary["CertificateArn"]
            found.append(Resource(kind=Kind.CERTIFICATE, name=tag_value(tags, RESOURCE_TAG) or arn, id=arn))
            zone_id = tag_value(tags, HOSTED_ZONE_TAG)
            domain = summary.get("DomainName", "")
            record = validation_record(certificates.describe(scope.region, arn), domain, zone_id or "")
            if zone_id and record is not None:
                found += self._if_there(scope, VALIDATION_RECORD, record)
        return found

    def _if_there(self, scope: Scope, name: str, record: DnsRecord) -> list[Resource]:
        if not still_ours(self._aws.client("route53", scope.region), record):
            return []
        return [Resource(kind=Kind.DNS_RECORD, name=name, id=record.id)]


def _resource(kind: Kind, item: dict[str, Any], resource_id: str) -> Resource:
    return Resource(kind=kind, name=tag_value(item.get("Tags"), RESOURCE_TAG) or resource_id, id=resource_id)
