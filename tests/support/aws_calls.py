"""Every AWS call a boto3 session makes, named as the IAM action it needs (`prefix:Operation`).

Recorded on `before-parameter-build`, which botocore emits to every handler just before `before-call`.
`before-call` itself would miss calls: botocore runs the handlers of the most specific event first and
stops at the first that answers, so a fault injected on `before-call.ec2.RunInstances` would hide the
attempt from a generic `before-call` handler, while on real AWS that attempt still needs its permission.

Watch a session before it builds its first client: a botocore client copies the session's event
handlers when it is created.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3

IAM_PREFIXES = {
    "ec2": "ec2",
    "elbv2": "elasticloadbalancing",
    "ssm": "ssm",
    "acm": "acm",
    "route53": "route53",
}
"""botocore service name -> IAM action prefix. For these services the IAM action is the API operation's
name; a service missing here is reported by name rather than guessed."""


@dataclass(frozen=True)
class AwsCall:
    action: str
    params: dict[str, Any]


class ActionRecorder:
    """Collects the calls of every session it watches; thread-safe (activities run in a thread pool)."""

    def __init__(self) -> None:
        self.calls: list[AwsCall] = []
        self.unknown_services: set[str] = set()
        self._lock = threading.Lock()

    def watch(self, session: boto3.Session) -> boto3.Session:
        session.events.register("before-parameter-build", self._record)
        return session

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        prefix = IAM_PREFIXES.get(service)
        with self._lock:
            if prefix is None:
                self.unknown_services.add(service)
            else:
                self.calls.append(AwsCall(f"{prefix}:{model.name}", dict(params)))

    @property
    def actions(self) -> set[str]:
        with self._lock:
            return {call.action for call in self.calls}

    def calls_of(self, action: str) -> list[AwsCall]:
        with self._lock:
            return [call for call in self.calls if call.action == action]
