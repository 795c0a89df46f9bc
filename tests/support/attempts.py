"""Activities run outside a worker as a workflow schedules them: in an ActivityEnvironment whose info
carries the timeouts workflows/options.py gives that kind of step, and an attempt that starts now.

The SDK's default info says the attempt started in 1970 with a 1 s start-to-close. AwsClients sizes
the clients an activity uses from its attempt's timeouts and refuses a call the attempt has no time
left for, so activities that call AWS get the timeouts (and the start) a worker would give them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from temporalio.testing import ActivityEnvironment

from models.resources import Waiting
from models.spec import TimingSpec
from tests.support.specs import FAST_TIMING
from workflows.options import activity_options

DIRECT_TIMING = TimingSpec.model_validate(
    {**FAST_TIMING, "call_timeout_seconds": TimingSpec().call_timeout_seconds}
)
"""For a call whose timing is not what the test is about (a set-up's preflight, say): FAST_TIMING's
quick steps, sized for a worker that retries them, give each read 1.9 s, which a loaded CI machine
has been seen to miss; the default call timeout gives it 7 s."""


def attempt_environment(
    timing: TimingSpec | None = None, waiting: Waiting | None = None, **info: Any
) -> ActivityEnvironment:
    """`info` changes more of the attempt (e.g. `attempt=2`); without `timing`, DIRECT_TIMING."""
    options = activity_options(timing or DIRECT_TIMING, waiting)
    now = datetime.now(UTC)
    environment = ActivityEnvironment()
    attempt: dict[str, Any] = {
        "start_to_close_timeout": options["start_to_close_timeout"],
        "heartbeat_timeout": options.get("heartbeat_timeout"),
        "schedule_to_close_timeout": options.get("schedule_to_close_timeout"),
        "scheduled_time": now,
        "current_attempt_scheduled_time": now,
        "started_time": now,
    }
    environment.info = dataclasses.replace(environment.info, **{**attempt, **info})
    return environment
