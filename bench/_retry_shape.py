"""Wait shape (b), for `bench/concurrency.py --wait-shape retry`; the product waits one way only.

DESIGN.md section 2 names two sound shapes for a wait: (a) poll inside one activity attempt,
heartbeating between polls (the product's, activities/waits.py); (b) one check per activity attempt,
where "not ready yet" is a retryable failure and the activity's retry policy is the poll schedule.
The benchmark compares them on a worker of its own, so the product carries nothing of (b):

- activities: every wait goes through `activities.waits.poll_until`; `install` replaces it in the
  worker's process with `check_once`, and turns shared polls off (a shared poll waits for the next
  interval, where (b) must answer at once);
- workflows: `RetryShape`, a worker interceptor, gives every activity whose request carries a
  `Waiting` the options of (b): the retry policy as the poll schedule, the whole wait bounded from
  its first attempt (schedule-to-close), no heartbeat.

tests/test_wait_shapes.py deploys with both installed, so a change to the product that bypasses
either hook fails there, not silently in a benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

import activities.waits
from activities.shared_polls import SHARED
from models.resources import Waiting
from models.spec import TimingSpec
from workflows.options import WAIT_MARGIN

SHAPES = {
    "poll": "(a) polls inside one activity attempt, heartbeats between polls (the product's)",
    "retry": "(b) one check per attempt, the retry policy is the poll schedule (bench/_retry_shape.py)",
}


def check_once(
    check: Callable[[], bool], waiting: Waiting, what: str, *, retryable_timeout: bool = False, **_: Any
) -> None:
    """`poll_until` under (b): one check; not there yet is a retryable failure. The timeout counts
    from the first attempt (`scheduled_time` is the activity's, not the attempt's)."""
    if check():
        return
    waited = datetime.now(UTC) - activity.info().scheduled_time
    if waited.total_seconds() > waiting.timeout_seconds:
        raise activities.waits.timed_out(waiting, what, retryable=retryable_timeout)
    # BENIGN: an expected failure, logged at DEBUG (a warning with a traceback per poll costs CPU).
    raise ApplicationError(f"not yet: {what}", type="NotReady", category=ApplicationErrorCategory.BENIGN)


def wait_options(timing: TimingSpec, waiting: Waiting) -> dict[str, Any]:
    """A wait's activity options under (b), over the product's (workflows/options.py): one check
    per attempt, an attempt every poll interval, the whole wait plus a call and a margin from the
    first attempt."""
    poll = timedelta(seconds=waiting.poll_interval_seconds)
    call = timedelta(seconds=timing.call_timeout_seconds)
    return {
        "retry_policy": RetryPolicy(
            initial_interval=poll, backoff_coefficient=1.0, maximum_interval=poll, maximum_attempts=0
        ),
        "start_to_close_timeout": call,
        "schedule_to_close_timeout": timedelta(seconds=waiting.timeout_seconds) + call + WAIT_MARGIN,
        "heartbeat_timeout": None,
    }


class RetryShape(Interceptor):
    """Gives the waits of every workflow this worker runs the options of (b)."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        self._outbound = _Outbound(outbound)
        super().init(self._outbound)

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        # The workflow's timing settings: DeploymentSpec and TeardownInput carry them as `timing`.
        timings = [a.timing for a in input.args if isinstance(getattr(a, "timing", None), TimingSpec)]
        self._outbound.timing = timings[0] if timings else None
        return await super().execute_workflow(input)


class _Outbound(WorkflowOutboundInterceptor):
    timing: TimingSpec | None = None

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        waits = [a.waiting for a in input.args if isinstance(getattr(a, "waiting", None), Waiting)]
        if waits and self.timing is not None:
            for name, value in wait_options(self.timing, waits[0]).items():
                setattr(input, name, value)
        return super().start_activity(input)


def install(patch: Callable[[Any, str, Any], None] = setattr) -> RetryShape:
    """Make this process's waits (b); returns the interceptor for its worker. `patch` is `setattr`,
    or pytest's `monkeypatch.setattr` so that a test leaves the product as it found it."""
    patch(activities.waits, "poll_until", check_once)
    patch(SHARED, "resource_id", lambda *_: None)  # every wait asks alone
    return RetryShape()
