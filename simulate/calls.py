"""Count the AWS calls a session makes: the cost side of a deployment (creates, polls, API rate).

Counted at `before-parameter-build`, once per API call however many HTTP attempts botocore makes,
and before any `before-call` hook can answer in AWS's place (an injected fault is still a call); the
call's own parameters are kept so a wait's polls (a describe that names its resource) can be told
apart from find-by-tag lookups.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import boto3

from simulate.profile import LatencyProfile

POLL_IDS = {
    ("ec2", "DescribeNatGateways"): "NatGatewayIds",
    ("ec2", "DescribeInstances"): "InstanceIds",
    ("ec2", "DescribeInstanceStatus"): "InstanceIds",
    ("elbv2", "DescribeLoadBalancers"): "LoadBalancerArns",
    ("elbv2", "DescribeTargetHealth"): "Targets",
}
"""The describe calls of the waits and the parameter that names what they wait for."""


@dataclass(frozen=True)
class Call:
    service: str
    action: str
    params: dict[str, Any]
    at: float

    @property
    def name(self) -> str:
        return f"{self.service}.{self.action}"

    def polled(self) -> tuple[str, ...] | None:
        """The resources a wait's poll names, or None when the call is no poll."""
        ids = self.params.get(POLL_IDS.get((self.service, self.action), ""))
        if not ids:
            return None
        return tuple(sorted(i["Id"] if isinstance(i, dict) else i for i in ids))


class CallCounter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    def install(self, session: boto3.Session) -> CallCounter:
        session.events.register("before-parameter-build", self._count)
        return self

    def _count(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        call = Call(model.service_model.service_name, model.name, dict(params), self._clock())
        with self._lock:
            self.calls.append(call)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def by_action(self) -> Counter[str]:
        return Counter(call.name for call in self.calls)

    def polls(self) -> Counter[tuple[str, tuple[str, ...]]]:
        """Polls per wait: (action, the resources it waits for) -> describe calls."""
        return Counter((c.name, ids) for c in self.calls if (ids := c.polled()) is not None)


def throttled(calls: Iterable[Call], profile: LatencyProfile) -> dict[str, int]:
    """Calls that AWS's rate buckets would have refused, per bucket, in real (unscaled) time.

    Each bucket starts full (its burst) and refills at its rate; a call takes one token from every
    bucket it belongs to (its kind's, and its action's own if the profile has one).
    """
    state = {name: [burst, None] for name, (burst, _) in profile.buckets.items()}
    refused: Counter[str] = Counter()
    for call in sorted(calls, key=lambda c: c.at):
        real_time = call.at / profile.scale
        kind = "describe" if profile.is_read(call.action) else "mutating"
        for name in (kind, call.name):
            if name not in state:
                continue
            burst, rate = profile.buckets[name]
            tokens, last = state[name]
            if last is not None:
                tokens = min(burst, tokens + (real_time - last) * rate)
            if tokens >= 1:
                tokens -= 1
            else:
                refused[name] += 1
            state[name] = [tokens, real_time]
    return {name: refused[name] for name in profile.buckets}
