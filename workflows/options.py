"""Timeouts and retry policies for every activity call, derived from the spec's timing settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

from models.resources import Waiting
from models.spec import TimingSpec

WAIT_MARGIN = timedelta(minutes=1)
COMPENSATION_ATTEMPTS_FACTOR = 3
"""Deletes get more attempts: a dependant may still be going away (DependencyViolation)."""


def retry_policy(timing: TimingSpec, *, compensation: bool = False) -> RetryPolicy:
    attempts = timing.retry_maximum_attempts
    return RetryPolicy(
        initial_interval=timedelta(seconds=timing.retry_initial_interval_seconds),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=timing.retry_maximum_interval_seconds),
        maximum_attempts=attempts * COMPENSATION_ATTEMPTS_FACTOR if compensation else attempts,
    )


def activity_options(
    timing: TimingSpec, waiting: Waiting | None = None, *, compensation: bool = False
) -> dict[str, Any]:
    """Options for `execute_activity_method`.

    An activity that waits heartbeats every poll, so a dead worker is noticed within the heartbeat
    timeout; a quick call has none and is bounded by the call timeout. Cancellation waits until the
    activity has really stopped: a create that finishes after rollback passed it would leak.
    """
    call_timeout = timedelta(seconds=timing.call_timeout_seconds)
    options: dict[str, Any] = {
        "retry_policy": retry_policy(timing, compensation=compensation),
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        "start_to_close_timeout": call_timeout,
    }
    if waiting is None:
        return options
    # The whole wait, plus one call and a margin: the activity enforces the wait's own timeout itself,
    # for a readable message; this bound only catches an activity that never returns.
    wait_budget = timedelta(seconds=waiting.timeout_seconds) + call_timeout + WAIT_MARGIN
    options["start_to_close_timeout"] = wait_budget
    options["heartbeat_timeout"] = timedelta(seconds=timing.heartbeat_timeout_seconds)
    return options


MAX_POLL_INTERVAL_FACTOR = 2
"""Without timing.max_poll_interval_seconds, waits slow down to this many poll intervals."""


def waiting(timing: TimingSpec, timeout_seconds: float) -> Waiting:
    poll = timing.poll_interval_seconds
    return Waiting(
        poll_interval_seconds=poll,
        max_poll_interval_seconds=timing.max_poll_interval_seconds or poll * MAX_POLL_INTERVAL_FACTOR,
        timeout_seconds=timeout_seconds,
    )
