"""Fault injection on the real boto3 session the activities use (botocore event hooks).

A `before-call` handler that returns a response short-circuits the HTTP request: botocore raises the
same `ClientError` it would raise for AWS's answer, and its retry logic sees it like a real one.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from botocore.httpsession import URLLib3Session
from temporalio import activity

from models.naming import RESOURCE_TAG
from tests.support.wire import http_error


def error_response(code: str, message: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse(url="https://injected.invalid", status_code=status, headers={}, raw=None)
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return http, parsed


@dataclass
class InjectedFault:
    """Fail `operation` with `code`; `occurrences` picks which calls (1-based), None means all."""

    service: str
    operation: str
    code: str = "UnauthorizedOperation"
    message: str = "injected by the test"
    status: int = 400
    occurrences: set[int] | None = None
    calls: int = 0
    failed: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)

    def install(self, session: boto3.Session) -> InjectedFault:
        session.events.register(f"before-call.{self.service}.{self.operation}", self._handle)
        return self

    def _handle(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        self.calls += 1
        self.seen.append(params)
        if self.occurrences is None or self.calls in self.occurrences:
            self.failed += 1
            return error_response(self.code, self.message, self.status)
        return None


class HeldState:
    """Report a resource as still `pending` until released: a deployment with a middle.

    moto makes NAT gateways available at once; real AWS takes minutes. Rewriting the describe answer
    (`after-call`) lets the real waiter code poll, heartbeat and be cancelled or killed meanwhile.
    """

    def __init__(self, session: boto3.Session, operation: str, collection: str, ready: str, held: str):
        self.released = threading.Event()
        self.polls = 0
        self._collection, self._ready, self._held = collection, ready, held
        session.events.register(f"after-call.ec2.{operation}", self._rewrite)

    def _rewrite(self, parsed: dict[str, Any], **_: Any) -> None:
        if self.released.is_set():
            return
        for item in parsed.get(self._collection, []):
            if item.get("State") == self._ready:
                self.polls += 1
                item["State"] = self._held


def hold_nat_gateways(session: boto3.Session) -> HeldState:
    return HeldState(session, "DescribeNatGateways", "NatGateways", "available", "pending")


def slow_nat_gateways(session: boto3.Session, seconds: float) -> None:
    """NAT gateways stay `pending` until `seconds` after their creation, as on real AWS.

    It depends only on the gateway's CreateTime, so every worker process agrees on the state.
    """

    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        now = datetime.now(UTC)
        for gateway in parsed.get("NatGateways", []):
            age = (now - gateway["CreateTime"]).total_seconds()
            if gateway.get("State") == "available" and age < seconds:
                gateway["State"] = "pending"

    session.events.register("after-call.ec2.DescribeNatGateways", rewrite)


# Calls by operation: the fault matrix


def operation_of(model: Any) -> tuple[str, str]:
    """(service, operation) as the boto3 client names them: ("ec2", "CreateSubnet"), ("elbv2", ...)."""
    return model.service_model.service_name, model.name


PERMANENT_CODES = {
    "ec2": "UnauthorizedOperation",
    "elbv2": "AccessDenied",
    "ssm": "AccessDeniedException",
    "acm": "AccessDeniedException",
    "route53": "AccessDenied",
}
"""What each service answers a caller who lacks the permission: an error no retry can fix."""


@dataclass(frozen=True)
class CallSite:
    """The call a fault hit, and the activity (by id in the workflow history) that made it."""

    service: str
    operation: str
    occurrence: int
    activity_id: str | None
    activity_type: str | None


class OperationFaults:
    """Counts every AWS call per operation; when armed, fails the n-th call of one operation for good.

    Install it before the worker makes its first call: a boto3 client copies the session's event
    hooks when it is built, so hooks added later never reach it.
    """

    def __init__(self, session: boto3.Session) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.target: tuple[str, str, int] | None = None
        self.hit: CallSite | None = None
        session.events.register("before-call", self._handle)

    def arm(self, target: tuple[str, str, int] | None) -> None:
        """Start counting afresh; `target` = (service, operation, occurrence), None records only."""
        with self._lock:
            self.counts, self.target, self.hit = Counter(), target, None

    def _handle(self, model: Any, **_: Any) -> tuple[AWSResponse, dict] | None:
        service, operation = operation_of(model)
        with self._lock:
            self.counts[service, operation] += 1
            if self.target != (service, operation, self.counts[service, operation]):
                return None
            info = activity.info() if activity.in_activity() else None
            self.hit = CallSite(
                service,
                operation,
                self.counts[service, operation],
                info.activity_id if info else None,
                info.activity_type if info else None,
            )
        code = PERMANENT_CODES.get(service, "UnauthorizedOperation")
        return error_response(code, "injected by the fault matrix")


class SiblingRace:
    """Fail the first call of a create for good and hold the second (a sibling branch's) in flight.

    A rollback that stops and settles its running siblings first cancels the held activity (the SDK
    raises in its thread, so the create never leaves). One that unwinds without settling reaches the
    held resource's compensation first: the create is then let through right after that
    compensation's lookup (`lookup`) came back empty, and the resource leaks, every time.
    """

    def __init__(self, session: boto3.Session, service: str, create: str, lookup: str) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.calls = 0
        self.held_resource: str | None = None
        self.holding = False
        self.released = threading.Event()
        self.landed = threading.Event()
        # `before-parameter-build` sees the API parameters (tags, filters); `before-call` the wire format.
        session.events.register(f"before-parameter-build.{service}.{create}", self._name_create)
        session.events.register(f"before-call.{service}.{create}", self._before_create)
        session.events.register(f"after-call.{service}.{create}", self._after_create)
        session.events.register(f"before-parameter-build.{service}.{lookup}", self._before_lookup)
        session.events.register(f"after-call.{service}.{lookup}", self._after_lookup)

    def _name_create(self, params: dict[str, Any], **_: Any) -> None:
        self._local.resource = resource_tag(params)

    def _before_create(self, **_: Any) -> tuple[AWSResponse, dict] | None:
        with self._lock:
            self.calls += 1
            call = self.calls
        if call == 1:
            return error_response("UnauthorizedOperation", "injected: the first call fails for good")
        if call == 2:
            self.held_resource, self._local.held, self.holding = self._local.resource, True, True
            try:
                while not self.released.is_set():
                    activity.heartbeat("held in flight by the test")
                    activity.wait_for_cancelled_sync(timeout=0.05)
                    if activity.is_cancelled():
                        break  # cancelled but not interrupted: the create goes out, as one on the wire
            finally:
                self.holding = False
        return None

    def _after_create(self, **_: Any) -> None:
        if getattr(self._local, "held", False):
            self.landed.set()

    def _before_lookup(self, params: dict[str, Any], **_: Any) -> None:
        """Mark the held resource's own compensation, looking for it."""
        wanted = [f["Values"] for f in params.get("Filters", []) if f.get("Name") == f"tag:{RESOURCE_TAG}"]
        compensating = activity.in_activity() and not activity.info().activity_type.startswith("launch")
        self._local.compensation = compensating and [self.held_resource] in wanted

    def _after_lookup(self, **_: Any) -> None:
        if getattr(self._local, "compensation", False) and self.holding:
            self.released.set()
            self.landed.wait(timeout=30)


def resource_tag(params: dict[str, Any]) -> str | None:
    """The logical name a create call tags its resource with."""
    for spec in params.get("TagSpecifications", []):
        for tag in spec.get("Tags", []):
            if tag["Key"] == RESOURCE_TAG:
                return tag["Value"]
    return None


# The transient storm: retryable errors on a share of all HTTP attempts, and lost replies on changes

READ_PREFIXES = ("Describe", "Get", "List")
THROTTLE_CODES = {"ec2": "RequestLimitExceeded", "ssm": "ThrottlingException"}
"""How each service says "slow down" (ELBv2 and the rest: Throttling)."""
SERVER_ERRORS = [("InternalError", 500), ("ServiceUnavailable", 503)]


def changes_the_account(operation: str) -> bool:
    """Every call that is not a read changes the account: its reply can be lost after it took effect."""
    return not operation.startswith(READ_PREFIXES)


def wire_error(service: str, request: Any, code: str, status: int) -> AWSResponse:
    """`request`'s service answers `code` in its own protocol (SSM's is JSON: it sends X-Amz-Target)."""
    json_protocol = "X-Amz-Target" in request.headers
    return http_error(service, code, status, "injected by the transient storm", json_protocol=json_protocol)


class TransientStorm:
    """A share `rate` of all HTTP attempts fails with a retryable error; calls that change something may
    lose their reply.

    Per attempt (`before-send`, so botocore's own retries meet the storm too): throttling, a 5xx, or a
    connection that never opened. For a call that changes the account, a share `lost_share` of its
    failures are lost replies instead: the request really reaches AWS (moto) and takes effect, then the
    client sees a closed connection or a 5xx. `lose_first_replies` loses the reply of the first call of
    every such operation on top, so each one is shown to survive it. Draws are seeded per (operation,
    attempt number), so a seed gives the same storm whatever the threads' interleaving across operations.
    """

    def __init__(
        self,
        session: boto3.Session,
        seed: int,
        rate: float = 0.3,
        lost_share: float = 0.5,
        lose_first_replies: bool = False,
    ) -> None:
        self.seed, self.rate, self.lost_share = seed, rate, lost_share
        self.lose_first_replies = lose_first_replies
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.lost: list[tuple[str, int]] = []
        """(operation, the status AWS answered) of every lost reply."""
        self._http = URLLib3Session(timeout=60)
        session.events.register("before-send", self._handle)

    @property
    def attempts(self) -> int:
        return sum(self._attempts.values())

    @property
    def changing_operations(self) -> set[str]:
        """Every operation called that changes the account."""
        with self._lock:
            operations = {name.split(".", 2)[2] for name in self._attempts}
        return {operation for operation in operations if changes_the_account(operation)}

    def _handle(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            self._attempts[event_name] += 1
            attempt = self._attempts[event_name]
        draw = random.Random(f"{self.seed}:{event_name}:{attempt}")
        changes = changes_the_account(operation)
        if changes and attempt == 1 and self.lose_first_replies:
            return self._lose_reply(draw, service, operation, request)
        if draw.random() >= self.rate:
            return None
        if changes and draw.random() < self.lost_share:
            return self._lose_reply(draw, service, operation, request)
        return self._fail(draw, service, request, draw.choice(["throttle", "server", "connection"]))

    def _lose_reply(self, draw: random.Random, service: str, operation: str, request: Any) -> AWSResponse:
        """It happens on AWS's side; only the answer goes missing."""
        answer = self._http.send(request)
        kind = draw.choice(["server", "connection"])
        with self._lock:
            self.lost.append((operation, answer.status_code))
            self.failed[f"lost reply ({kind})"] += 1
        if kind == "connection":
            raise ConnectionClosedError(endpoint_url=request.url)
        return wire_error(service, request, *draw.choice(SERVER_ERRORS))

    def _fail(self, draw: random.Random, service: str, request: Any, kind: str) -> AWSResponse:
        with self._lock:
            self.failed[kind] += 1
        if kind == "connection":
            raise EndpointConnectionError(endpoint_url=request.url)
        if kind == "throttle":
            code = THROTTLE_CODES.get(service, "Throttling")
            return wire_error(service, request, code, 503 if service == "ec2" else 400)
        return wire_error(service, request, *draw.choice(SERVER_ERRORS))
