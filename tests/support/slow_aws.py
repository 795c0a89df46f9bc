"""AWS as slow as the real one, agreed on by every worker process: for crash tests.

moto finishes everything at once, so a deployment has no middle to crash in. These botocore hooks give
it one: a resource that reached a state is reported in the state before it (NAT `pending`, ALB
`provisioning`, instance `shutting-down`, ...) until some seconds after any process first saw it there,
and every create or delete call holds its reply back for a moment, after AWS has acted (a worker killed
then has made a resource it never reported). The first sighting is a file in a directory the processes
share, so a second worker picks up the same clock where a killed one left it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

MUTATING_PREFIXES = (
    "Create", "Allocate", "Run", "Register", "Associate", "Authorize", "Modify",
    "Delete", "Release", "Terminate", "Deregister", "Disassociate",
)  # fmt: skip

INSTANCE_STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48}


@dataclass(frozen=True)
class Transition:
    """While `seconds` have not passed since `real` was first seen, describes show `shown`."""

    event: str
    items: Callable[[dict[str, Any]], Iterable[dict[str, Any]]]
    id_of: Callable[[dict[str, Any]], str]
    state_of: Callable[[dict[str, Any]], str]
    show: Callable[[dict[str, Any], str], None]
    real: str
    shown: str


def _set_nat(item: dict[str, Any], state: str) -> None:
    item["State"] = state


def _set_alb(item: dict[str, Any], state: str) -> None:
    item["State"]["Code"] = state


def _set_instance(item: dict[str, Any], state: str) -> None:
    item["State"] = {"Name": state, "Code": INSTANCE_STATE_CODES[state]}


def _set_target(item: dict[str, Any], state: str) -> None:
    item["TargetHealth"] = {"State": state}


def _instances(parsed: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return [i for r in parsed.get("Reservations", []) for i in r.get("Instances", [])]


def _nat(real: str, shown: str) -> Transition:
    return Transition(
        "after-call.ec2.DescribeNatGateways", lambda p: p.get("NatGateways", []),
        lambda i: i["NatGatewayId"], lambda i: i.get("State", ""), _set_nat, real, shown,
    )  # fmt: skip


def _instance(real: str, shown: str) -> Transition:
    return Transition(
        "after-call.ec2.DescribeInstances", _instances,
        lambda i: i["InstanceId"], lambda i: i["State"]["Name"], _set_instance, real, shown,
    )  # fmt: skip


def _set_instance_status(item: dict[str, Any], state: str) -> None:
    item["InstanceState"] = {"Name": state, "Code": INSTANCE_STATE_CODES[state]}


def _instance_status(real: str, shown: str) -> Transition:
    """The same instance states in DescribeInstanceStatus, which the shared instance polls use."""
    return Transition(
        "after-call.ec2.DescribeInstanceStatus", lambda p: p.get("InstanceStatuses", []),
        lambda i: i["InstanceId"], lambda i: i["InstanceState"]["Name"], _set_instance_status, real, shown,
    )  # fmt: skip


def _set_certificate(item: dict[str, Any], state: str) -> None:
    item["Status"] = state


def _certificate(parsed: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return [parsed["Certificate"]] if "Certificate" in parsed else []


TRANSITIONS: dict[str, tuple[Transition, ...]] = {
    "nat_available": (_nat("available", "pending"),),
    "nat_deleted": (_nat("deleted", "deleting"),),
    "alb_active": (
        Transition(
            "after-call.elbv2.DescribeLoadBalancers",
            lambda p: p.get("LoadBalancers", []),
            lambda i: i["LoadBalancerArn"],
            lambda i: i.get("State", {}).get("Code", ""),
            _set_alb,
            "active",
            "provisioning",
        ),
    ),
    "instance_running": (_instance("running", "pending"), _instance_status("running", "pending")),
    "instance_terminated": (_instance("terminated", "shutting-down"),),
    "certificate_issued": (
        Transition(
            "after-call.acm.DescribeCertificate",
            _certificate,
            lambda i: i["CertificateArn"],
            lambda i: i.get("Status", ""),
            _set_certificate,
            "ISSUED",
            "PENDING_VALIDATION",
        ),  # fmt: skip
    ),
    "target_healthy": (
        Transition(
            "after-call.elbv2.DescribeTargetHealth",
            lambda p: p.get("TargetHealthDescriptions", []),
            lambda i: i["Target"]["Id"],
            lambda i: i.get("TargetHealth", {}).get("State", ""),
            _set_target,
            "healthy",
            "initial",
        ),
    ),
}
"""Per wait, the describe answers that show its resource's state (instances have two)."""


class SharedClock:
    """When any process first saw a resource in a state: the mtime of a file created exactly once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def first_seen(self, resource_id: str, state: str) -> float:
        name = hashlib.sha1(f"{resource_id}:{state}".encode()).hexdigest()
        path = self.directory / name
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return path.stat().st_mtime


def hold_transitions(session: boto3.Session, clock: SharedClock, seconds: dict[str, float]) -> None:
    """Install the named transitions (keys of TRANSITIONS), each held for its number of seconds."""
    for name, hold in seconds.items():
        for transition in TRANSITIONS[name]:
            session.events.register(transition.event, _rewriter(transition, clock, hold))


def _rewriter(transition: Transition, clock: SharedClock, hold: float) -> Callable[..., None]:
    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        for item in transition.items(parsed):
            if transition.state_of(item) != transition.real:
                continue
            if time.time() - clock.first_seen(transition.id_of(item), transition.real) < hold:
                transition.show(item, transition.shown)

    return rewrite


def delay_mutations(session: boto3.Session, seconds: float) -> None:
    """Every create or delete answers late: AWS has acted, the worker has not heard yet."""

    def delay(model: Any, **_: Any) -> None:
        if model.name.startswith(MUTATING_PREFIXES):
            time.sleep(seconds)

    session.events.register("after-call", delay)
