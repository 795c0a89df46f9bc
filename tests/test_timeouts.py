"""Timeouts that nest (issue 12, part 5): no AWS call outlives its activity attempt.

A call still running when Temporal starts the next attempt races it (two attempts of one create:
twins) and holds a thread. activities/aws_clients.py sizes every client from the attempt's timeouts
(workflows/options.py, from the spec's TimingSpec) and guards each call against the attempt's clock.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.retries import standard
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws_clients import (
    AwsClients,
    CallLimits,
    attempts_that_fit,
    backoff_seconds,
    call_limits,
    longest_backoff,
    max_backoff_seconds,
)
from activities.errors import aws_errors
from models.resources import Waiting
from models.spec import TimingSpec, call_budget_seconds
from tests.support.attempts import attempt_environment
from tests.support.specs import FAST_TIMING
from tests.support.wire import http_error
from workflows.options import activity_options, waiting

REGION = "ap-northeast-2"

TIMINGS = {
    "default": {},
    "fast (tests)": FAST_TIMING,
    "crash tests": {**FAST_TIMING, "heartbeat_timeout_seconds": 2, "call_timeout_seconds": 6},
    "benchmarks": {**FAST_TIMING, "heartbeat_timeout_seconds": 5, "call_timeout_seconds": 30},
    "smallest allowed": {"heartbeat_timeout_seconds": 2, "call_timeout_seconds": 1},
    "slow AWS": {"heartbeat_timeout_seconds": 120, "call_timeout_seconds": 300},
    "huge": {"heartbeat_timeout_seconds": 3600, "call_timeout_seconds": 86400},
    **{
        f"heartbeat {hb} s, call {call} s": {"heartbeat_timeout_seconds": hb, "call_timeout_seconds": call}
        for hb in (3, 7.5, 13, 20, 45, 60)
        for call in (1.5, 4, 15, 25, 40, 90)
    },
}


def kinds(timing: TimingSpec) -> dict[str, dict[str, Any]]:
    """The options workflows/options.py gives each kind of step."""
    wait = waiting(timing, timing.nat_gateway_timeout_seconds)
    return {
        "call": activity_options(timing),
        "wait": activity_options(timing, wait),
        "compensation": activity_options(timing, compensation=True),
        "compensation that waits": activity_options(
            timing, waiting(timing, timing.delete_timeout_seconds), compensation=True
        ),
    }


def seconds(options: dict[str, Any], name: str) -> float | None:
    value = options.get(name)
    return value.total_seconds() if value else None


@pytest.mark.parametrize("name", list(TIMINGS))
def test_every_call_fits_each_kind_of_step_with_room_to_spare(name: str):
    timing = TimingSpec.model_validate(TIMINGS[name])
    for kind, options in kinds(timing).items():
        start_to_close = seconds(options, "start_to_close_timeout")
        heartbeat = seconds(options, "heartbeat_timeout")
        assert start_to_close, kind
        for creates in (False, True):
            limits = call_limits(call_budget_seconds(start_to_close, heartbeat), creates=creates)
            worst = limits.worst_case_seconds()
            assert worst <= start_to_close / 2, (kind, creates, limits)
            if heartbeat:
                # A wait looks up, creates and polls once before its first heartbeat.
                assert 3 * worst < heartbeat, (kind, creates, limits)
            assert 0 < limits.connect_timeout < limits.read_timeout
            # Even if every attempt times out and every backoff is a throttle's longest, one fits.
            assert attempts_that_fit(worst, limits.attempt_seconds) >= 1
            assert limits.attempts == (1 if creates else 5)
            assert_no_call_outlasts_its_budget(limits, random.Random(f"{name}:{kind}:{creates}"))


def assert_no_call_outlasts_its_budget(limits: CallLimits, draw: random.Random, calls: int = 200) -> None:
    """Calls through the guard's rule: attempts that answer at once or time out, throttled or not,
    with and without x-amz-retry-after, backoffs anywhere up to botocore's longest."""
    assert limits.budget is not None
    for _ in range(calls):
        elapsed, attempt = 0.0, 1
        while True:
            elapsed += draw.choice([0.0, limits.attempt_seconds, draw.uniform(0, limits.attempt_seconds)])
            assert elapsed <= limits.budget + 1e-9
            throttled = draw.random() < 0.5
            response = (throttled_answer(draw.choice([None, 0, 3000, 60000])), {})
            backoff = longest_backoff(attempt, response, throttled=throttled)
            if attempt == limits.attempts or not limits.retry_fits(elapsed, backoff):
                break
            elapsed += draw.choice([backoff, draw.uniform(0, backoff)])
            attempt += 1


def throttled_answer(retry_after_ms: int | None) -> Any:
    response = http_error("ec2", "RequestLimitExceeded", 503)
    if retry_after_ms is not None:
        response.headers["x-amz-retry-after"] = str(retry_after_ms)
    return response


