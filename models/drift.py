"""Drift: how a live deployment differs from its spec because of changes made outside it (a console
click, a script), as `starter.py check` and the deployment's workflow report it.

A drift item is one difference: a resource (or a tag, rule or target of one) `missing`, `changed` (the
field with the value expected and the value live) or `extra` (there, but not asked for: an added
ingress rule, a foreign target in the target group, an instance the spec does not name).

How each difference is written (the check writes them, the repair reads them):
- a resource gone: MISSING, no field, `id` the id it had (when known);
- a resource not asked for (an extra instance carrying the deployment's tag): EXTRA, no field, its id;
- a fact (`instance_type`, `default_route`, `health_check_path`, ...): CHANGED, the field, both values;
- an ingress rule, one item per rule, field `ingress`, written as activities/live.py reads rules
  (`tcp/22 from 0.0.0.0/0`; a source group of the deployment by logical name, another by id): EXTRA
  with `actual`, or MISSING with `expected`;
- a target of the target group (kind TARGET_GROUP, its id the group's ARN), field `target`: EXTRA with
  `actual` the foreign target's id, or MISSING with `expected` our instance's id (not registered, or
  draining);
- a tag, field `tag:<key>`: CHANGED (or MISSING when absent) with the value expected and the live one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models.resources import DeploymentOutputs, Kind, Scope
from models.spec import DeploymentSpec, TimingSpec


class Drift(StrEnum):
    MISSING = "missing"
    CHANGED = "changed"
    EXTRA = "extra"


class DriftItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The resource's logical name (models/naming.py), or its id if it has none.")
    kind: Kind
    id: str | None = Field(None, description="The live resource's id (None when it is missing).")
    drift: Drift
    field: str | None = Field(
        None,
        description="What differs: a fact (`ingress`, `instance_type`, ...), `tag:<key>`, or `target`.",
    )
    expected: str | None = None
    actual: str | None = None

    def describe(self) -> str:
        """One line, e.g. `app-security-group (sg-1) extra ingress: tcp/22 from 0.0.0.0/0`."""
        where = f"{self.name} ({self.id})" if self.id and self.id != self.name else self.name
        if self.drift is Drift.MISSING and self.field is None:
            return f"{where} missing: deleted outside the deployment"
        if self.drift is Drift.EXTRA:
            what = f" {self.field}" if self.field else ""
            return f"{where} extra{what}: {self.actual or 'not in the spec'}"
        if self.drift is Drift.MISSING:
            return f"{where} missing {self.field}: {self.expected}"
        return f"{where} changed {self.field}: expected {self.expected or 'none'}, live {self.actual or 'none'}"


class DriftReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_id: str
    region: str
    checked_at: datetime
    items: list[DriftItem] = Field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.items)

    def summary(self) -> str:
        if not self.items:
            return "no drift"
        return f"{len(self.items)} difference(s): " + "; ".join(item.describe() for item in self.items)


class CheckInput(BaseModel):
    """What a check compares: the spec the deployment runs and the ids its workflow knows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    spec: DeploymentSpec
    outputs: DeploymentOutputs | None = None
    timing: TimingSpec = Field(default_factory=TimingSpec)


class RepairInput(BaseModel):
    """The in-place part of a repair (tags, ingress rules, target registrations); what must be made or
    replaced (a terminated instance, a deleted NAT gateway) is left to the converge that follows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    spec: DeploymentSpec
    report: DriftReport
    timing: TimingSpec = Field(default_factory=TimingSpec)


class RepairResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fixed: list[DriftItem] = Field(default_factory=list, description="Items repaired in place.")
    left: list[DriftItem] = Field(
        default_factory=list, description="Items the in-place repair does not handle (for the converge)."
    )
