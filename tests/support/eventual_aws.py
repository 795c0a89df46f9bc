"""AWS's eventual consistency, emulated on moto with botocore hooks on the session the activities use.

moto knows a new resource at once, everywhere. Real EC2 does not ("Eventual consistency in the Amazon
EC2 API"), and ELBv2 has the same gaps (terraform-provider-aws retries TargetGroupNotFound after
CreateTargetGroup). For `window` seconds after a create answered:
- a call that names the new id gets that kind's NotFound code and has no effect (describes by id,
  mutations, deletes alike: the hook answers before the request leaves);
- a describe with filters, or by name, omits the new resource;
- a repeated ClientToken (and, for ELBv2, a repeated name with the same settings) returns the first
  call's answer, as AWS does; moto ignores both and would make a twin.

Register with `EventualAws(session, window)` before the session builds its first client (a botocore
client copies the session's handlers when it is created).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from tests.support.faults import error_response

CONTEXT_PARAMS = "eventual_aws.params"

CREATED: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "CreateSubnet": lambda r: [r["Subnet"]["SubnetId"]],
    "AllocateAddress": lambda r: [r["AllocationId"]],
    "CreateNatGateway": lambda r: [r["NatGateway"]["NatGatewayId"]],
    "CreateRouteTable": lambda r: [r["RouteTable"]["RouteTableId"]],
    "AssociateRouteTable": lambda r: [r["AssociationId"]],
    "CreateSecurityGroup": lambda r: [r["GroupId"]],
    "AuthorizeSecurityGroupIngress": lambda r: [
        x["SecurityGroupRuleId"] for x in r.get("SecurityGroupRules", [])
    ],
    "RunInstances": lambda r: [i["InstanceId"] for i in r["Instances"]],
    "CreateTargetGroup": lambda r: [g["TargetGroupArn"] for g in r["TargetGroups"]],
    "CreateLoadBalancer": lambda r: [b["LoadBalancerArn"] for b in r["LoadBalancers"]],
    "CreateListener": lambda r: [lsn["ListenerArn"] for lsn in r["Listeners"]],
}
"""The ids each create's answer names: these are new, and unknown to other calls for a while."""

IDEMPOTENT_BY = {
    "RunInstances": "ClientToken",
    "CreateNatGateway": "ClientToken",
    "CreateRouteTable": "ClientToken",
    "CreateLoadBalancer": "Name",
    "CreateTargetGroup": "Name",
}
"""Creates that AWS answers with the first call's resource when repeated (by token, or by the
account-unique name with the same settings)."""

LISTED_BY: dict[str, tuple[str, str]] = {
    "Subnets": ("", "SubnetId"),
    "Addresses": ("", "AllocationId"),
    "NatGateways": ("", "NatGatewayId"),
    "RouteTables": ("", "RouteTableId"),
    "SecurityGroups": ("", "GroupId"),
    "SecurityGroupRules": ("", "SecurityGroupRuleId"),
    "Reservations": ("Instances", "InstanceId"),
    "InstanceStatuses": ("", "InstanceId"),
    "Tags": ("", "ResourceId"),
    "LoadBalancers": ("", "LoadBalancerArn"),
    "TargetGroups": ("", "TargetGroupArn"),
    "Listeners": ("", "ListenerArn"),
}
"""Per list in a describe's answer: the nested list inside each item ("" for none) and the id field."""

EC2_CODES = {
    "subnet-": "InvalidSubnetID.NotFound",
    "eipalloc-": "InvalidAllocationID.NotFound",
    "nat-": "NatGatewayNotFound",
    "rtbassoc-": "InvalidAssociationID.NotFound",
    "rtb-": "InvalidRouteTableID.NotFound",
    "sgr-": "InvalidSecurityGroupRuleId.NotFound",
    "sg-": "InvalidGroup.NotFound",
    "i-": "InvalidInstanceID.NotFound",
}
ELBV2_CODES = {
    ":loadbalancer/": "LoadBalancerNotFound",
    ":targetgroup/": "TargetGroupNotFound",
    ":listener/": "ListenerNotFound",
    "subnet-": "SubnetNotFound",
    "sg-": "InvalidSecurityGroup",
    "i-": "InvalidTarget",
}
NAME_CODES = {"DescribeLoadBalancers": "LoadBalancerNotFound", "DescribeTargetGroups": "TargetGroupNotFound"}
"""A describe by the account-unique name of a new load balancer or target group."""
ROUTE_NAT_CODE = "InvalidNatGatewayID.NotFound"
"""CreateRoute/ReplaceRoute name the NAT gateway in a code of their own."""


