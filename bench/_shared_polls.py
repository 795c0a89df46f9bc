"""Experiment: one describe per poll interval for all the waits of one kind in a worker process.

Under wait shape (a) every wait polls on its own: 50 deployments waiting for their NAT gateways make
50 DescribeNatGateways calls a poll interval, and the polls are most of the worker's CPU (bench
figures: 60 of 99 AWS calls of a deployment). Here the waits of one kind (same client, same waiter)
share their polls: whichever waiting thread finds a poll due describes every id then waiting, in one
call (chunked to the API's limit), and each waiter reads its own resource's state from that answer,
judged by botocore's acceptors for that waiter on the answer cut down to that resource. Everything
else is shape (a): the activity heartbeats each interval, notices a cancel, times out the same way. A
batched call that fails (an id AWS no longer knows, a throttle) sends each waiter back to its own
single-id check, so errors are classified exactly as before. Waits of other shapes (the target-health
wait names one target group per call) are left alone.

bench/_sim_worker.py installs it when BENCH_SHARED_POLLS=1, by pointing the activity modules'
`wait_for` at `SharedPolls.wait_for`; adopting it would mean moving this into activities/waits.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import waits
from models.resources import Waiting, WaitShape


@dataclass(frozen=True)
class Batchable:
    param: str
    """The describe parameter that lists ids."""
    limit: int
    """Ids per call."""
    cut: Callable[[dict[str, Any], str], dict[str, Any]]
    """The answer cut down to one id, shaped like an answer for that id alone."""


def _nat(answer: dict[str, Any], nat_id: str) -> dict[str, Any]:
    return {"NatGateways": [g for g in answer.get("NatGateways", []) if g.get("NatGatewayId") == nat_id]}


def _instance(answer: dict[str, Any], instance_id: str) -> dict[str, Any]:
    return {
        "Reservations": [
            {"Instances": [i for i in r.get("Instances", []) if i.get("InstanceId") == instance_id]}
            for r in answer.get("Reservations", [])
            if any(i.get("InstanceId") == instance_id for i in r.get("Instances", []))
        ]
    }


def _balancer(answer: dict[str, Any], arn: str) -> dict[str, Any]:
    return {"LoadBalancers": [b for b in answer.get("LoadBalancers", []) if b.get("LoadBalancerArn") == arn]}


BATCHABLE = {
    "nat_gateway_available": Batchable("NatGatewayIds", 100, _nat),
    "nat_gateway_deleted": Batchable("NatGatewayIds", 100, _nat),
    "instance_running": Batchable("InstanceIds", 100, _instance),
    "instance_terminated": Batchable("InstanceIds", 100, _instance),
    "load_balancer_available": Batchable("LoadBalancerArns", 20, _balancer),
    "load_balancers_deleted": Batchable("LoadBalancerArns", 20, _balancer),
}

SUCCESS, FAILURE, NOT_YET, ASK_ALONE = "success", "failure", "not yet", "ask alone"


@dataclass
class _Group:
    """The waits of one kind: who waits, the latest answer for each, whose turn it is to poll."""

    condition: threading.Condition = field(default_factory=threading.Condition)
    waiting: set[str] = field(default_factory=set)
    states: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    """id -> (poll number, state, reason)."""
    polls: int = 0
    polling: bool = False
    next_poll: float = 0.0


class SharedPolls:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[tuple[int, str], _Group] = {}
        self._waiters: dict[tuple[int, str], Any] = {}
        self.calls = 0
        """Batched describe calls made (for the benchmark's curiosity)."""

    def install(self, *modules: Any) -> SharedPolls:
        for module in modules:
            module.wait_for = self.wait_for
        return self

    def wait_for(self, client: Any, waiter_name: str, waiting: Waiting, what: str, **params: Any) -> None:
        batchable = BATCHABLE.get(waiter_name)
        ids = params.get(batchable.param) if batchable else None
        if (
            batchable is None
            or waiting.shape is not WaitShape.POLL
            or set(params) != {batchable.param}
            or not ids
            or len(ids) != 1
        ):
            waits.wait_for(client, waiter_name, waiting, what, **params)
            return
        self._wait(client, waiter_name, batchable, ids[0], waiting, what)

    def _waiter(self, client: Any, waiter_name: str) -> Any:
        """botocore builds a waiter class per get_waiter call: one per kind is enough."""
        with self._lock:
            key = (id(client), waiter_name)
            if key not in self._waiters:
                self._waiters[key] = client.get_waiter(waiter_name)
            return self._waiters[key]

    def _group(self, client: Any, waiter_name: str) -> _Group:
        with self._lock:
            return self._groups.setdefault((id(client), waiter_name), _Group())

    def _wait(
        self,
        client: Any,
        waiter_name: str,
        batchable: Batchable,
        resource_id: str,
        waiting: Waiting,
        what: str,
    ) -> None:
        group = self._group(client, waiter_name)
        deadline = time.monotonic() + waiting.timeout_seconds
        seen = -1
        with group.condition:
            group.waiting.add(resource_id)
        try:
            while True:
                state, reason, seen = self._next_answer(
                    client, waiter_name, batchable, group, resource_id, seen, waiting
                )
                if state == ASK_ALONE:
                    # The shared call failed: this wait's own check, with its own error handling.
                    if waits.waiter_reached(client, waiter_name, what, {batchable.param: [resource_id]}):
                        return
                elif state == SUCCESS:
                    return
                elif state == FAILURE:
                    raise ApplicationError(
                        f"{what} failed: {reason}", type="WaiterFailure", non_retryable=True
                    )
                if time.monotonic() > deadline:
                    raise ApplicationError(
                        f"timed out after {waiting.timeout_seconds:g} s waiting for {what}",
                        type="WaitTimeout",
                        non_retryable=True,
                    )
                activity.heartbeat(f"waiting for {what}")
                if activity.is_cancelled():
                    raise asyncio.CancelledError(f"cancelled while waiting for {what}")
        finally:
            with group.condition:
                group.waiting.discard(resource_id)
                group.states.pop(resource_id, None)

    def _next_answer(
        self,
        client: Any,
        waiter_name: str,
        batchable: Batchable,
        group: _Group,
        resource_id: str,
        seen: int,
        waiting: Waiting,
    ) -> tuple[str, str, int]:
        """The state from the next poll after `seen`, polling for everyone when it is due.

        Returns at least once per poll interval (the caller heartbeats), with NOT_YET if nothing new."""
        with group.condition:
            answer = group.states.get(resource_id)
            if answer is not None and answer[0] > seen:
                return answer[1], answer[2], answer[0]
            now = time.monotonic()
            if group.polling or now < group.next_poll:
                wait = waiting.poll_interval_seconds if group.polling else group.next_poll - now
                group.condition.wait(timeout=max(wait, 0.001))
                answer = group.states.get(resource_id)
                if answer is not None and answer[0] > seen:
                    return answer[1], answer[2], answer[0]
                return NOT_YET, "", seen
            group.polling = True
            ids = sorted(group.waiting)
        states: dict[str, tuple[str, str]] = {}
        try:
            states = self._poll(client, waiter_name, batchable, ids)
        finally:
            with group.condition:
                group.polls += 1
                for polled, (state, reason) in states.items():
                    group.states[polled] = (group.polls, state, reason)
                group.polling = False
                group.next_poll = time.monotonic() + waiting.poll_interval_seconds
                group.condition.notify_all()
        with group.condition:
            answer = group.states.get(resource_id)
        if answer is not None and answer[0] > seen:
            return answer[1], answer[2], answer[0]
        return NOT_YET, "", seen

    def _poll(
        self, client: Any, waiter_name: str, batchable: Batchable, ids: list[str]
    ) -> dict[str, tuple[str, str]]:
        waiter = self._waiter(client, waiter_name)
        acceptors = [a for a in waiter.config.acceptors if a.matcher != "error"]
        operation = getattr(client, _snake(waiter.config.operation))
        states: dict[str, tuple[str, str]] = {}
        for start in range(0, len(ids), batchable.limit):
            chunk = ids[start : start + batchable.limit]
            try:
                answer = operation(**{batchable.param: chunk})
                self.calls += 1
            except ClientError:
                states.update({i: (ASK_ALONE, "") for i in chunk})
                continue
            for resource_id in chunk:
                cut = batchable.cut(answer, resource_id)
                state = next((a.state for a in acceptors if a.matcher_func(cut)), None)
                if state == "success":
                    states[resource_id] = (SUCCESS, "")
                elif state == "failure":
                    states[resource_id] = (FAILURE, f"Waiter {waiter_name} failed: a state it cannot leave")
                elif not next(iter(cut.values())):
                    # Not in the answer: the single-id call would have raised (NotFound); let it.
                    states[resource_id] = (ASK_ALONE, "")
                else:
                    states[resource_id] = (NOT_YET, "")
        return states


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
