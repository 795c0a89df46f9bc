"""Waits of one kind share their describe calls: one call per poll interval for all of them.

A worker running many deployments has many waits of one kind at once (50 NAT gateways pending).
Polling each on its own made most of the worker's AWS calls and much of its CPU (figures in
docs/benchmarks.md). Here whichever waiting thread finds a poll due
describes every id then waited on in one call (chunked to the API's limit); each wait reads its own
resource's state from that answer, judged by botocore's acceptors for that waiter on the answer cut
down to that resource, so "done" and "failed" mean exactly what they mean to the single-id wait.

A batched call that fails (an id AWS no longer knows fails the whole call, or a throttle outlasts
botocore's retries) sends each of its waits back to its own single-id check, so errors are
classified exactly as before; a call for one id raises its error as the single-id wait would. A
wait alone in its group polls on its own schedule, as before.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore import xform_name
from botocore.exceptions import ClientError

from activities.acceptors import matching_acceptor, waiter_config
from models.resources import Waiting


@dataclass(frozen=True)
class Batchable:
    """How one waiter's describe call lists ids, and how to read one id's part of its answer."""

    param: str
    limit: int
    """Ids per call (the API's maximum)."""
    cut: Callable[[dict[str, Any], str], dict[str, Any]]
    """The answer cut down to one id, shaped like the waiter's answer for that id alone."""
    operation: str | None = None
    """A smaller describe that answers what the acceptors read (`cut` reshapes it); None: the waiter's."""
    params: dict[str, Any] = field(default_factory=dict)
    """Fixed parameters of that describe."""


def _nat(answer: dict[str, Any], nat_id: str) -> dict[str, Any]:
    return {"NatGateways": [g for g in answer.get("NatGateways", []) if g.get("NatGatewayId") == nat_id]}


def _instance(answer: dict[str, Any], instance_id: str) -> dict[str, Any]:
    reservations = []
    for reservation in answer.get("Reservations", []):
        mine = [i for i in reservation.get("Instances", []) if i.get("InstanceId") == instance_id]
        if mine:
            reservations.append({"Instances": mine})
    return {"Reservations": reservations}


def _instance_state(answer: dict[str, Any], instance_id: str) -> dict[str, Any]:
    """A DescribeInstanceStatus answer as DescribeInstances would give it: the state is all that
    instance_running's acceptors read, and the status answer is a small part of the size: parsing
    DescribeInstances for the instances of many deployments costs the worker CPU on every poll."""
    instances = [
        {"InstanceId": status["InstanceId"], "State": status["InstanceState"]}
        for status in answer.get("InstanceStatuses", [])
        if status.get("InstanceId") == instance_id
    ]
    return {"Reservations": [{"Instances": instances}] if instances else []}


def _balancer(answer: dict[str, Any], arn: str) -> dict[str, Any]:
    return {"LoadBalancers": [b for b in answer.get("LoadBalancers", []) if b.get("LoadBalancerArn") == arn]}


BATCHABLE = {
    "nat_gateway_available": Batchable("NatGatewayIds", 1000, _nat),
    "nat_gateway_deleted": Batchable("NatGatewayIds", 1000, _nat),
    "instance_running": Batchable(
        "InstanceIds",
        100,
        _instance_state,
        operation="describe_instance_status",
        params={"IncludeAllInstances": True},  # pending ones too, not only those running
    ),
    "instance_terminated": Batchable("InstanceIds", 1000, _instance),
    "load_balancer_available": Batchable("LoadBalancerArns", 20, _balancer),
    "load_balancers_deleted": Batchable("LoadBalancerArns", 20, _balancer),
}
"""The waiters whose describe takes a list of ids; the target-health wait names one group per call."""


@dataclass(frozen=True)
class Verdict:
    """One resource's state in one poll."""

    poll: int
    done: bool = False
    ask_alone: bool = False
    """Its own single-id check decides: the shared call failed, the resource is missing from the
    answer, or it is in a state the waiter calls failed (so the wait fails with the same words)."""


NOT_YET = Verdict(poll=-1)


@dataclass
class _Group:
    """The waits of one kind on one client: who waits, the latest verdicts, whose turn it is to poll."""

    condition: threading.Condition = field(default_factory=threading.Condition)
    waiting: dict[str, int] = field(default_factory=dict)
    """id -> how many waits are on it."""
    joined: dict[str, float] = field(default_factory=dict)
    """id -> when its first wait joined: the youngest wait sets how soon the group polls again."""
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    polls: int = 0
    polling: bool = False
    next_poll: float = 0.0


class SharedPolls:
    """The groups of one worker process; botocore clients are shared, so a group is per client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: weakref.WeakKeyDictionary[Any, dict[str, _Group]] = weakref.WeakKeyDictionary()
        self.calls = 0
        """Describe calls made for groups (tests and benchmarks read it)."""

    @staticmethod
    def resource_id(waiter_name: str, params: dict[str, Any]) -> str | None:
        """The one id this wait is on, when it can share; None sends it to the single-id wait."""
        batchable = BATCHABLE.get(waiter_name)
        if batchable is None or set(params) != {batchable.param}:
            return None
        ids = params[batchable.param]
        return ids[0] if len(ids) == 1 else None

    def group(self, client: Any, waiter_name: str) -> _Group:
        with self._lock:
            return self._groups.setdefault(client, {}).setdefault(waiter_name, _Group())

    def next_verdict(
        self, client: Any, waiter_name: str, resource_id: str, seen: int, waiting: Waiting
    ) -> Verdict:
        """The verdict of the next poll after poll `seen`, polling for everyone when one is due.

        Returns within about one poll interval (the caller heartbeats): NOT_YET when nothing new."""
        group = self.group(client, waiter_name)
        with group.condition:
            verdict = group.verdicts.get(resource_id)
            if verdict is not None and verdict.poll > seen:
                return verdict
            now = time.monotonic()
            if group.polling or now < group.next_poll:
                # At most one poll interval: the caller notices a cancellation as often as an
                # unshared wait does, even when the group polls less often (old waits).
                due = waiting.poll_interval_seconds if group.polling else group.next_poll - now
                group.condition.wait(timeout=min(due, waiting.poll_interval_seconds))
                verdict = group.verdicts.get(resource_id)
                return verdict if verdict is not None and verdict.poll > seen else NOT_YET
            group.polling = True
            ids = sorted(group.waiting)
        answered: dict[str, Verdict] = {}
        try:
            answered = self._poll(client, waiter_name, ids, group.polls + 1, resource_id)
        finally:
            with group.condition:
                group.polls += 1
                group.verdicts.update(answered)
                group.polling = False
                now = time.monotonic()
                youngest = max(group.joined.values(), default=now)
                group.next_poll = now + waiting.interval(now - youngest)
                group.condition.notify_all()
        return answered.get(resource_id, NOT_YET)

    def join(self, client: Any, waiter_name: str, resource_id: str) -> None:
        group = self.group(client, waiter_name)
        with group.condition:
            group.waiting[resource_id] = group.waiting.get(resource_id, 0) + 1
            group.joined.setdefault(resource_id, time.monotonic())

    def leave(self, client: Any, waiter_name: str, resource_id: str) -> None:
        group = self.group(client, waiter_name)
        with group.condition:
            group.waiting[resource_id] -= 1
            if not group.waiting[resource_id]:
                del group.waiting[resource_id]
                del group.joined[resource_id]
                group.verdicts.pop(resource_id, None)

    def _poll(self, client: Any, waiter_name: str, ids: list[str], poll: int, own: str) -> dict[str, Verdict]:
        """One verdict per id; an error on a call for the poller's own id alone is raised, as the
        single-id wait raises it (no second call that could succeed where the first failed)."""
        batchable = BATCHABLE[waiter_name]
        config = waiter_config(client, waiter_name)
        describe = getattr(client, batchable.operation or xform_name(config.operation))
        verdicts: dict[str, Verdict] = {}
        for start in range(0, len(ids), batchable.limit):
            chunk = ids[start : start + batchable.limit]
            with self._lock:
                self.calls += 1
            try:
                answer = describe(**{batchable.param: chunk}, **batchable.params)
            except ClientError as err:
                if len(chunk) > 1:
                    # Any one id can fail the call (NotFound): each asks alone.
                    verdicts.update({i: Verdict(poll=poll, ask_alone=True) for i in chunk})
                    continue
                # One id: the error is that resource's, judged as the waiter judges errors.
                verdict = _judge(err.response, config.acceptors, poll)
                if verdict.ask_alone and chunk == [own]:
                    raise
                verdicts[chunk[0]] = verdict
                continue
            for resource_id in chunk:
                verdicts[resource_id] = _judge(batchable.cut(answer, resource_id), config.acceptors, poll)
        return verdicts


def _judge(response: dict[str, Any], acceptors: list[Any], poll: int) -> Verdict:
    """botocore's acceptors on one resource's answer (or error), as the single-id wait judges it."""
    acceptor = matching_acceptor(response, acceptors)
    state = acceptor.state if acceptor is not None else None
    if state == "success":
        return Verdict(poll=poll, done=True)
    if state == "retry":
        return Verdict(poll=poll)
    if state == "failure" or "Error" in response or not next(iter(response.values())):
        # Failed, an error no acceptor expects, or missing from the answer: the single-id check
        # raises it with the words (and the classification) the wait has always used.
        return Verdict(poll=poll, ask_alone=True)
    return Verdict(poll=poll)


SHARED = SharedPolls()
"""The worker process's groups."""
