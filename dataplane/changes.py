"""Which resources a successful AWS call changed: the data plane then reads just those from moto.

Ids come from the call's form (InstanceId.N, TargetGroupArn, ...) or, for creates, from moto's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dataplane import wire


class Kind(StrEnum):
    INSTANCES = "instances"
    BALANCERS = "balancers"
    LISTENERS = "listeners"
    """ids: the load balancers whose listeners changed."""
    GROUPS = "groups"


@dataclass(frozen=True)
class Change:
    kind: Kind
    ids: list[str]


EC2_INSTANCE_CALLS = {"StartInstances", "StopInstances", "TerminateInstances"}
ELBV2_GROUP_CALLS = {
    "ModifyTargetGroup",
    "ModifyTargetGroupAttributes",
    "RegisterTargets",
    "DeregisterTargets",
    "DeleteTargetGroup",
}


def changed(service: str, form: wire.Form, answer: bytes) -> Change | None:
    """What the call changed of what the data plane runs; None for every other call."""
    fields = dict(form)
    action = fields.get("Action", "")
    if service == "ec2":
        if action == "RunInstances":
            return Change(Kind.INSTANCES, list(dict.fromkeys(wire.elements("instanceId", answer))))
        if action in EC2_INSTANCE_CALLS:
            return Change(Kind.INSTANCES, wire.numbered(form, "InstanceId"))
        return None
    if service != "elasticloadbalancing" or fields.get("Version") != wire.ELBV2_VERSION:
        return None
    found: dict[str, Change] = {
        "CreateLoadBalancer": Change(Kind.BALANCERS, wire.elements("LoadBalancerArn", answer)),
        "DeleteLoadBalancer": Change(Kind.BALANCERS, [fields.get("LoadBalancerArn", "")]),
        "CreateListener": Change(Kind.LISTENERS, [fields.get("LoadBalancerArn", "")]),
        "ModifyListener": Change(Kind.LISTENERS, [balancer_of(fields.get("ListenerArn", ""))]),
        "DeleteListener": Change(Kind.LISTENERS, [balancer_of(fields.get("ListenerArn", ""))]),
        "CreateTargetGroup": Change(Kind.GROUPS, wire.elements("TargetGroupArn", answer)),
    }
    if action in ELBV2_GROUP_CALLS:
        return Change(Kind.GROUPS, [fields.get("TargetGroupArn", "")])
    change = found.get(action)
    return Change(change.kind, [i for i in change.ids if i]) if change else None


def balancer_of(listener_arn: str) -> str:
    """arn:...:listener/app/NAME/LB-ID/LISTENER-ID -> arn:...:loadbalancer/app/NAME/LB-ID"""
    head, _, path = listener_arn.partition(":listener/")
    return f"{head}:loadbalancer/{path.rsplit('/', 1)[0]}" if path else ""