def test_the_default_spec_keeps_botocore_retries_for_quick_reads():
    timing = TimingSpec()
    read = call_limits(call_budget_seconds(timing.call_timeout_seconds, None))
    assert read == CallLimits(attempts=5, connect_timeout=1.437, read_timeout=4.313, budget=30.0)
    # Four slowest attempts fit: 4 x 5.75 s + 1 + 2 + 4 s of throttled backoff.
    assert attempts_that_fit(30.0, read.attempt_seconds) == 4
    polls = call_limits(call_budget_seconds(None, timing.heartbeat_timeout_seconds))
    assert polls == CallLimits(attempts=5, connect_timeout=0.937, read_timeout=2.812, budget=7.5)
    assert call_limits(7.5, creates=True) == CallLimits(1, 1.875, 5.625, 7.5)


def test_outside_an_activity_clients_keep_botocores_usual_timeouts():
    assert call_limits(None) == CallLimits(attempts=5, connect_timeout=10.0, read_timeout=60.0)
    assert call_limits(None, creates=True).attempts == 1
    client = AwsClients(boto3.Session()).ec2(REGION)
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (10.0, 60.0)
    assert client.meta.config.retries["total_max_attempts"] == 5


def test_the_backoff_is_botocores_own():
    """The numbers mirror botocore/retries/standard.py: its longest delay after each attempt."""

    class Detector:
        def __init__(self, throttled: bool) -> None:
            self.throttled = throttled

        def is_throttling_error_from_context(self, context: Any) -> bool:
            return self.throttled

    for throttled in (True, False):
        backoff = standard.ExponentialBackoff(random=lambda: 1.0, throttling_detector=Detector(throttled))
        for attempt in range(1, 9):
            context = standard.RetryContext(attempt_number=attempt)
            assert backoff.delay_amount(context) == backoff_seconds(attempt, throttled=throttled)
    backoff = standard.ExponentialBackoff(random=lambda: 1.0, throttling_detector=Detector(True))
    assert max_backoff_seconds(5) == 1 + 2 + 4 + 8 and max_backoff_seconds(1) == 0
    # x-amz-retry-after may ask for more, by at most 5 s: the guard reads it.
    response = http_error("ec2", "RequestLimitExceeded", 503)
    response.headers["x-amz-retry-after"] = "60000"
    context = standard.RetryContext(attempt_number=1, http_response=response)
    assert backoff.delay_amount(context) == longest_backoff(1, (response, {})) == 1 + 5


@pytest.mark.parametrize("name", ["default", "fast (tests)", "crash tests"])
def test_built_clients_carry_the_limits_and_are_shared_per_kind_of_step(name: str):
    timing = TimingSpec.model_validate(TIMINGS[name])
    aws = AwsClients(boto3.Session())
    built = {}
    for kind in ("call", "wait", "compensation"):
        wait = waiting(timing, timing.nat_gateway_timeout_seconds) if kind == "wait" else None
        for creates in (False, True):
            client = attempt_environment(timing, wait).run(aws.ec2, REGION, creates=creates)
            options = activity_options(timing, wait)
            limits = call_limits(
                call_budget_seconds(
                    seconds(options, "start_to_close_timeout"), seconds(options, "heartbeat_timeout")
                ),
                creates=creates,
            )
            config = client.meta.config
            assert (config.connect_timeout, config.read_timeout) == (
                limits.connect_timeout,
                limits.read_timeout,
            )
            assert config.retries["total_max_attempts"] == limits.attempts == (1 if creates else 5)
            built[kind, creates] = client
    # A compensation that waits for nothing is a quick call: the same clients, shared by every thread.
    assert built["compensation", False] is built["call", False]
    assert len({id(client) for client in built.values()}) == 4


def test_the_spec_refuses_timeouts_too_small_for_one_call():
    with pytest.raises(ValidationError) as small_heartbeat:
        TimingSpec(heartbeat_timeout_seconds=1)
    message = str(small_heartbeat.value)
    assert "heartbeat_timeout_seconds" in message and "set at least 2" in message
    with pytest.raises(ValidationError) as small_call:
        TimingSpec(call_timeout_seconds=0.5)
    message = str(small_call.value)
    assert "call_timeout_seconds" in message and "set at least 1" in message
    for timing in TIMINGS.values():  # what the tests and benchmarks use still validates
        TimingSpec.model_validate(timing)


@activity.defn
@aws_errors
def describe_vpcs(aws: AwsClients) -> None:
    aws.ec2(REGION).describe_vpcs()


class Sent:
    """Counts the HTTP attempts a session's clients send; answers them with `answer` if given."""

    def __init__(self, session: boto3.Session, answer: Any = None) -> None:
        self.count, self._answer = 0, answer
        session.events.register("before-send.ec2", self._send)

    def _send(self, **_: Any) -> Any:
        self.count += 1
        return self._answer() if self._answer else None


