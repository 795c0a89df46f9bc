"""What a running deployment reports through its query: per-step state, timings and resource ids."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from models.resources import DeploymentOutputs


class Phase(StrEnum):
    PREFLIGHT = "preflight"
    CREATING = "creating"
    PAUSED = "paused"
    """A step failed under `on_failure: pause`; the run waits for `retry` or `rollback`."""
    ROLLING_BACK = "rolling_back"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    LEFT_BEHIND = "left_behind"


class StepProgress(BaseModel):
    key: str
    summary: str
    state: StepState = StepState.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    resource_id: str | None = None
    error: str | None = None


class DeploymentProgress(BaseModel):
    deployment_id: str
    region: str
    phase: Phase
    steps: list[StepProgress] = Field(default_factory=list)
    error: str | None = None
    failed_step: str | None = None
    outputs: DeploymentOutputs | None = None
    pause_deadline: datetime | None = Field(
        None, description="While paused: when the run rolls back if nobody decides."
    )
    kept: bool = Field(False, description="Failed under `on_failure: keep`: resources were left in place.")
    left_behind: list[str] = Field(
        default_factory=list, description="Resources rollback could not delete, by id, with why."
    )

    def step(self, key: str) -> StepProgress:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)
