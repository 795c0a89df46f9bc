"""The latency profile: how long AWS takes, read from `profile.yaml`, scaled for benchmarks.

One file holds every figure so that the DAG, the sequential baseline and the critical-path bound are
all measured and computed against the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

DEFAULT_PROFILE = Path(__file__).with_name("profile.yaml")
READ_PREFIXES = ("Describe", "Get", "List")


@dataclass(frozen=True)
class LatencyProfile:
    """Real-scale seconds; `seconds(...)` and `call(...)` answer in scaled seconds."""

    scale: float
    mutating: float
    describe: float
    actions: dict[str, float] = field(default_factory=dict)
    states: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Rate buckets, (burst, refill per second): `mutating`, `describe` or one `service.Action`."""

    def is_read(self, action: str) -> bool:
        return action.startswith(READ_PREFIXES)

    def with_scale(self, scale: float) -> LatencyProfile:
        return replace(self, scale=scale)

    def real_call(self, service: str, action: str) -> float:
        """Real-scale latency of one call of `service.action`."""
        default = self.describe if self.is_read(action) else self.mutating
        return self.actions.get(f"{service}.{action}", default)

    def call(self, service: str, action: str) -> float:
        return self.real_call(service, action) * self.scale

    def seconds(self, state: str) -> float:
        """Scaled time until `state` (a key of `states` in the profile file)."""
        return self.states[state] * self.scale


def load_profile(path: Path = DEFAULT_PROFILE, scale: float | None = None) -> LatencyProfile:
    data = yaml.safe_load(path.read_text())
    calls = data["calls"]
    profile = LatencyProfile(
        scale=float(data["scale"]),
        mutating=float(calls["mutating"]),
        describe=float(calls["describe"]),
        actions={name: float(value) for name, value in (calls.get("actions") or {}).items()},
        states={name: float(value) for name, value in data["states"].items()},
        buckets={name: (float(b), float(r)) for name, (b, r) in (data.get("rate_buckets") or {}).items()},
    )
    return profile if scale is None else profile.with_scale(scale)
