"""A target group's targets as ELB keeps them: registered, health-checked, chosen, drained.

Each registered target has a checker thread that runs the group's health check every interval (times
the data plane's time scale). A deregistered target is `draining` for the deregistration delay (also
scaled): it gets no new requests, the requests it is serving go on, and then it is forgotten (`unused`,
Target.NotRegistered). The data plane does not cut requests still running when the delay ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dataplane.balancing import RoundRobin, pool
from dataplane.health import DRAINING, Health, HealthCheck, HealthMachine, probe

MIN_CHECK_TIMEOUT = 0.5
"""Seconds: a scaled-down check timeout never goes below this, so a busy test machine is not a slow app."""
MIN_CHECK_INTERVAL = 0.05

TargetKey = tuple[str, int]
"""(target id, port)"""


@dataclass(eq=False)
class Target:
    id: str
    port: int
    machine: HealthMachine = field(default_factory=HealthMachine)
    in_flight: int = 0
    draining_until: float | None = None
    stopped: threading.Event = field(default_factory=threading.Event)
    """Set when the target stops being checked (draining, forgotten, group gone)."""


class Context(Protocol):
    """What a group needs to know of the rest of the data plane."""

    def override(self, group_arn: str, target: Target) -> Health | None:
        """The target's health when it is not for its checks to say (group unused, instance stopped)."""

    def app_port(self, instance_id: str, port: int) -> int | None:
        """The local port of what listens on `port` in the instance; None when nothing does."""


class TargetGroup:
    def __init__(
        self,
        arn: str,
        lock: threading.RLock,
        context: Context,
        time_scale: float = 1.0,
        checking: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.arn = arn
        self.check = HealthCheck()
        self.deregistration_delay = 300.0
        self.targets: dict[TargetKey, Target] = {}
        self._lock, self._context, self._scale = lock, context, time_scale
        self._checking, self._clock = checking, clock
        self._round_robin = RoundRobin()

    def configure(self, check: HealthCheck, deregistration_delay: float) -> None:
        with self._lock:
            self.check, self.deregistration_delay = check, deregistration_delay

    def sync(self, registered: set[TargetKey]) -> None:
        """Make the targets those registered now: new ones start `initial`, missing ones drain."""
        with self._lock:
            now = self._clock()
            for key in registered:
                target = self.targets.get(key)
                if target is None or target.draining_until is not None:
                    self._add(key)  # a draining target registered again starts over
            for key, target in self.targets.items():
                if key not in registered and target.draining_until is None:
                    target.draining_until = now + self.deregistration_delay * self._scale
                    target.stopped.set()
            self.expire()

    def expire(self) -> None:
        """Forget targets whose deregistration delay has passed."""
        with self._lock:
            now = self._clock()
            for key in [k for k, t in self.targets.items() if t.draining_until is not None]:
                if self.targets[key].draining_until <= now:  # type: ignore[operator]
                    del self.targets[key]

    def health(self, target: Target) -> Health:
        with self._lock:
            if target.draining_until is not None:
                return DRAINING
            return self._context.override(self.arn, target) or target.machine.health

    def described(self) -> list[tuple[Target, Health]]:
        with self._lock:
            self.expire()
            return [(target, self.health(target)) for target in self.targets.values()]

    def find(self, target_id: str, port: int | None) -> Target | None:
        with self._lock:
            self.expire()
            if port is not None:
                return self.targets.get((target_id, port))
            return next((t for (i, _), t in self.targets.items() if i == target_id), None)

    def choose(self) -> Target | None:
        """The target for a new request (counted in flight until `release`); None: no target at all."""
        with self._lock:
            candidates = sorted(self.described(), key=lambda item: (item[0].id, item[0].port))
            target = self._round_robin.pick(pool(candidates))
            if target is not None:
                target.in_flight += 1
            return target

    def release(self, target: Target) -> None:
        with self._lock:
            target.in_flight -= 1

    def local_port(self, target: Target) -> int | None:
        """Where the target's traffic port is served on this machine (a listener's upstream)."""
        return self._context.app_port(target.id, target.port)

    def close(self) -> None:
        with self._lock:
            for target in self.targets.values():
                target.stopped.set()
            self.targets.clear()

    def _add(self, key: TargetKey) -> None:
        old = self.targets.get(key)
        if old is not None:
            old.stopped.set()
        target = self.targets[key] = Target(*key)
        if self._checking:
            threading.Thread(target=self._checks, args=(target,), name=f"check-{key[0]}", daemon=True).start()

    def _checks(self, target: Target) -> None:
        """Check until the target leaves; a target its context overrides starts over when it returns."""
        while not target.stopped.is_set():
            with self._lock:
                check = self.check
                override = self._context.override(self.arn, target)
                if override is not None:
                    target.machine.reset()
            if override is None:
                local = self._context.app_port(target.id, check.port_for(target.port))
                timeout = max(check.timeout * self._scale, MIN_CHECK_TIMEOUT)
                outcome = probe(local, check.path, timeout, check.matcher)
                with self._lock:
                    if not target.stopped.is_set():
                        target.machine.record(outcome, check)
            target.stopped.wait(max(check.interval * self._scale, MIN_CHECK_INTERVAL))
