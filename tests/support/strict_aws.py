"""Real AWS's refusals, emulated on moto with botocore hooks on the session the activities use.

moto deletes whatever it is asked to, at once (DESIGN.md section 3). Real AWS refuses a delete while
something still depends on the resource, and finishes some deletions long after the call returned. Here
each refusal is a row of data: the delete call, the error real AWS answers, and the finders of the
dependants that make it refuse. Finders read moto's truth through a separate plain client (no hooks),
corrected by the deletions this module keeps in progress.

Slow deletions (NAT gateway `deleting`, instance `shutting-down`) end once describes of the session have
shown them in progress `polls` times, or after `seconds` as a net for code that never looks. Counting
polls instead of seconds makes a missing wait fail on every run, not only on a slow machine. Lingers are
what real AWS still holds after the deletion itself: a deleted ALB's network interfaces keep its
security group busy, and a deleted NAT gateway's address stays unreleasable for a moment (AWS answers
`AuthFailure` until then); each is refused a set number of times.

Register with `StrictAws(session)` before the session builds its first client: a botocore client copies
the session's event handlers when it is created.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from tests.support.faults import error_response

REGION = "ap-northeast-2"
PARAMS = "strict_aws.params"
WIDENED = "strict_aws.widened"
ATTACHED = "strict_aws.attached"

Finder = Callable[["StrictAws", str], list[str]]


@dataclass(frozen=True)
class Refusal:
    """Real AWS refuses `operation` on the resource named by `id_param` while a finder finds a dependant."""

    service: str
    operation: str
    id_param: str
    code: str
    message: str
    finders: tuple[Finder, ...]
    id_of: Callable[[dict[str, Any]], str | None] | None = None
    """Where the resource's id is when it is not a top-level parameter (`id_param` then names it)."""


@dataclass(frozen=True)
class SlowDeletion:
    """After `operation`, real AWS shows the resource `in_progress` in describes before `gone`."""

    kind: str
    service: str
    operation: str
    ids: Callable[[dict[str, Any]], list[str]]
    describe: str
    containers: Callable[[dict[str, Any]], list[list[dict[str, Any]]]]
    id_field: str
    filter_param: str
    """`Filters`, or `Filter` for DescribeNatGateways."""
    state_filter: str
    in_progress: str
    gone: str


@dataclass(frozen=True)
class Linger:
    """After `operation` succeeds, what `attached` finds stays refused a few more times."""

    service: str
    operation: str
    attached: Callable[[StrictAws, dict[str, Any]], list[str]]
    what: str


# Reading moto's truth (plain clients), with the deletions in progress applied


def state_name(item: dict[str, Any]) -> str:
    state = item["State"]
    return state["Name"] if isinstance(state, dict) else state


STATE_CODES = {"shutting-down": 32}


def set_state(item: dict[str, Any], name: str) -> None:
    item["State"] = {"Code": STATE_CODES[name], "Name": name} if isinstance(item["State"], dict) else name


