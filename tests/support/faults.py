"""Fault injection on the real boto3 session the activities use (botocore event hooks).

A `before-call` handler that returns a response short-circuits the HTTP request: botocore raises the
same `ClientError` it would raise for AWS's answer, and its retry logic sees it like a real one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse


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
