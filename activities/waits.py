"""Polling inside an activity, with heartbeats between polls.

The heartbeat lets Temporal notice a dead worker within the heartbeat timeout and hand the wait to
another worker; the pause between polls doubles as the point where a cancellation is noticed.
The acceptors (which states mean done, which mean failed) are botocore's own waiter definitions,
asked one attempt at a time so that heartbeats can go out in between. Waits on one resource of a
kind that AWS describes by a list of ids share their polls with the worker's other waits of that
kind (activities/shared_polls.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.acceptors import waiter_reached
from activities.shared_polls import SHARED
from models.resources import Waiting


class Heartbeats:
    """An activity's heartbeats, at most one per quarter of its heartbeat timeout.

    The SDK's core sends the server at most one per 0.8 x the timeout anyway (and with it learns of a
    cancellation), so more often than a quarter only costs the worker CPU: each call is a task on the
    event loop and an encoded payload, for every poll of every wait."""

    def __init__(self) -> None:
        timeout = activity.info().heartbeat_timeout
        self._every = timeout.total_seconds() / 4 if timeout else 0.0
        self._last = -math.inf

    def __call__(self, detail: str) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            activity.heartbeat(detail)
            self._last = now


def pause(seconds: float, detail: str) -> None:
    """Wait until the next poll unless the activity is cancelled meanwhile."""
    activity.wait_for_cancelled_sync(timeout=seconds)  # returns None either way
    stop_if_cancelled(detail)


def stop_if_cancelled(detail: str) -> None:
    if activity.is_cancelled():
        raise asyncio.CancelledError(f"cancelled while {detail}")


def timed_out(waiting: Waiting, what: str, *, retryable: bool) -> ApplicationError:
    return ApplicationError(
        f"timed out after {waiting.timeout_seconds:g} s waiting for {what}",
        type="WaitTimeout",
        non_retryable=not retryable,
    )


def poll_until(
    check: Callable[[], bool],
    waiting: Waiting,
    what: str,
    *,
    retryable_timeout: bool = False,
    paced: bool = False,
) -> None:
    """Call `check` until it returns True or the timeout passes.

    `paced`: `check` itself waits for the next poll (a shared poll), so only a cancellation is
    looked for between checks."""
    started = time.monotonic()
    heartbeat = Heartbeats()
    while not check():
        age = time.monotonic() - started
        if age > waiting.timeout_seconds:
            raise timed_out(waiting, what, retryable=retryable_timeout)
        heartbeat(f"waiting for {what}")
        if paced:
            stop_if_cancelled(f"waiting for {what}")
        else:
            pause(waiting.interval(age), f"waiting for {what}")


def wait_for(client: Any, waiter_name: str, waiting: Waiting, what: str, **params: Any) -> None:
    """Run a botocore waiter one attempt at a time, heartbeating between attempts."""
    resource_id = SHARED.resource_id(waiter_name, params)
    if resource_id is None:
        poll_until(lambda: waiter_reached(client, waiter_name, what, params), waiting, what)
        return
    seen = -1

    def shared_check() -> bool:
        """The next shared poll's verdict; the wait's own single-id check when that cannot say."""
        nonlocal seen
        verdict = SHARED.next_verdict(client, waiter_name, resource_id, seen, waiting)
        seen = max(seen, verdict.poll)
        return verdict.done or (verdict.ask_alone and waiter_reached(client, waiter_name, what, params))

    SHARED.join(client, waiter_name, resource_id)
    try:
        poll_until(shared_check, waiting, what, paced=True)
    finally:
        SHARED.leave(client, waiter_name, resource_id)
