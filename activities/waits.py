"""Polling inside an activity, with a heartbeat per poll.

The heartbeat lets Temporal notice a dead worker within the heartbeat timeout and hand the wait to
another worker; the pause between polls doubles as the point where a cancellation is noticed.
The acceptors (which states mean done, which mean failed) are botocore's own waiter definitions,
asked one attempt at a time so that heartbeats can go out in between.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError, WaiterError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from models.resources import Waiting, WaitShape


def pause(waiting: Waiting, detail: str) -> None:
    """Heartbeat, then wait one poll interval unless the activity is cancelled meanwhile."""
    activity.heartbeat(detail)
    activity.wait_for_cancelled_sync(timeout=waiting.poll_interval_seconds)  # returns None either way
    if activity.is_cancelled():
        raise asyncio.CancelledError(f"cancelled while {detail}")


def timed_out(waiting: Waiting, what: str, *, retryable: bool) -> ApplicationError:
    return ApplicationError(
        f"timed out after {waiting.timeout_seconds:g} s waiting for {what}",
        type="WaitTimeout",
        non_retryable=not retryable,
    )


def poll_until(
    check: Callable[[], bool], waiting: Waiting, what: str, *, retryable_timeout: bool = False
) -> None:
    """Call `check` until it returns True or the timeout passes."""
    if waiting.shape is WaitShape.RETRY:
        check_once(check, waiting, what, retryable_timeout=retryable_timeout)
        return
    deadline = time.monotonic() + waiting.timeout_seconds
    while not check():
        if time.monotonic() > deadline:
            raise timed_out(waiting, what, retryable=retryable_timeout)
        pause(waiting, f"waiting for {what}")


def check_once(check: Callable[[], bool], waiting: Waiting, what: str, *, retryable_timeout: bool) -> None:
    """Wait shape (b): one check; not there yet is a retryable failure, and the activity's retry
    policy (workflows/options.py) is the poll schedule. The timeout counts from the first attempt."""
    if check():
        return
    waited = datetime.now(UTC) - activity.info().scheduled_time
    if waited.total_seconds() > waiting.timeout_seconds:
        raise timed_out(waiting, what, retryable=retryable_timeout)
    # BENIGN: an expected failure, logged at DEBUG (a warning with a traceback per poll costs CPU).
    raise ApplicationError(f"not yet: {what}", type="NotReady", category=ApplicationErrorCategory.BENIGN)


def waiter_reached(client: Any, waiter_name: str, what: str, params: dict[str, Any]) -> bool:
    """One attempt of a botocore waiter: True when its acceptors say done, False when not yet."""
    waiter = client.get_waiter(waiter_name)
    try:
        waiter.wait(**params, WaiterConfig={"Delay": 1, "MaxAttempts": 1})
    except WaiterError as err:
        if "Error" in (err.last_response or {}):
            # An AWS error, not a state: classified like any other call's (aws_errors).
            raise ClientError(err.last_response, waiter.config.operation) from err
        if "Max attempts exceeded" in str(err):
            return False
        raise ApplicationError(f"{what} failed: {err}", type="WaiterFailure", non_retryable=True) from err
    return True


def wait_for(client: Any, waiter_name: str, waiting: Waiting, what: str, **params: Any) -> None:
    """Run a botocore waiter one attempt at a time, heartbeating between attempts."""
    poll_until(lambda: waiter_reached(client, waiter_name, what, params), waiting, what)
