"""Read a deployment's live settings by its tags, for the desired-vs-live diff (models/diff.py).

Reads only: the describes of preflight, inventory and teardown, and DescribeTargetGroupAttributes
(the deregistration delay a converge changes), all granted by docs/iam-policy.json's read-only
statement; the HTTPS resources' reads (activities/live_https.py) by docs/iam-policy-https.json's.
"""

from __future__ import annotations

from typing import Any

from activities.aws_clients import AwsClients
from activities.live_https import HTTPS, alias_records, certificates
from activities.load_balancing import (
    DEREGISTRATION_DELAY,
    LOAD_BALANCERS,
    TARGET_GROUPS,
    find_by_name,
    tags_of,
)
from activities.network import DEFAULT_ROUTE
from activities.tags import all_owned, owned_by, scope_filters, tag_value
from models.live import THEN, LiveDeployment, LiveResource, forward_action, redirect_action
from models.naming import (
    APP_VERSION_TAG,
    DEFAULT_APP_VERSION,
    LOAD_BALANCER,
    RESOURCE_TAG,
    TARGET_GROUP,
    listener,
    load_balancer_name,
    target_group_name,
)
from models.resources import Kind, Scope

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
RUNNING = "running"
LIVE_NAT_STATES = ["pending", "available"]


def read_live(aws: AwsClients, scope: Scope) -> LiveDeployment:
    ec2 = aws.ec2(scope.region)
    subnets = all_owned(ec2.describe_subnets(Filters=scope_filters(scope))["Subnets"], scope)
    groups = all_owned(ec2.describe_security_groups(Filters=scope_filters(scope))["SecurityGroups"], scope)
    nats = all_owned(
        ec2.describe_nat_gateways(
            Filters=[*scope_filters(scope), {"Name": "state", "Values": LIVE_NAT_STATES}]
        )["NatGateways"],
        scope,
    )
    names = {
        item.get(field): _name(item, item[field])
        for items, field in ((subnets, "SubnetId"), (groups, "GroupId"), (nats, "NatGatewayId"))
        for item in items
    }
    found = [subnet_resource(s) for s in subnets]
    found += [
        LiveResource(kind=Kind.ELASTIC_IP, name=_name(a, a["AllocationId"]), id=a["AllocationId"])
        for a in all_owned(ec2.describe_addresses(Filters=scope_filters(scope))["Addresses"], scope)
    ]
    found += [
        LiveResource(kind=Kind.NAT_GATEWAY, name=_name(n, n["NatGatewayId"]), id=n["NatGatewayId"])
        for n in nats
    ]
    tables = all_owned(ec2.describe_route_tables(Filters=scope_filters(scope))["RouteTables"], scope)
    found += [route_table_resource(t, names) for t in tables]
    found += [security_group_resource(g, names) for g in groups]
    balancing = _load_balancing(aws, scope)
    group = next((r for r in balancing if r.kind is Kind.TARGET_GROUP), None)
    found += _instances(ec2, scope, group.facts["port"] if group else None)
    found += balancing
    found += certificates(aws, scope)
    vpc_id = next((item["VpcId"] for item in [*subnets, *groups] if item.get("VpcId")), None)
    return LiveDeployment(
        deployment_id=scope.deployment_id,
        region=scope.region,
        vpc_id=vpc_id,
        vpc_is_default=_is_default(ec2, vpc_id),
        resources=found,
    )


def _name(item: dict[str, Any], resource_id: str) -> str:
    return tag_value(item.get("Tags"), RESOURCE_TAG) or resource_id


def _is_default(ec2: Any, vpc_id: str | None) -> bool | None:
    if vpc_id is None:
        return None
    vpcs = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    return bool(vpcs and vpcs[0].get("IsDefault"))


def subnet_resource(subnet: dict[str, Any]) -> LiveResource:
    return LiveResource(
        kind=Kind.SUBNET,
        name=_name(subnet, subnet["SubnetId"]),
        id=subnet["SubnetId"],
        facts={"cidr": subnet["CidrBlock"], "availability_zone": subnet["AvailabilityZone"]},
    )


