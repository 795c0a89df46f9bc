"""Which target gets the next request: ELB's round robin over healthy targets, failing open.

Kept apart from the HTTP plumbing so the rule can be tested on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypeVar

from dataplane.health import Health, State

T = TypeVar("T")

ROUTABLE_WHEN_NONE_HEALTHY = {State.INITIAL, State.UNHEALTHY}
"""Fail open: with no healthy target ELB routes to every registered target, whatever its checks say;
never to a draining one (it takes no new requests) nor an unused one (not registered, stopped)."""
HEALTHY_STATES = {State.HEALTHY, State.UNAVAILABLE}
"""`unavailable`: health checks are off, so ELB treats the target as fit to serve."""


def pool(targets: Sequence[tuple[T, Health]]) -> list[T]:
    """The targets a new request may go to: the healthy ones, or all registered ones when none is."""
    healthy = [target for target, health in targets if health.state in HEALTHY_STATES]
    return healthy or [target for target, health in targets if health.state in ROUTABLE_WHEN_NONE_HEALTHY]


class RoundRobin:
    """Each pick takes the next target of the pool; thread-safe."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, targets: Sequence[T]) -> T | None:
        if not targets:
            return None
        with self._lock:
            chosen = targets[self._next % len(targets)]
            self._next += 1
        return chosen
