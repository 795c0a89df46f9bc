"""The one place that builds boto3 clients: region, endpoint override, retry mode, timeouts.

Two flavours per service. Reads and deletes retry inside botocore (standard mode). Calls that create
something get a client with botocore retries off: a create whose reply was lost must not be re-sent
blindly (it would make a twin or fail as a duplicate); the activity's own retry looks the resource up
by its tags first. Clients are thread-safe and shared; sessions are not, so one session builds them all
under a lock. `AWS_ENDPOINT_URL` (moto in the demo and tests) is honoured by botocore itself.

Timeouts nest. A call that outlives its activity attempt is still running when Temporal starts the
next attempt (two attempts of one create at once make twins) and holds a thread meanwhile. So inside
an activity each call has a budget, a share of the attempt's start-to-close and heartbeat timeouts
(models/spec.py `call_budget_seconds`), and its client's connect and read timeouts are cut from it. A
guard on the client holds every call to its budget and the attempt as a whole to its start-to-close:
a call the attempt has no time left for is not sent, and botocore retries only while its longest
backoff for that answer (throttling 1, 2, 4 ... s; other errors 50 ms, 100 ms ...; more when AWS
sends `x-amz-retry-after`) plus one more attempt still fit. So an answer that fails fast is retried
even in a small budget, and no sequence of answers, timeouts and backoffs outlasts it. Outside an
activity (the CLI, scripts) clients keep botocore's usual timeouts and attempts.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.retries import standard
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.spec import call_budget_seconds

USER_AGENT = "scaleout/0.1"
CONCURRENT_CALLS = 256
"""The worker's activity threads, and so each client's connection pool: a wait holds its thread (and
at times a connection) for its whole length, up to four waits per deployment, and too few threads
queue other steps' first attempts behind long waits (docs/benchmarks.md). Threads only start when
needed."""

READ_ATTEMPTS = 5
"""botocore's most attempts for reads and deletes (creates: 1); the guard stops it earlier when the
call's budget cannot hold another."""
MIN_ATTEMPT_SECONDS = 5.0
"""A read's attempt is cut so that as many attempts fit as can each get this long, even if every one
times out and every backoff is a throttle's longest: AWS's slowest ordinary answers (a filtered
describe) come within a few seconds. A budget too small for two gets half of it per attempt, so an
answer that fails fast can still be retried once."""
CONNECT_SHARE = 0.25
MAX_CONNECT_SECONDS = 10.0
MAX_READ_SECONDS = 60.0
"""botocore's defaults: what a call gets outside an activity, and at most inside one."""
ATTEMPT_DEADLINE_SHARE = 0.9
"""Calls end within this share of the attempt's start-to-close: the rest is for reporting the result
and for the worker's clock being a little behind the server's."""

# botocore/retries/standard.py, ExponentialBackoff (standard mode): the delay before attempt i + 1 is
# rand(0, 1) * min(base * 2 ** (i - 1), 20 s), base 1 s for throttling (0.05 s otherwise); an
# x-amz-retry-after header may raise it by up to 5 s more. tests/test_timeouts.py checks these.
THROTTLED_BACKOFF_BASE_SECONDS = 1.0
OTHER_BACKOFF_BASE_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 20.0
RETRY_AFTER_EXTRA_SECONDS = 5.0
RETRY_AFTER_HEADER = "x-amz-retry-after"
CALL_STARTED = "scaleout_call_started"
"""Key in botocore's per-call context: when the call began (monotonic), for the per-call budget."""


_THROTTLING = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
"""botocore's own test of whether an answer is throttling (which sets its backoff's base)."""