def live_instances(aws: StrictAws) -> list[dict[str, Any]]:
    reservations = aws.ec2.describe_instances()["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    return [i for i in instances if aws.effective_state(INSTANCES, i) != "terminated"]


def live_nat_gateways(aws: StrictAws) -> list[dict[str, Any]]:
    gateways = aws.ec2.describe_nat_gateways()["NatGateways"]
    return [g for g in gateways if aws.effective_state(NAT_GATEWAYS, g) != "deleted"]


def instance_groups(instance: dict[str, Any]) -> set[str]:
    groups = {g["GroupId"] for g in instance.get("SecurityGroups", [])}
    for interface in instance.get("NetworkInterfaces", []):
        groups |= {g["GroupId"] for g in interface.get("Groups", [])}
    return groups


# Finders: (aws, resource id) -> the dependants that make AWS refuse


def instances_in_group(aws: StrictAws, group_id: str) -> list[str]:
    return [i["InstanceId"] for i in live_instances(aws) if group_id in instance_groups(i)]


def load_balancers_in_group(aws: StrictAws, group_id: str) -> list[str]:
    balancers = aws.elbv2.describe_load_balancers()["LoadBalancers"]
    return [b["LoadBalancerArn"] for b in balancers if group_id in b.get("SecurityGroups", [])]


def rules_referencing_group(aws: StrictAws, group_id: str) -> list[str]:
    groups = aws.ec2.describe_security_groups()["SecurityGroups"]
    return [
        g["GroupId"]
        for g in groups
        if g["GroupId"] != group_id
        and any(
            pair.get("GroupId") == group_id
            for permission in g.get("IpPermissions", []) + g.get("IpPermissionsEgress", [])
            for pair in permission.get("UserIdGroupPairs", [])
        )
    ]


def instances_in_subnet(aws: StrictAws, subnet_id: str) -> list[str]:
    return [i["InstanceId"] for i in live_instances(aws) if i.get("SubnetId") == subnet_id]


def nat_gateways_in_subnet(aws: StrictAws, subnet_id: str) -> list[str]:
    return [g["NatGatewayId"] for g in live_nat_gateways(aws) if g.get("SubnetId") == subnet_id]


def nat_gateways_holding_address(aws: StrictAws, allocation_id: str) -> list[str]:
    return [
        g["NatGatewayId"]
        for g in live_nat_gateways(aws)
        if any(a.get("AllocationId") == allocation_id for a in g.get("NatGatewayAddresses", []))
    ]


def listeners_forwarding_to(aws: StrictAws, group_arn: str) -> list[str]:
    found = []
    for balancer in aws.elbv2.describe_load_balancers()["LoadBalancers"]:
        listeners = aws.elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
        for listener in listeners:
            for action in listener.get("DefaultActions", []):
                forwarded = {action.get("TargetGroupArn")} | {
                    t["TargetGroupArn"] for t in action.get("ForwardConfig", {}).get("TargetGroups", [])
                }
                if group_arn in forwarded:
                    found.append(listener["ListenerArn"])
    return found


def certificate_not_issued(aws: StrictAws, certificate_arn: str) -> list[str]:
    """ELBv2 takes only an ISSUED certificate for an HTTPS listener; moto takes a pending one."""
    try:
        status = aws.acm.describe_certificate(CertificateArn=certificate_arn)["Certificate"]["Status"]
    except aws.acm.exceptions.ResourceNotFoundException:
        return []  # moto's own answer (CertificateNotFound) stands
    return [] if status == "ISSUED" else [f"status {status}"]


def listeners_using_certificate(aws: StrictAws, certificate_arn: str) -> list[str]:
    """ACM refuses to delete a certificate a listener uses; moto deletes it."""
    return [
        listener["ListenerArn"]
        for balancer in aws.elbv2.describe_load_balancers()["LoadBalancers"]
        for listener in aws.elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
        if certificate_arn in {c["CertificateArn"] for c in listener.get("Certificates", [])}
    ]


def listener_certificate(params: dict[str, Any]) -> str | None:
    certificates = params.get("Certificates") or [{}]
    return certificates[0].get("CertificateArn") if params.get("Protocol") == "HTTPS" else None


def subnets_associated(aws: StrictAws, table_id: str) -> list[str]:
    tables = aws.ec2.describe_route_tables(Filters=[{"Name": "route-table-id", "Values": [table_id]}])
    return [
        a["SubnetId"]
        for t in tables["RouteTables"]
        for a in t.get("Associations", [])
        if not a.get("Main") and a.get("SubnetId")
    ]


def lingering(aws: StrictAws, resource_id: str) -> list[str]:
    """Consumes one of the refusals a linger left on this resource."""
    return aws.consume_linger(resource_id)


# Lingers: what a deletion leaves held for a while


def load_balancer_groups(aws: StrictAws, params: dict[str, Any]) -> list[str]:
    balancers = aws.elbv2.describe_load_balancers()["LoadBalancers"]
    return [
        group
        for b in balancers
        if b["LoadBalancerArn"] == params.get("LoadBalancerArn")
        for group in b.get("SecurityGroups", [])
    ]


def nat_gateway_addresses(aws: StrictAws, params: dict[str, Any]) -> list[str]:
    gateways = aws.ec2.describe_nat_gateways()["NatGateways"]
    return [
        a["AllocationId"]
        for g in gateways
        if g["NatGatewayId"] == params.get("NatGatewayId")
        for a in g.get("NatGatewayAddresses", [])
        if a.get("AllocationId")
    ]


# The rules

REFUSALS = (
    Refusal(
        "ec2",
        "DeleteSecurityGroup",
        "GroupId",
        "DependencyViolation",
        "resource {id} has a dependent object",
        (instances_in_group, load_balancers_in_group, rules_referencing_group, lingering),
    ),
    Refusal(
        "ec2",
        "DeleteSubnet",
        "SubnetId",
        "DependencyViolation",
        "The subnet '{id}' has dependencies and cannot be deleted.",
        (instances_in_subnet, nat_gateways_in_subnet),
    ),
    # A NAT gateway's address sits on an interface AWS owns: releasing it answers AuthFailure, not
    # InvalidIPAddress.InUse (which is for addresses on your own instances and interfaces). Seen in
    # kops, openshift-install and leftovers, also shortly after the NAT shows `deleted`.
    Refusal(
        "ec2",
        "ReleaseAddress",
        "AllocationId",
        "AuthFailure",
        "You do not have permission to access the specified resource.",
        (nat_gateways_holding_address, lingering),
    ),
    Refusal(
        "elbv2",
        "DeleteTargetGroup",
        "TargetGroupArn",
        "ResourceInUse",
        "Target group '{id}' is currently in use by a listener or a rule",
        (listeners_forwarding_to,),
    ),
    Refusal(
        "elbv2",
        "CreateListener",
        "Certificates",
        "UnsupportedCertificate",
        "The certificate '{id}' must have a fully-qualified domain name, a supported signature, and a "
        "supported key size.",
        (certificate_not_issued,),
        id_of=listener_certificate,
    ),
    Refusal(
        "acm",
        "DeleteCertificate",
        "CertificateArn",
        "ResourceInUseException",
        "Certificate {id} in use.",
        (listeners_using_certificate,),
    ),
    Refusal(
        "ec2",
        "DeleteRouteTable",
        "RouteTableId",
        "DependencyViolation",
        "The routeTable '{id}' has dependencies and cannot be deleted.",
        (subnets_associated,),
    ),
)

INSTANCES = SlowDeletion(
    kind="instance",
    service="ec2",
    operation="TerminateInstances",
    ids=lambda params: list(params.get("InstanceIds", [])),
    describe="DescribeInstances",
    containers=lambda parsed: [r["Instances"] for r in parsed.get("Reservations", [])],
    id_field="InstanceId",
    filter_param="Filters",
    state_filter="instance-state-name",
    in_progress="shutting-down",
    gone="terminated",
)
NAT_GATEWAYS = SlowDeletion(
    kind="nat-gateway",
    service="ec2",
    operation="DeleteNatGateway",
    ids=lambda params: [params["NatGatewayId"]],
    describe="DescribeNatGateways",
    containers=lambda parsed: [parsed.get("NatGateways", [])],
    id_field="NatGatewayId",
    filter_param="Filter",
    state_filter="state",
    in_progress="deleting",
    gone="deleted",
)
SLOW_DELETIONS = (INSTANCES, NAT_GATEWAYS)

LINGERS = (
    Linger("elbv2", "DeleteLoadBalancer", load_balancer_groups, "a network interface of a deleted ALB"),
    Linger("ec2", "DeleteNatGateway", nat_gateway_addresses, "the association of a deleted NAT gateway"),
)


@dataclass
class InProgress:
    polls_left: int
    deadline: float


class StrictAws:
    """The hooks and their state: deletions in progress, lingers, and what was refused (for asserts)."""

    def __init__(
        self,
        session: boto3.Session,
        *,
        polls: int = 3,
        seconds: float = 120.0,
        linger_refusals: int = 2,
        region: str = REGION,
    ) -> None:
        plain = boto3.Session()
        self.ec2 = plain.client("ec2", region_name=region)
        self.elbv2 = plain.client("elbv2", region_name=region)
        self.acm = plain.client("acm", region_name=region)
        self.polls, self.seconds, self.linger_refusals = polls, seconds, linger_refusals
        self.refused: Counter[tuple[str, str]] = Counter()
        """(operation, code) -> how many calls were refused."""
        self.shown: Counter[str] = Counter()
        """Slow deletion kind -> how many describes showed one in progress."""
        self._in_progress: dict[str, InProgress] = {}
        self._lingers: dict[str, tuple[int, str]] = {}
        self._lock = threading.RLock()
        self._register(session)

    def _register(self, session: boto3.Session) -> None:
        events = session.events
        for rule in REFUSALS:
            events.register(f"before-parameter-build.{rule.service}.{rule.operation}", self._remember)
            events.register(f"before-call.{rule.service}.{rule.operation}", self._refusal(rule))
        for slow in SLOW_DELETIONS:
            events.register(f"before-parameter-build.{slow.service}.{slow.operation}", self._remember)
            events.register(f"after-call.{slow.service}.{slow.operation}", self._deleting(slow))
            events.register(f"before-parameter-build.{slow.service}.{slow.describe}", self._widen(slow))
            events.register(f"after-call.{slow.service}.{slow.describe}", self._show(slow))
        for linger in LINGERS:
            events.register(f"before-parameter-build.{linger.service}.{linger.operation}", self._remember)
            events.register(f"before-call.{linger.service}.{linger.operation}", self._attached(linger))
            events.register(f"after-call.{linger.service}.{linger.operation}", self._linger(linger))

    # State

    def effective_state(self, slow: SlowDeletion, item: dict[str, Any]) -> str:
        state = state_name(item)
        if state == slow.gone and self.in_progress(item[slow.id_field]):
            return slow.in_progress
        return state

    def in_progress(self, resource_id: str) -> bool:
        with self._lock:
            entry = self._in_progress.get(resource_id)
            return entry is not None and entry.polls_left > 0 and time.monotonic() < entry.deadline

    def consume_linger(self, resource_id: str) -> list[str]:
        with self._lock:
            left, what = self._lingers.get(resource_id, (0, ""))
            if left <= 0:
                return []
            self._lingers[resource_id] = (left - 1, what)
            return [what]

    def dependants(self, rule: Refusal, resource_id: str) -> list[str]:
        """The first finder's answer that is not empty: the reason AWS gives first."""
        for finder in rule.finders:
            found = finder(self, resource_id)
            if found:
                return found
        return []

    # Hooks

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[PARAMS] = copy.deepcopy(params)

    def _refusal(self, rule: Refusal) -> Callable[..., Any]:
        def refuse(context: dict[str, Any], **_: Any) -> Any:
            params = context.get(PARAMS, {})
            resource_id = rule.id_of(params) if rule.id_of else params.get(rule.id_param)
            if not resource_id:
                return None
            found = self.dependants(rule, resource_id)
            if not found:
                return None
            with self._lock:
                self.refused[(rule.operation, rule.code)] += 1
            message = rule.message.format(id=resource_id) + f" (strict_aws: {', '.join(found)})"
            return error_response(rule.code, message)

        return refuse

    def _deleting(self, slow: SlowDeletion) -> Callable[..., None]:
        def record(http_response: Any, context: dict[str, Any], **_: Any) -> None:
            if http_response.status_code >= 300:
                return
            deadline = time.monotonic() + self.seconds
            with self._lock:
                for resource_id in slow.ids(context.get(PARAMS, {})):
                    # A repeated delete of a resource already going does not restart its clock.
                    self._in_progress.setdefault(resource_id, InProgress(self.polls, deadline))

        return record

    def _widen(self, slow: SlowDeletion) -> Callable[..., None]:
        """A filter asking for the in-progress state must also let moto's `gone` ones through."""

        def widen(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            filters = []
            for item in params.get(slow.filter_param, []):
                values = item.get("Values", [])
                asks = item.get("Name") == slow.state_filter and slow.in_progress in values
                if asks and slow.gone not in values:
                    # A copy: the caller's filter list must not change under it.
                    item = {**item, "Values": [*values, slow.gone]}
                    context[WIDENED] = True
                filters.append(item)
            if filters:
                params[slow.filter_param] = filters

        return widen

    def _show(self, slow: SlowDeletion) -> Callable[..., None]:
        def rewrite(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            widened = context.get(WIDENED, False)
            for items in slow.containers(parsed):
                kept = []
                for item in items:
                    if state_name(item) != slow.gone:
                        kept.append(item)
                    elif self._poll(item[slow.id_field]):
                        set_state(item, slow.in_progress)
                        with self._lock:
                            self.shown[slow.kind] += 1
                        kept.append(item)
                    elif not widened:
                        kept.append(item)
                items[:] = kept

        return rewrite

    def _poll(self, resource_id: str) -> bool:
        """Is it still in progress? Each describe that shows it so counts as one poll."""
        with self._lock:
            if not self.in_progress(resource_id):
                return False
            self._in_progress[resource_id].polls_left -= 1
            return True

    def _attached(self, linger: Linger) -> Callable[..., None]:
        def capture(context: dict[str, Any], **_: Any) -> None:
            context[ATTACHED] = linger.attached(self, context.get(PARAMS, {}))

        return capture

    def _linger(self, linger: Linger) -> Callable[..., None]:
        def record(http_response: Any, context: dict[str, Any], **_: Any) -> None:
            if http_response.status_code >= 300:
                return
            with self._lock:
                for resource_id in context.get(ATTACHED, []):
                    self._lingers.setdefault(resource_id, (self.linger_refusals, linger.what))

        return record