def route_table_resource(table: dict[str, Any], names: dict[str, str]) -> LiveResource:
    default = next((r for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == DEFAULT_ROUTE), {})
    subnets = sorted(
        names.get(a["SubnetId"], a["SubnetId"]) for a in table.get("Associations", []) if a.get("SubnetId")
    )
    nat = default.get("NatGatewayId")
    return LiveResource(
        kind=Kind.ROUTE_TABLE,
        name=_name(table, table["RouteTableId"]),
        id=table["RouteTableId"],
        facts={"subnets": ", ".join(subnets), "default_route": names.get(nat, nat) if nat else "none"},
    )


RULE_SOURCES = {
    "IpRanges": "CidrIp",
    "Ipv6Ranges": "CidrIpv6",
    "PrefixListIds": "PrefixListId",
    "UserIdGroupPairs": "GroupId",
}
"""Where a permission lists its peers (sources, or destinations for egress), and each entry's key."""


def rule_ports(permission: dict[str, Any]) -> str:
    """`tcp/80`, `tcp/8000-8100`, `icmp` (every type) or `all` (every protocol): the whole range, so
    that a rule opening more than the deployment's port never reads as the deployment's rule."""
    protocol = str(permission.get("IpProtocol", "-1"))
    if protocol == "-1":
        return "all"
    low, high = permission.get("FromPort"), permission.get("ToPort")
    if low is None or low == -1:
        return protocol
    return f"{protocol}/{low}" if high in (None, low) else f"{protocol}/{low}-{high}"


INGRESS, EGRESS = "ingress", "egress"
RULE_DIRECTIONS = {INGRESS: ("IpPermissions", "from"), EGRESS: ("IpPermissionsEgress", "to")}
"""Each direction's list in a described group, and the word before a rule's peer."""


def group_rules(
    group: dict[str, Any], names: dict[str, str], direction: str = INGRESS
) -> list[tuple[str, dict[str, Any]]]:
    """Each rule of a described group in one direction, one per peer (IPv4 and IPv6 ranges, prefix
    lists, groups): its text (`tcp/22 from ::/0`, `all to 0.0.0.0/0`; a group by its name in `names`,
    else its id), and the permission that revokes exactly it, the peer entry as described (AWS ignores
    its description; moto matches a source group only with it)."""
    listed, word = RULE_DIRECTIONS[direction]
    rules = []
    for permission in group.get(listed, []):
        exact = {k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in permission}
        for sources, key in RULE_SOURCES.items():
            for source in permission.get(sources, []):
                text = f"{rule_ports(permission)} {word} {names.get(source[key], source[key])}"
                rules.append((text, {**exact, sources: [source]}))
    return rules


def security_group_resource(group: dict[str, Any], names: dict[str, str]) -> LiveResource:
    facts = {
        direction: ", ".join(sorted(text for text, _ in group_rules(group, names, direction))) or "none"
        for direction in RULE_DIRECTIONS
    }
    return LiveResource(
        kind=Kind.SECURITY_GROUP, name=_name(group, group["GroupId"]), id=group["GroupId"], facts=facts
    )


def _instances(ec2: Any, scope: Scope, app_port: str | None) -> list[LiveResource]:
    """`app_port` is the port the user data serves; the target group's port is set from the same
    setting (app.port) at launch, and reading it there spares a user-data read per instance."""
    filters = [*scope_filters(scope), {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]
    reservations = ec2.describe_instances(Filters=filters)["Reservations"]
    instances = all_owned([i for r in reservations for i in r["Instances"]], scope)
    return [
        LiveResource(
            kind=Kind.INSTANCE,
            name=_name(i, i["InstanceId"]),
            id=i["InstanceId"],
            facts=instance_facts(i, app_port),
        )
        for i in sorted(instances, key=lambda i: (_name(i, i["InstanceId"]), str(i.get("LaunchTime", ""))))
    ]


def instance_facts(instance: dict[str, Any], app_port: str | None) -> dict[str, str]:
    """What the spec decides of an instance, and whether it runs: `pending` counts as running (it is
    on its way), a stopped or stopping instance serves nothing and is replaced."""
    state = instance.get("State", {}).get("Name", RUNNING)
    return {
        "instance_type": instance["InstanceType"],
        "ami_id": instance["ImageId"],
        "availability_zone": instance["Placement"]["AvailabilityZone"],
        "app_version": tag_value(instance.get("Tags"), APP_VERSION_TAG) or DEFAULT_APP_VERSION,
        "state": RUNNING if state == "pending" else state,
        **({"app_port": app_port} if app_port else {}),
    }


def target_group_facts(elbv2: Any, group: dict[str, Any]) -> dict[str, str]:
    """Its port, and the settings a converge changes in place (models/resources.py
    `TargetGroupSettings`)."""
    attributes = elbv2.describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])["Attributes"]
    delay = next((a["Value"] for a in attributes if a["Key"] == DEREGISTRATION_DELAY), None)
    facts = {
        "health_check_path": group.get("HealthCheckPath", "/"),
        "health_check_interval_seconds": str(group.get("HealthCheckIntervalSeconds", "")),
        "healthy_threshold": str(group.get("HealthyThresholdCount", "")),
        "unhealthy_threshold": str(group.get("UnhealthyThresholdCount", "")),
        "deregistration_delay_seconds": delay or "",
    }
    return {"port": str(group["Port"]), **{field: value for field, value in facts.items() if value}}