def backoff_seconds(attempt: int, *, throttled: bool = True) -> float:
    """botocore's longest sleep after attempt `attempt` (1-based), without a retry-after header."""
    base = THROTTLED_BACKOFF_BASE_SECONDS if throttled else OTHER_BACKOFF_BASE_SECONDS
    return min(base * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def max_backoff_seconds(attempts: int) -> float:
    """botocore's longest total sleep between `attempts` attempts of one call (all throttled)."""
    return sum(backoff_seconds(attempt) for attempt in range(1, attempts))


def longest_backoff(attempt: int, response: Any, *, throttled: bool = True) -> float:
    """botocore's longest sleep after this attempt's answer, `x-amz-retry-after` included."""
    longest = backoff_seconds(attempt, throttled=throttled)
    headers = getattr(response[0], "headers", None) if response else None
    try:
        retry_after = int(headers[RETRY_AFTER_HEADER]) / 1000 if headers else None
    except (KeyError, ValueError, OverflowError):
        retry_after = None
    if retry_after is not None and retry_after >= 0:
        longest = max(longest, min(retry_after, longest + RETRY_AFTER_EXTRA_SECONDS))
    return longest


@dataclass(frozen=True)
class CallLimits:
    """How long one boto3 call may take: botocore's most attempts, each attempt's timeouts, and the
    budget the guard holds the whole call to."""

    attempts: int
    connect_timeout: float
    read_timeout: float
    budget: float | None = None
    """Seconds the whole call may take (None: outside an activity, no guard)."""

    @property
    def attempt_seconds(self) -> float:
        return self.connect_timeout + self.read_timeout

    def worst_case_seconds(self) -> float:
        """The longest the call can take: its budget (the guard starts no attempt that could end
        after it); without one, every attempt timing out and every backoff a throttle's longest."""
        if self.budget is not None:
            return self.budget
        return self.attempts * self.attempt_seconds + max_backoff_seconds(self.attempts)

    def retry_fits(self, elapsed: float, backoff: float, attempt_left: float = math.inf) -> bool:
        """Whether botocore may retry `elapsed` seconds into the call: its longest `backoff` plus one
        more attempt fit in what is left of the budget and of the activity attempt."""
        left = attempt_left if self.budget is None else min(attempt_left, self.budget - elapsed)
        return backoff + self.attempt_seconds <= left

    def config(self) -> Config:
        # A new Config per client: botocore mutates the one it is given.
        return Config(
            retries={"mode": "standard", "total_max_attempts": self.attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_pool_connections=CONCURRENT_CALLS,
            user_agent_extra=USER_AGENT,
        )


def _down_to_ms(seconds: float) -> float:
    return math.floor(seconds * 1000) / 1000


def attempts_that_fit(budget: float, attempt_seconds: float) -> int:
    """Attempts of a call within `budget` when every one times out and every backoff is a throttle's."""
    fits = [n for n in range(1, READ_ATTEMPTS + 1) if n * attempt_seconds + max_backoff_seconds(n) <= budget]
    return max(fits, default=0)


def call_limits(budget: float | None, *, creates: bool = False) -> CallLimits:
    """Timeouts cut from the call's budget: a create's one attempt has all of it; a read's attempts
    are as many as fit even at their slowest, each at least MIN_ATTEMPT_SECONDS (or half of a budget
    too small for two). A quarter of an attempt is for connecting."""
    most = 1 if creates else READ_ATTEMPTS
    if budget is None:
        return CallLimits(most, MAX_CONNECT_SECONDS, MAX_READ_SECONDS)

    def per_attempt(attempts: int) -> float:
        return (budget - max_backoff_seconds(attempts)) / attempts

    planned = next((n for n in range(most, 1, -1) if per_attempt(n) >= MIN_ATTEMPT_SECONDS), 1)
    per = per_attempt(planned) if planned > 1 or creates else budget / 2
    connect = _down_to_ms(min(per * CONNECT_SHARE, MAX_CONNECT_SECONDS))
    read = _down_to_ms(min(per - connect, MAX_READ_SECONDS))
    return CallLimits(most, connect, read, budget)


def _seconds(value: Any) -> float | None:
    return value.total_seconds() if value else None


def current_limits(*, creates: bool) -> CallLimits:
    """The limits for a call made now: from the running activity attempt's timeouts, if any."""
    if not activity.in_activity():
        return call_limits(None, creates=creates)
    info = activity.info()
    budget = call_budget_seconds(_seconds(info.start_to_close_timeout), _seconds(info.heartbeat_timeout))
    return call_limits(budget, creates=creates)


def attempt_seconds_left() -> float:
    """Until the current activity attempt's calls must have ended (inf: no start-to-close)."""
    info = activity.info()
    if not info.start_to_close_timeout:
        return math.inf
    deadline = info.started_time + info.start_to_close_timeout * ATTEMPT_DEADLINE_SHARE
    return (deadline - datetime.now(UTC)).total_seconds()


class _Guard:
    """botocore event handlers that keep a client's calls inside the activity attempt's time."""

    def __init__(self, limits: CallLimits) -> None:
        self._limits = limits

    def before_call(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        if not activity.in_activity():
            return
        context[CALL_STARTED] = time.monotonic()
        left = attempt_seconds_left()
        if left < self._limits.attempt_seconds:
            info = activity.info()
            raise ApplicationError(
                f"{model.name} not sent: {max(left, 0):.1f} s of attempt {info.attempt}'s "
                f"{info.start_to_close_timeout.total_seconds():g} s start-to-close remain, less than one "
                f"try of the call may take ({self._limits.attempt_seconds:g} s); the next attempt makes it",
                type="AttemptTimeSpent",
            )

    def needs_retry(self, **event: Any) -> bool | None:
        """Runs before botocore's own retry handler: False ends the call with its last answer when
        the longest backoff for it plus one more attempt would not fit; None lets botocore decide."""
        started = event["request_dict"]["context"].get(CALL_STARTED)
        response = event["response"]
        answered = response is not None and response[0].status_code < 300 and "Error" not in response[1]
        if started is None or answered:  # outside an activity, or nothing to retry
            return None
        throttled = _THROTTLING.is_throttling_error(**event)
        backoff = longest_backoff(event["attempts"], response, throttled=throttled)
        if self._limits.retry_fits(time.monotonic() - started, backoff, attempt_seconds_left()):
            return None
        return False


class AwsClients:
    """Lazily built, cached clients per (service, region, purpose, limits): one set per kind of
    activity timeouts (a spec's quick calls and its waits), shared by every thread."""

    def __init__(
        self,
        session: boto3.Session | None = None,
        retry_mode: str = "standard",
        endpoint_url: str | None = None,
    ) -> None:
        if retry_mode != "standard":
            raise ValueError(
                f"retry_mode {retry_mode!r}: the clients' timeouts are worked out for botocore's "
                "standard retry mode (its backoff cap), and adaptive mode sleeps before sending"
            )
        self.session = session or boto3.Session()
        self._endpoint_url = endpoint_url
        self._clients: dict[tuple[str, str, bool, CallLimits], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str, *, creates: bool = False) -> Any:
        limits = current_limits(creates=creates)
        key = (service, region, creates, limits)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._build(service, region, limits)
            return self._clients[key]

    def _build(self, service: str, region: str, limits: CallLimits) -> Any:
        client = self.session.client(
            service, region_name=region, endpoint_url=self._endpoint_url, config=limits.config()
        )
        if limits.budget is None:  # built outside an activity: botocore's usual timeouts, no guard
            return client
        # On the service's own node and first: before botocore's retry handler, whose answer the
        # guard's False overrides (botocore takes the first answer that is not None).
        events, service_id = client.meta.events, client.meta.service_model.service_id.hyphenize()
        guard = _Guard(limits)
        events.register_first(f"before-call.{service_id}", guard.before_call)
        events.register_first(f"needs-retry.{service_id}", guard.needs_retry)
        return client

    def ec2(self, region: str, *, creates: bool = False) -> Any:
        return self.client("ec2", region, creates=creates)

    def elbv2(self, region: str, *, creates: bool = False) -> Any:
        return self.client("elbv2", region, creates=creates)

    def ssm(self, region: str) -> Any:
        return self.client("ssm", region)
