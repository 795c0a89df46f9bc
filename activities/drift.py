"""The drift check: how the live deployment differs from its spec, read-only (models/drift.py).

Reads what `plan` reads (activities/live.py, by the deployment's tags), then what a change outside the
deployment can hide from a read by tags:
- the resources the deployment's outputs name that the read did not find, each described by its id:
  gone (not found, or an instance `shutting-down`/`terminated`, a NAT gateway `deleting`/`deleted`/
  `failed`: AWS lists those for a while) is a missing resource; still there, it lost a tag, and is
  compared with the spec like the others;
- every resource's tags (ec2:DescribeTags for the EC2 resources, elasticloadbalancing:DescribeTags for
  the target group, load balancer and listeners), against the tags it was made with (activities/tags.py);
- the target group's registrations (DescribeTargetHealth).

Every call is a Describe*, Get* or List* granted by docs/iam-policy.json's read-only statement (and
docs/iam-policy-https.json's, for the certificates activities/live.py reads). The HTTPS resources
(certificate, DNS records) are compared as the live read finds them, not described by id nor by tags
(models/drift.py NOT_LOOKED_UP).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity

from activities.aws_clients import AwsClients
from activities.errors import aws_errors, client_error_code
from activities.live import (
    LIVE_INSTANCE_STATES,
    LIVE_NAT_STATES,
    instance_facts,
    listener_facts,
    load_balancer_facts,
    read_live,
    route_table_resource,
    security_group_resource,
    subnet_resource,
    target_group_facts,
)
from activities.tags import tags_for
from models.drift import (
    ACM_KINDS,
    EC2_KINDS,
    ELB_KINDS,
    CheckInput,
    DriftReport,
    find_drift,
    known_resources,
    resolved,
)
from models.live import LiveDeployment, LiveResource
from models.naming import APP_GROUP, listener
from models.resources import DeploymentOutputs, Kind, ResourceKey, Scope

NAT_GATEWAY_ID = re.compile(r"^nat-[0-9a-f]{8,17}$")
"""A NAT gateway's id, as a default route names one that activities/live.py did not find (its logical
names, `nat-<az>`, are not hex)."""
NOT_FOUND = "not found"
"""The state of a resource that a describe by its id no longer finds."""
DESCRIBE_TAGS_IDS = 200
"""Resource ids per DescribeTags filter (EC2 takes up to 200 values in one filter)."""
ELB_TAGS_ARNS = 20
"""ARNs per elasticloadbalancing:DescribeTags call (its limit)."""

Found = tuple[LiveResource | None, str | None]
"""A resource described by id: alive (as activities/live.py would read it), or gone (its state)."""


class DriftActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws

    @activity.defn
    @aws_errors
    def check_drift(self, request: CheckInput) -> DriftReport:
        """Read-only: what differs between the live deployment and `request.spec`, as drift items."""
        scope = request.scope
        live = read_live(self._aws, scope)
        live, gone = self._with_untagged(scope, live, request.outputs)
        known = known_resources(request.outputs)
        live = resolved(live, known, gone)
        spec_scope = Scope(deployment_id=scope.deployment_id, region=scope.region, tags=request.spec.tags)
        items = find_drift(
            request.spec,
            live,
            known=known,
            tags=self._tags(spec_scope, live),
            targets=self._targets(scope, live, known),
        )
        return DriftReport(
            deployment_id=scope.deployment_id,
            region=scope.region,
            checked_at=datetime.now(UTC),
            items=items,
        )

    # What a read by tags cannot see

    def _with_untagged(
        self, scope: Scope, live: LiveDeployment, outputs: DeploymentOutputs | None
    ) -> tuple[LiveDeployment, dict[str, str]]:
        """The live deployment plus the known resources (the outputs') that are there without the
        deployment's tag; and id -> state of those gone. A default route's NAT gateway that is not
        live is looked up too, so a route to a deleted one says so."""
        known = known_resources(outputs)
        found_ids = {r.id for r in live.resources}
        lost = {i: kind for i, kind in _known_kinds(outputs).items() if i not in found_ids}
        routes = {r.facts.get("default_route", "") for r in live.of_kind(Kind.ROUTE_TABLE)}
        lost |= {
            nat: Kind.NAT_GATEWAY for nat in routes if NAT_GATEWAY_ID.match(nat) and nat not in found_ids
        }
        port = next((r.facts.get("port") for r in live.of_kind(Kind.TARGET_GROUP)), None)
        added: list[LiveResource] = []
        gone: dict[str, str] = {}
        for resource_id, kind in lost.items():
            resource, state = self._by_id(scope, kind, resource_id, port)
            if resource is not None and resource_id in known:  # a route's NAT only if it is ours
                added.append(resource.model_copy(update={"name": known[resource_id]}))
            elif state is not None:
                gone[resource_id] = state
        return live.model_copy(update={"resources": [*live.resources, *added]}), gone

    def _by_id(self, scope: Scope, kind: Kind, resource_id: str, port: str | None) -> Found:
        """The resource as activities/live.py reads it, or None and the state it is gone in."""
        try:
            return self._read_by_id(scope, kind, resource_id, port)
        except ClientError as err:
            if client_error_code(err).endswith("NotFound"):  # InvalidInstanceID.NotFound, ...
                return None, NOT_FOUND
            raise
        except LookupError:  # an empty answer (moto's, for a NAT gateway id it never had)
            return None, NOT_FOUND

    def _read_by_id(self, scope: Scope, kind: Kind, resource_id: str, port: str | None) -> Found:
        ec2, elbv2 = self._aws.ec2(scope.region), self._aws.elbv2(scope.region)
        match kind:
            case Kind.SUBNET:
                return subnet_resource(_one(ec2.describe_subnets(SubnetIds=[resource_id]), "Subnets")), None
            case Kind.ELASTIC_IP:
                _one(ec2.describe_addresses(AllocationIds=[resource_id]), "Addresses")
                return LiveResource(kind=kind, name=resource_id, id=resource_id), None
            case Kind.NAT_GATEWAY:
                return _nat(ec2, resource_id)
            case Kind.ROUTE_TABLE:
                table = _one(ec2.describe_route_tables(RouteTableIds=[resource_id]), "RouteTables")
                return route_table_resource(table, {}), None
            case Kind.SECURITY_GROUP:
                group = _one(ec2.describe_security_groups(GroupIds=[resource_id]), "SecurityGroups")
                return security_group_resource(group, {}), None
            case Kind.INSTANCE:
                return _instance(ec2, resource_id, port)
            case Kind.TARGET_GROUP:
                return _target_group(elbv2, resource_id), None
            case Kind.LOAD_BALANCER:
                return _load_balancer(elbv2, resource_id), None
            case Kind.LISTENER:
                return _listener(elbv2, resource_id), None
        raise ValueError(f"no read by id for a {kind.value}")

    # Tags

    def _tags(self, scope: Scope, live: LiveDeployment) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        """Resource id -> (the tags it was made with, its live tags)."""
        ec2_ids = [r.id for r in live.resources if r.kind in EC2_KINDS]
        elb_arns = [r.id for r in live.resources if r.kind in ELB_KINDS]
        actual = {resource_id: {} for resource_id in [*ec2_ids, *elb_arns]}
        ec2, elbv2 = self._aws.ec2(scope.region), self._aws.elbv2(scope.region)
        for start in range(0, len(ec2_ids), DESCRIBE_TAGS_IDS):
            chunk = ec2_ids[start : start + DESCRIBE_TAGS_IDS]
            pages = ec2.get_paginator("describe_tags").paginate(
                Filters=[{"Name": "resource-id", "Values": chunk}]
            )
            for page in pages:
                for tag in page["Tags"]:
                    actual.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag["Value"]
        for start in range(0, len(elb_arns), ELB_TAGS_ARNS):
            chunk = elb_arns[start : start + ELB_TAGS_ARNS]
            for description in elbv2.describe_tags(ResourceArns=chunk)["TagDescriptions"]:
                tags = {t["Key"]: t["Value"] for t in description.get("Tags", [])}
                actual[description["ResourceArn"]] = tags
        acm = self._aws.client("acm", scope.region)
        for arn in (r.id for r in live.resources if r.kind in ACM_KINDS):  # ACM: one certificate a call
            listed = acm.list_tags_for_certificate(CertificateArn=arn)
            actual[arn] = {t["Key"]: t.get("Value", "") for t in listed.get("Tags", [])}
        return {r.id: (_made_with(scope, r), actual[r.id]) for r in live.resources if r.id in actual}

    # Targets

    def _targets(self, scope: Scope, live: LiveDeployment, known: dict[str, str]) -> dict[str, str] | None:
        """Registered target id -> its state, in the deployment's target group (None without one).

        A registered instance that is neither live nor known is looked up: a terminated one is left
        out (AWS deregisters a terminated instance itself; moto keeps it registered), so only a
        foreign instance that runs reads as a foreign target."""
        group = next(iter(live.of_kind(Kind.TARGET_GROUP)), None)
        if group is None:
            return None
        elbv2 = self._aws.elbv2(scope.region)
        try:
            descriptions = elbv2.describe_target_health(TargetGroupArn=group.id)["TargetHealthDescriptions"]
        except ClientError as err:
            if client_error_code(err) == "TargetGroupNotFound":  # deleted since read_live saw it
                return None
            raise
        targets = {d["Target"]["Id"]: d.get("TargetHealth", {}).get("State", "") for d in descriptions}
        ours = {r.id for r in live.of_kind(Kind.INSTANCE)} | set(known)
        unknown = sorted(i for i in targets if i not in ours and i.startswith("i-"))
        if unknown:
            ec2 = self._aws.ec2(scope.region)
            filters = [{"Name": "instance-id", "Values": unknown}]
            reservations = ec2.describe_instances(Filters=filters)["Reservations"]
            for instance in (i for r in reservations for i in r["Instances"]):
                if instance.get("State", {}).get("Name") in ("shutting-down", "terminated"):
                    targets.pop(instance["InstanceId"], None)
        return targets


def _known_kinds(outputs: DeploymentOutputs | None) -> dict[str, Kind]:
    """Id -> kind of every resource the outputs name that the check compares."""
    if outputs is None:
        return {}
    kinds = {r.id: r.kind for r in outputs.resources if r.kind in EC2_KINDS | ELB_KINDS}
    return kinds | {instance_id: Kind.INSTANCE for instance_id in outputs.instance_ids.values()}


def _made_with(scope: Scope, resource: LiveResource) -> dict[str, str]:
    group = APP_GROUP if resource.kind is Kind.INSTANCE else None
    key = ResourceKey(scope=scope, name=resource.name)
    return {tag["Key"]: tag["Value"] for tag in tags_for(key, group)}


def _one(answer: dict[str, Any], field: str) -> dict[str, Any]:
    items = answer[field]
    if not items:
        raise LookupError(field)
    return items[0]


def _nat(ec2: Any, nat_id: str) -> Found:
    """AWS lists a deleted NAT gateway (`deleted`) for about an hour; moto for good."""
    nat = _one(ec2.describe_nat_gateways(NatGatewayIds=[nat_id]), "NatGateways")
    if nat.get("State") not in LIVE_NAT_STATES:
        return None, nat.get("State") or NOT_FOUND
    return LiveResource(kind=Kind.NAT_GATEWAY, name=nat_id, id=nat_id), None


def _instance(ec2: Any, instance_id: str, app_port: str | None) -> Found:
    """As activities/live.py reads an instance; AWS lists a terminated one for about an hour."""
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance = _one({"Instances": [i for r in reservations for i in r["Instances"]]}, "Instances")
    state = instance.get("State", {}).get("Name")
    if state not in LIVE_INSTANCE_STATES:
        return None, state or NOT_FOUND
    facts = instance_facts(instance, app_port)
    return LiveResource(kind=Kind.INSTANCE, name=instance_id, id=instance_id, facts=facts), None


def _target_group(elbv2: Any, arn: str) -> LiveResource:
    group = _one(elbv2.describe_target_groups(TargetGroupArns=[arn]), "TargetGroups")
    return LiveResource(kind=Kind.TARGET_GROUP, name=arn, id=arn, facts=target_group_facts(elbv2, group))


def _load_balancer(elbv2: Any, arn: str) -> LiveResource:
    balancer = _one(elbv2.describe_load_balancers(LoadBalancerArns=[arn]), "LoadBalancers")
    return LiveResource(kind=Kind.LOAD_BALANCER, name=arn, id=arn, facts=load_balancer_facts(balancer))


def _listener(elbv2: Any, arn: str) -> LiveResource:
    lsn = _one(elbv2.describe_listeners(ListenerArns=[arn]), "Listeners")
    return LiveResource(kind=Kind.LISTENER, name=listener(lsn["Port"]), id=arn, facts=listener_facts(lsn, {}))