def test_a_call_the_attempt_has_no_time_left_for_is_not_sent():
    session = boto3.Session()
    sent = Sent(session)
    timing = TimingSpec.model_validate(FAST_TIMING)  # 10 s start-to-close, of which 9 s for calls
    late = datetime.now(UTC) - timedelta(seconds=7)  # 2 s left: less than a read's 2.5 s attempt
    with pytest.raises(ApplicationError) as refused:
        attempt_environment(timing, started_time=late).run(describe_vpcs, AwsClients(session))
    assert refused.value.type == "AttemptTimeSpent" and not refused.value.non_retryable
    assert "DescribeVpcs not sent" in refused.value.message and sent.count == 0
    attempt_environment(timing).run(describe_vpcs, AwsClients(session))  # a fresh attempt makes it
    assert sent.count == 1


def test_botocore_does_not_retry_when_aws_asks_for_longer_than_the_call_has():
    """x-amz-retry-after may stretch botocore's backoff past what the call was sized for: the guard
    ends the call with AWS's answer instead (the activity's retry comes later)."""

    def throttled() -> Any:
        response = http_error("ec2", "RequestLimitExceeded", 503)
        response.headers["x-amz-retry-after"] = "60000"  # 60 s, of which botocore honours 1 + 5 s
        return response

    timing = TimingSpec.model_validate({**FAST_TIMING, "call_timeout_seconds": 22})
    limits = call_limits(call_budget_seconds(22, None))  # 11 s a call: two slowest tries of 5 s fit
    assert limits.attempt_seconds + longest_backoff(1, (throttled(), {})) >= 11

    session = boto3.Session()
    sent = Sent(session, throttled)
    started = time.monotonic()
    with pytest.raises(ApplicationError) as raised:
        attempt_environment(timing).run(describe_vpcs, AwsClients(session))
    assert raised.value.type == "RequestLimitExceeded" and not raised.value.non_retryable
    assert sent.count == 1 and time.monotonic() - started < 5

    # Without the header botocore retries as usual.
    # An answer that fails fast and is no throttle backs off 50 ms, 100 ms ...: botocore's every attempt.
    session = boto3.Session()
    unavailable = Sent(session, lambda: http_error("ec2", "ServiceUnavailable", 503))
    with pytest.raises(ApplicationError):
        attempt_environment(timing).run(describe_vpcs, AwsClients(session))
    assert unavailable.count == limits.attempts == 5


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for connection in [*accepted, listener]:
        connection.close()


@pytest.mark.parametrize(
    ("timing", "wait"),
    [
        pytest.param({**FAST_TIMING, "call_timeout_seconds": 4}, False, id="call-4s"),
        pytest.param({**FAST_TIMING, "heartbeat_timeout_seconds": 2}, True, id="wait-heartbeat-2s"),
    ],
)
def test_a_call_to_an_endpoint_that_never_answers_ends_within_the_attempt(
    silent_server: tuple[str, list[socket.socket]], timing: dict[str, Any], wait: bool
):
    """Real sockets and botocore's own timeouts and retries; the bound is the issue's requirement."""
    endpoint, accepted = silent_server
    spec = TimingSpec.model_validate(timing)
    waits = waiting(spec, 30) if wait else None
    options = activity_options(spec, waits)
    start_to_close = seconds(options, "start_to_close_timeout")
    heartbeat = seconds(options, "heartbeat_timeout")
    limits = call_limits(call_budget_seconds(start_to_close, heartbeat))
    assert limits.budget is not None

    session = boto3.Session()
    sent = Sent(session)
    start = time.monotonic()
    with pytest.raises(ApplicationError) as raised:
        attempt_environment(spec, waits).run(describe_vpcs, AwsClients(session, endpoint_url=endpoint))
    end = time.monotonic()

    assert raised.value.type == "ConnectionError" and not raised.value.non_retryable  # read timed out
    assert "timeout" in raised.value.message.lower()
    assert 1 <= sent.count <= limits.attempts
    # botocore retried while one more attempt fitted: whether it did depends on how long this
    # machine took, so the stop is checked against the time taken, never a fixed count.
    if sent.count < limits.attempts:
        backoff = backoff_seconds(sent.count, throttled=False)
        assert (end - start) + backoff + limits.attempt_seconds > limits.budget
    # The kernel took each attempt's connection before the call gave up; the accepting thread may not
    # have picked the last one up yet on a busy machine.
    settled = time.monotonic() + 5
    while len(accepted) < sent.count and time.monotonic() < settled:
        time.sleep(0.05)
    assert len(accepted) == sent.count  # each of botocore's attempts: a new connection
    assert end - start < start_to_close
    if heartbeat:
        assert end - start < heartbeat
    assert end - start >= sent.count * limits.read_timeout  # it really waited for the answers


def test_an_attempt_whose_waits_are_sized_by_the_heartbeat_is_not_given_the_start_to_close():
    """A wait's start-to-close is its whole wait (minutes); its calls are sized by the heartbeat."""
    timing = TimingSpec.model_validate(FAST_TIMING)
    options = activity_options(timing, Waiting(poll_interval_seconds=0.05, timeout_seconds=600))
    assert seconds(options, "start_to_close_timeout") > 600
    heartbeat = seconds(options, "heartbeat_timeout")
    assert call_budget_seconds(seconds(options, "start_to_close_timeout"), heartbeat) == heartbeat / 4
