"""What aws-smoke asks AWS: the tutorial's own `aws ... --query` checks as boto3 calls, the app's
answer through the ALB, and whatever still carries the deployment's tag after `down`.

The checks read AWS directly, not the workflow's outputs alone: they are the second opinion a user
would get by typing the tutorial's commands. Each check says which command it stands for.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activities import AwsClients, InventoryActivities
from activities.tags import all_owned, scope_filters
from models.naming import DEPLOYMENT_TAG
from models.resources import Resource, Scope
from models.spec import DeploymentSpec

LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
HTTP_ATTEMPT_SECONDS = 10.0
PAUSE_SECONDS = 5.0
HTTP_EXTRA_REQUESTS = 10
"""After the first answer, more requests to see the ALB spread them over the instances."""


class SmokeFailure(Exception):
    """A step's finding, in words a user can act on."""


@dataclass(frozen=True)
class Check:
    name: str
    command: str
    """The tutorial's command this check stands for."""
    ok: bool
    detail: str


Outputs = dict[str, Any]
CheckFunction = Callable[[AwsClients, DeploymentSpec, Outputs], Check]


def values(outputs: Outputs, field: str) -> list[str]:
    """Ids of a per-AZ (or per-instance) map of `up --json`, whatever its keys."""
    found = outputs.get(field) or {}
    return sorted(found.values()) if isinstance(found, dict) else sorted(found)