def not_found_code(service: str, operation: str, resource_id: str) -> str:
    if operation in NAME_CODES and not resource_id.startswith("arn:"):
        return NAME_CODES[operation]
    if service == "ec2":
        if resource_id.startswith("nat-") and operation in ("CreateRoute", "ReplaceRoute"):
            return ROUTE_NAT_CODE
        return next(code for prefix, code in EC2_CODES.items() if resource_id.startswith(prefix))
    if resource_id.startswith("i-") and operation == "DescribeTargetHealth":
        return "InvalidInstance"  # what botocore's target_in_service waiter retries
    return next(code for part, code in ELBV2_CODES.items() if part in resource_id)


def strings(value: Any, skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every string in a call's parameters, but under the keys in `skip`."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from strings(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, skip)


class EventualAws:
    """Ids younger than `window` seconds are unknown to every call but the one that made them."""

    def __init__(self, session: boto3.Session, window: float) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._born: dict[str, float] = {}
        self._answers: dict[tuple[str, str], dict[str, Any]] = {}
        self.refused: Counter[str] = Counter()
        """Calls answered NotFound for a young id, by operation."""
        self.hidden: Counter[str] = Counter()
        """Young resources left out of describe answers, by operation."""
        self.replayed: Counter[str] = Counter()
        """Creates answered with the first call's resource, by operation."""
        session.events.register("before-parameter-build", self._remember_params)
        session.events.register("before-call", self._before_call)
        session.events.register("after-call", self._after_call)

    def young(self, resource_id: str) -> bool:
        with self._lock:
            born = self._born.get(resource_id)
        return born is not None and time.monotonic() - born < self.window

    def _remember_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[CONTEXT_PARAMS] = copy.deepcopy(params)

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, dict] | None:
        operation, service = model.name, model.service_model.service_name
        params = context.get(CONTEXT_PARAMS, {})
        replay = self._replay_key(operation, params)
        if replay is not None:
            with self._lock:
                answer = self._answers.get(replay)
            if answer is not None:
                self.replayed[operation] += 1
                return AWSResponse("https://eventual.invalid", 200, {}, None), copy.deepcopy(answer)
        # Filters are lookups, answered without the young resource (after-call); tags name
        # deployments, not resources. A name of a new load balancer or target group is refused.
        named = strings(params, skip=frozenset({"Filters", "Filter", "Tags", "TagSpecifications"}))
        young = next((value for value in named if self.young(value)), None)
        if young is None:
            return None
        self.refused[operation] += 1
        code = not_found_code(service, operation, young)
        return error_response(code, f"The id '{young}' does not exist (emulated eventual consistency)")

    def _after_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        operation = model.name
        if "Error" in parsed:
            return
        if operation in CREATED:
            now = time.monotonic()
            params = context.get(CONTEXT_PARAMS, {})
            names = [params["Name"]] if IDEMPOTENT_BY.get(operation) == "Name" else []
            with self._lock:
                for resource_id in [*CREATED[operation](parsed), *names]:
                    self._born.setdefault(resource_id, now)
            replay = self._replay_key(operation, params)
            if replay is not None:
                with self._lock:
                    self._answers.setdefault(replay, copy.deepcopy(parsed))
        elif operation.startswith("Describe"):
            self._hide_young(operation, parsed)

    def _replay_key(self, operation: str, params: dict[str, Any]) -> tuple[str, str] | None:
        field = IDEMPOTENT_BY.get(operation)
        value = params.get(field) if field else None
        return (operation, value) if value else None

    def _hide_young(self, operation: str, parsed: dict[str, Any]) -> None:
        for key, (nested, id_field) in LISTED_BY.items():
            if key not in parsed:
                continue
            if nested:
                for container in parsed[key]:
                    container[nested] = self._visible(operation, container.get(nested, []), id_field)
                parsed[key] = [c for c in parsed[key] if c.get(nested)]
            else:
                parsed[key] = self._visible(operation, parsed[key], id_field)

    def _visible(self, operation: str, items: list[dict[str, Any]], id_field: str) -> list[dict[str, Any]]:
        kept = [item for item in items if not self.young(str(item.get(id_field, "")))]
        self.hidden[operation] += len(items) - len(kept)
        return kept