def load_balancer_facts(balancer: dict[str, Any]) -> dict[str, str]:
    zones = sorted(z["ZoneName"] for z in balancer.get("AvailabilityZones", []))
    return {"availability_zones": ", ".join(zones)}


def listener_facts(listener: dict[str, Any], names: dict[str, str]) -> dict[str, str]:
    """What the spec decides of a listener: its default action (a target group by its name in
    `names`, else its ARN) and, for HTTPS, its TLS policy and certificate."""
    facts = {"default_action": default_action_text(listener.get("DefaultActions", []), names)}
    if listener.get("Protocol") != HTTPS:
        return facts
    arns = [c["CertificateArn"] for c in listener.get("Certificates", []) if c.get("CertificateArn")]
    facts["ssl_policy"] = listener.get("SslPolicy", "")
    if arns:
        facts["certificate_arn"] = arns[0]
    return {field: value for field, value in facts.items() if value}


def default_action_text(actions: list[dict[str, Any]], names: dict[str, str]) -> str:
    """`forward to tg-app`, `redirect 301 to HTTPS:443`, `fixed-response 503`, in their order."""
    parts = []
    for action in sorted(actions, key=lambda a: a.get("Order", 0)):
        match action.get("Type"):
            case "forward":
                weighted = action.get("ForwardConfig", {}).get("TargetGroups", [])
                arns = [g["TargetGroupArn"] for g in weighted] or [action.get("TargetGroupArn", "")]
                parts.append(forward_action(", ".join(sorted(names.get(a, a) for a in arns))))
            case "redirect":
                parts.append(redirect_action(action.get("RedirectConfig", {})))
            case "fixed-response":
                parts.append(f"fixed-response {action.get('FixedResponseConfig', {}).get('StatusCode', '')}")
            case other:
                parts.append(str(other))
    return THEN.join(parts) or "none"


def _load_balancing(aws: AwsClients, scope: Scope) -> list[LiveResource]:
    elbv2 = aws.elbv2(scope.region)
    found: list[LiveResource] = []
    group = find_by_name(elbv2, TARGET_GROUPS, target_group_name(scope.deployment_id))
    group_tags = tags_of(elbv2, group["TargetGroupArn"]) if group is not None else []
    names: dict[str, str] = {}
    if group is not None and owned_by(group_tags, scope):
        facts = target_group_facts(elbv2, group)
        name = tag_value(group_tags, RESOURCE_TAG) or TARGET_GROUP
        names[group["TargetGroupArn"]] = name
        found.append(LiveResource(kind=Kind.TARGET_GROUP, name=name, id=group["TargetGroupArn"], facts=facts))
    balancer = find_by_name(elbv2, LOAD_BALANCERS, load_balancer_name(scope.deployment_id))
    if balancer is None:
        return found
    arn = balancer["LoadBalancerArn"]
    tags = tags_of(elbv2, arn)
    if not owned_by(tags, scope):
        return found
    found.append(
        LiveResource(
            kind=Kind.LOAD_BALANCER,
            name=tag_value(tags, RESOURCE_TAG) or LOAD_BALANCER,
            id=arn,
            facts=load_balancer_facts(balancer),
        )
    )
    listeners = elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]
    found += [
        LiveResource(
            kind=Kind.LISTENER,
            name=listener(lsn["Port"]),
            id=lsn["ListenerArn"],
            facts=listener_facts(lsn, names),
        )
        for lsn in listeners
    ]
    return found + alias_records(aws, scope, balancer, listeners)
