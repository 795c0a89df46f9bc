"""Progress of one deployment run: step states for the query, `status` and the Temporal UI.

Kept apart from the workflow so the workflow reads as the DAG and its saga, not as bookkeeping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from models.plan import PlannedStep
    from models.progress import DeploymentProgress, Phase, StepProgress, StepState
    from models.resources import DeploymentOutputs, Resource
    from workflows import search_attributes
    from workflows.saga import root_message


class ProgressTracker:
    def __init__(self, deployment_id: str, region: str, steps: list[PlannedStep]) -> None:
        self._kinds = {step.key: step.kind for step in steps}
        self._before_pause = Phase.CREATING
        self.progress = DeploymentProgress(
            deployment_id=deployment_id,
            region=region,
            phase=Phase.PREFLIGHT,
            steps=[StepProgress(key=s.key, summary=s.summary) for s in steps],
        )

    def step(self, key: str) -> StepProgress:
        return self.progress.step(key)

    def phase(self, phase: Phase) -> None:
        self.progress.phase = phase
        if search_attributes.DEPLOYMENT_PHASE in workflow.info().typed_search_attributes:
            # Only when the starter could set them: a namespace without them must still deploy.
            workflow.upsert_search_attributes([search_attributes.DEPLOYMENT_PHASE.value_set(phase.value)])
        self.show()

    def paused(self, cause: BaseException, deadline: datetime) -> None:
        if self.progress.phase is not Phase.PAUSED:  # a sibling's failure may have paused it already
            self._before_pause = self.progress.phase
        self.progress.pause_deadline, self.progress.error = deadline, root_message(cause)
        self.phase(Phase.PAUSED)

    def resumed(self, key: str) -> None:
        """`retry`: the failed step runs again, and the run is no longer a failure; back in the phase
        it paused in (a create's preflight, or creating; a change is creating from its first step)."""
        progress = self.progress
        progress.pause_deadline = progress.error = progress.failed_step = None
        self.step(key).error = None
        self.phase(self._before_pause)

    def kept(self, cause: BaseException) -> None:
        self.progress.kept, self.progress.error = True, root_message(cause)
        self.phase(Phase.FAILED)

    def started(self, key: str) -> None:
        step = self.step(key)
        step.state, step.started_at = StepState.RUNNING, workflow.now()
        self.show()

    def done(self, key: str, result: Any) -> None:
        step = self.step(key)
        step.state, step.finished_at = StepState.DONE, workflow.now()
        step.resource_id = _resource_id(result)
        self.show()

    def ended_with(self, key: str, err: BaseException) -> None:
        """A step that raised: cancelled as a sibling of a failure, or the failure itself."""
        step = self.step(key)
        step.finished_at = workflow.now()
        if is_cancelled_exception(err):
            step.state = StepState.CANCELLED
            return
        step.state, step.error = StepState.FAILED, root_message(err)
        if self.progress.failed_step is None:
            self.progress.failed_step = key

    def compensating(self, key: str) -> None:
        self.step(key).state = StepState.COMPENSATING
        self.show()

    def compensated(self, key: str, *, failed_before: bool) -> None:
        """A failed step keeps its state and error: that is the story of the run."""
        self.step(key).state = StepState.FAILED if failed_before else StepState.COMPENSATED

    def left_behind(self, key: str, why: str) -> None:
        step = self.step(key)
        step.state = StepState.LEFT_BEHIND
        self.progress.left_behind.append(f"{key} (id {step.resource_id or 'unknown'}): {why}")

    def completed(self, outputs: DeploymentOutputs) -> None:
        self.progress.outputs = outputs
        self.phase(Phase.COMPLETED)

    def created_resources(self) -> list[Resource]:
        return [
            Resource(kind=kind, name=step.key, id=step.resource_id)
            for step in self.progress.steps
            if (kind := self._kinds[step.key]) is not None and step.resource_id
        ]

    def show(self) -> None:
        """Markdown for the Temporal UI's 'current details' box."""
        progress = self.progress
        lines = [f"**{progress.deployment_id}** in {progress.region}: {progress.phase.value}"]
        for step in progress.steps:
            if step.state is not StepState.PENDING:
                suffix = f" `{step.resource_id}`" if step.resource_id else ""
                lines.append(f"- {step.state.value}: {step.summary}{suffix}")
        if progress.left_behind:
            lines += ["", "**Rollback could not delete** (run `starter.py down` to retry):"]
            lines += [f"- {entry}" for entry in progress.left_behind]
        workflow.set_current_details("\n".join(lines))


def _resource_id(result: Any) -> str | None:
    for field in ("id", "arn", "instance_id", "allocation_id", "vpc_id"):
        value = getattr(result, field, None)
        if isinstance(value, str):
            return value
    return None