def check(name: str, command: str) -> Callable[[Callable[..., list[str] | str]], CheckFunction]:
    """A check returns its problems (a list) or, when there are none, a one-line account (a str);
    an AWS error is a failed check, never a traceback."""

    def decorate(find: Callable[..., list[str] | str]) -> CheckFunction:
        @functools.wraps(find)
        def run(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> Check:
            try:
                found = find(aws, spec, outputs)
            except Exception as err:  # noqa: BLE001 - any error is this check's failure, reported
                return Check(name, command.format(**context(spec, outputs)), False, f"{err}")
            failed = isinstance(found, list)
            detail = "; ".join(found) if failed else found
            return Check(name, command.format(**context(spec, outputs)), not failed, detail)

        return run

    return decorate


def context(spec: DeploymentSpec, outputs: Outputs) -> dict[str, str]:
    return {
        "tag": DEPLOYMENT_TAG,
        "id": spec.deployment_id,
        "subnets": ",".join(values(outputs, "private_subnet_ids")),
        "nats": " ".join(values(outputs, "nat_gateway_ids")),
        "tg": outputs.get("target_group_arn") or "?",
        "lb": outputs.get("load_balancer_arn") or "?",
    }


@check(
    "instances running in the private subnets, no public IP",
    "aws ec2 describe-instances --filters Name=tag:{tag},Values={id} "
    '--query "Reservations[].Instances[].[InstanceId,State.Name,SubnetId,PublicIpAddress]"',
)
def instances_private(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> list[str] | str:
    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
    filters = [*scope_filters(scope), {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]
    reservations = aws.ec2(spec.region).describe_instances(Filters=filters)["Reservations"]
    instances = all_owned([i for r in reservations for i in r["Instances"]], scope)
    private = set(values(outputs, "private_subnet_ids"))
    problems = [f"{len(instances)} instances, expected {spec.instances.count}"]
    problems = problems if len(instances) != spec.instances.count else []
    for instance in instances:
        name, state = instance["InstanceId"], instance["State"]["Name"]
        if state != "running":
            problems.append(f"{name} is {state}")
        if instance.get("SubnetId") not in private:
            problems.append(
                f"{name} is in {instance.get('SubnetId')}, not a private subnet of the deployment"
            )
        if instance.get("PublicIpAddress"):
            problems.append(f"{name} has the public IP {instance['PublicIpAddress']}")
    return problems or ", ".join(f"{i['InstanceId']} in {i['SubnetId']}" for i in instances)


@check(
    "private subnets route 0.0.0.0/0 to the NAT gateway",
    "aws ec2 describe-route-tables --filters Name=association.subnet-id,Values={subnets} "
    "--query \"RouteTables[].Routes[?DestinationCidrBlock=='0.0.0.0/0']\"",
)
def private_routes(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> list[str] | str:
    subnets, nats = values(outputs, "private_subnet_ids"), set(values(outputs, "nat_gateway_ids"))
    if not subnets:
        return ["`up` reported no private subnets"]
    tables = aws.ec2(spec.region).describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": subnets}]
    )["RouteTables"]
    route_of = {
        association.get("SubnetId"): next(
            (r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"), {}
        )
        for table in tables
        for association in table.get("Associations", [])
    }
    problems = [
        f"{subnet} routes 0.0.0.0/0 to {route_of.get(subnet, {}).get('GatewayId') or 'nothing'}"
        for subnet in subnets
        if route_of.get(subnet, {}).get("NatGatewayId") not in nats
    ]
    return problems or f"{', '.join(subnets)} -> {', '.join(sorted(nats))}"


@check("NAT gateway available", "aws ec2 describe-nat-gateways --nat-gateway-ids {nats}")
def nat_available(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> list[str] | str:
    ids = values(outputs, "nat_gateway_ids")
    if not ids:
        return ["`up` reported no NAT gateway"]
    gateways = aws.ec2(spec.region).describe_nat_gateways(NatGatewayIds=ids)["NatGateways"]
    public = set(values(outputs, "public_subnet_ids"))
    problems = [f"{g['NatGatewayId']} is {g['State']}" for g in gateways if g["State"] != "available"]
    problems += [
        f"{g['NatGatewayId']} is in {g['SubnetId']}, not a public subnet"
        for g in gateways
        if public and g.get("SubnetId") not in public
    ]
    return problems or ", ".join(f"{g['NatGatewayId']} available in {g['SubnetId']}" for g in gateways)


@check("targets healthy", "aws elbv2 describe-target-health --target-group-arn {tg}")
def targets_healthy(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> list[str] | str:
    arn = outputs.get("target_group_arn")
    if not arn:
        return ["`up` reported no target group"]
    health = aws.elbv2(spec.region).describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    states = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in health}
    expected = set(values(outputs, "instance_ids"))
    problems = [f"{target} is {state}" for target, state in states.items() if state != "healthy"]
    if set(states) != expected:
        problems.append(f"targets {sorted(states)}, expected the instances {sorted(expected)}")
    return problems or f"{len(states)} of {len(expected)} healthy"


@check(
    "load balancer active and internet-facing", "aws elbv2 describe-load-balancers --load-balancer-arns {lb}"
)
def load_balancer_active(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> list[str] | str:
    arn = outputs.get("load_balancer_arn")
    if not arn:
        return ["`up` reported no load balancer"]
    balancer = aws.elbv2(spec.region).describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]
    problems = [f"state {balancer['State']['Code']}"] if balancer["State"]["Code"] != "active" else []
    if balancer.get("Scheme") != "internet-facing":
        problems.append(f"scheme {balancer.get('Scheme')}")
    return problems or f"{balancer['DNSName']} active, internet-facing"


@check(
    "listener forwards to the target group",
    "aws elbv2 describe-listeners --load-balancer-arn {lb}",
)
def listener_forwards(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> list[str] | str:
    arn, group = outputs.get("load_balancer_arn"), outputs.get("target_group_arn")
    if not arn or not group:
        return ["`up` reported no load balancer or target group"]
    port = spec.load_balancer.listener_port
    listeners = aws.elbv2(spec.region).describe_listeners(LoadBalancerArn=arn)["Listeners"]
    listener = next((lsn for lsn in listeners if lsn["Port"] == port), None)
    if listener is None:
        return [f"no listener on port {port} (ports: {sorted(lsn['Port'] for lsn in listeners)})"]
    if listener.get("Protocol") != "HTTP" or group not in forwarded_groups(listener):
        return [f"port {port}: {listener.get('Protocol')} {listener.get('DefaultActions')}"]
    return f"HTTP {port} -> {group.rsplit(':', 1)[-1]}"


def forwarded_groups(listener: dict[str, Any]) -> set[str]:
    groups = set()
    for action in listener.get("DefaultActions", []):
        if action.get("Type") == "forward":
            groups.add(action.get("TargetGroupArn"))
            groups |= {g["TargetGroupArn"] for g in action.get("ForwardConfig", {}).get("TargetGroups", [])}
    return groups - {None}


CHECKS: list[CheckFunction] = [
    instances_private,
    private_routes,
    nat_available,
    targets_healthy,
    load_balancer_active,
    listener_forwards,
]


def run_checks(aws: AwsClients, spec: DeploymentSpec, outputs: Outputs) -> list[Check]:
    return [run(aws, spec, outputs) for run in CHECKS]


def leftovers(aws: AwsClients, spec: DeploymentSpec) -> list[Resource]:
    """What still carries the deployment's tag: the lookup teardown itself uses, run here again."""
    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
    return InventoryActivities(aws).discover_resources(scope).resources


def wait_for_leftovers(aws: AwsClients, spec: DeploymentSpec, grace_seconds: float) -> list[Resource]:
    """Empty as soon as a look finds nothing; EC2's describes can show a just-deleted resource for a
    few seconds, so what remains is only believed once `grace_seconds` have passed."""
    deadline = time.monotonic() + grace_seconds
    while True:
        found = leftovers(aws, spec)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(min(PAUSE_SECONDS, max(0.0, deadline - time.monotonic())))


def wait_for_app(url: str, timeout_seconds: float, hosts_expected: int) -> str:
    """GET the app through the ALB until it answers 200, then a few more to see which hosts answer.

    A new ALB's DNS name takes a minute or so to resolve everywhere, hence the patience."""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            body = fetch(url)
        except (OSError, ValueError) as err:
            last = str(getattr(err, "reason", err))
            time.sleep(min(PAUSE_SECONDS, max(0.0, deadline - time.monotonic())))
            continue
        hosts = {body.get("hostname")}
        for _ in range(HTTP_EXTRA_REQUESTS):
            if len(hosts) >= hosts_expected:
                break
            hosts.add(answer_host(url))
        hosts.discard(None)
        return f"{body.get('message', 'an answer')!r} from {len(hosts)} host(s): {', '.join(sorted(hosts))}"
    raise SmokeFailure(f"{url} did not answer with HTTP 200 within {timeout_seconds:.0f} s (last: {last})")


def answer_host(url: str) -> str | None:
    try:
        return fetch(url).get("hostname")
    except (OSError, ValueError):
        return None


def fetch(url: str) -> dict[str, Any]:
    """One GET; the app answers JSON. Anything but 200 raises (urllib raises HTTPError for 4xx/5xx)."""
    with urllib.request.urlopen(url, timeout=HTTP_ATTEMPT_SECONDS) as response:  # noqa: S310 - http(s) only
        payload = json.loads(response.read() or b"{}")
    return payload if isinstance(payload, dict) else {}
