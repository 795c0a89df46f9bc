"""One target's health as ELB judges it: the check, and the state its results lead to.

Rules (DESIGN.md section 4; Elastic Load Balancing's user guide):
- A newly registered target is `initial` (Elb.InitialHealthChecking) and turns `healthy` on its
  **first** passing check: DESIGN.md's "a new target needs one passing check". HealthyThresholdCount
  (default 5) applies only to a target coming back from `unhealthy`.
- UnhealthyThresholdCount failures in a row turn an `initial` or `healthy` target `unhealthy`, with the
  reason of the last failure: Target.ResponseCodeMismatch (an answer the matcher refuses),
  Target.Timeout (no answer within HealthCheckTimeoutSeconds), Target.FailedHealthChecks (no connection:
  nothing listens).
- HealthyThresholdCount passes in a row turn an `unhealthy` target `healthy` again.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNUSED = "unused"
    DRAINING = "draining"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Health:
    """What DescribeTargetHealth reports for a target."""

    state: State
    reason: str | None = None
    description: str | None = None


INITIAL = Health(State.INITIAL, "Elb.InitialHealthChecking", "Initial health checks in progress")
HEALTHY = Health(State.HEALTHY)
DRAINING = Health(State.DRAINING, "Target.DeregistrationInProgress", "Target deregistration is in progress")
NOT_REGISTERED = Health(State.UNUSED, "Target.NotRegistered", "Target is not registered to the target group")
NOT_IN_USE = Health(
    State.UNUSED,
    "Target.NotInUse",
    "Target group is not configured to receive traffic from the load balancer",
)
STOPPED = Health(State.UNUSED, "Target.InvalidState", "Target is in the stopped state")
CHECKS_DISABLED = Health(State.UNAVAILABLE, "Target.HealthCheckDisabled", "Health checks are disabled")


@dataclass(frozen=True)
class HealthCheck:
    """A target group's health check settings, in AWS's seconds (the data plane scales them)."""

    path: str = "/"
    port: str = "traffic-port"
    interval: float = 30.0
    timeout: float = 5.0
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    matcher: str = "200"
    enabled: bool = True

    def port_for(self, traffic_port: int) -> int:
        return traffic_port if self.port == "traffic-port" else int(self.port)


def matches(matcher: str, status: int) -> bool:
    """ELB's HttpCode matcher: codes and ranges separated by commas ("200", "200,202", "200-299")."""
    for part in matcher.split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit() and int(low) <= status <= int(high or low):
            return True
    return False


@dataclass(frozen=True)
class Outcome:
    """One check's result; a failure carries the reason ELB would give."""

    passed: bool
    reason: str | None = None
    description: str | None = None


PASSED = Outcome(True)
NO_CONNECTION = Outcome(False, "Target.FailedHealthChecks", "Health checks failed")
TIMED_OUT = Outcome(False, "Target.Timeout", "Request timed out")


def probe(port: int | None, path: str, timeout: float, matcher: str) -> Outcome:
    """GET `path` on 127.0.0.1:`port` (None: nothing listens for this target)."""
    if port is None:
        return NO_CONNECTION
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
        response = connection.getresponse()
        response.read()
    except TimeoutError:
        return TIMED_OUT
    except (OSError, http.client.HTTPException):
        return NO_CONNECTION
    finally:
        connection.close()
    if matches(matcher, response.status):
        return PASSED
    return Outcome(
        False, "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{response.status}]"
    )


class HealthMachine:
    """Counts one target's consecutive check results into its state (rules in the module docstring)."""

    def __init__(self) -> None:
        self.state = State.INITIAL
        self.passes = 0
        self.failures = 0
        self._last_failure: Outcome | None = None

    def record(self, outcome: Outcome, check: HealthCheck) -> None:
        if outcome.passed:
            self.passes, self.failures = self.passes + 1, 0
            needed = 1 if self.state is State.INITIAL else check.healthy_threshold
            if self.state is not State.HEALTHY and self.passes >= needed:
                self.state = State.HEALTHY
            return
        self.passes, self.failures = 0, self.failures + 1
        self._last_failure = outcome
        if self.failures >= check.unhealthy_threshold:
            self.state = State.UNHEALTHY

    def reset(self) -> None:
        """Back to `initial`: the target starts over (its group came into use, its instance started)."""
        self.__init__()

    @property
    def health(self) -> Health:
        if self.state is State.INITIAL:
            return INITIAL
        if self.state is State.HEALTHY:
            return HEALTHY
        failure = self._last_failure or NO_CONNECTION
        return Health(State.UNHEALTHY, failure.reason, failure.description)
