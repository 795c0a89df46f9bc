"""Determinism of the long-lived deployment workflow: a recorded life (create, scale out, rolling
replacement, down: a chain of four runs continued as new) replays against the current code, and so do
the converges it ran, and a rollout that `down` cancelled (rolled back, then torn down). Recorded by
`python scripts/record_deployment_histories.py`; a replay failure means a change is not compatible
with deployments whose workflow runs now (`workflow.patched`), see tests/test_replay.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

with workflow.unsafe.imports_passed_through():
    from activities import InventoryActivities
    from models.deployment import DeploymentState, Operation, Outcome
    from models.resources import Scope
    from models.spec import DeploymentSpec
    from workflows import WORKFLOWS
    from workflows.deployment import DeploymentWorkflow

HISTORIES = Path(__file__).parent / "data" / "histories" / "deployment"
RUNS = sorted(HISTORIES.glob("run-*.json"))
CONVERGES = sorted(HISTORIES.glob("converge-*.json"))
STOPPED = sorted(HISTORIES.glob("down-*.json"))
"""A second deployment whose rollout `down` stopped: its two runs and the cancelled converge."""
MAX_EVENTS_PER_RUN = 60


def load(path: Path) -> WorkflowHistory:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    started = history.events[0].workflow_execution_started_event_attributes
    return WorkflowHistory.from_json(started.workflow_id or path.stem, path.read_text())


def kinds(history: WorkflowHistory) -> list[str]:
    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


def state_in(history: WorkflowHistory) -> DeploymentState:
    started = history.events[0].workflow_execution_started_event_attributes
    return DeploymentState.model_validate(json.loads(started.input.payloads[0].data))


def replayer(workflows: list[type] = WORKFLOWS) -> Replayer:
    """Sandboxed, as tests/test_replay.py's: a non-deterministic call fails here."""
    return Replayer(workflows=workflows, data_converter=pydantic_data_converter)


@pytest.mark.parametrize("path", [*RUNS, *CONVERGES, *STOPPED], ids=lambda path: path.stem)
async def test_recorded_deployment_history_replays(path: Path) -> None:
    result = await replayer().replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


def test_the_chain_continued_as_new_after_each_operation_carrying_the_state() -> None:
    histories = [load(path) for path in RUNS]
    assert len(histories) == 4 and len(CONVERGES) == 2
    states = [state_in(h) for h in histories]
    assert [s.operations for s in states] == [0, 1, 2, 3]  # each run starts where the last left off
    for history, following in zip(histories, histories[1:], strict=False):
        assert kinds(history)[-1] == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
        continued = history.events[-1].workflow_execution_continued_as_new_event_attributes
        assert continued.new_execution_run_id == following.run_id
    assert kinds(histories[-1])[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    assert all(len(h.events) < MAX_EVENTS_PER_RUN for h in histories)
    assert states[1].last is not None and states[1].last.operation is Operation.CREATE
    assert [s.last.operation for s in states[2:] if s.last] == [Operation.CONVERGE] * 2
    assert all(s.last.outcome is Outcome.COMPLETED for s in states[1:] if s.last)
    assert states[3].spec is not None and states[3].spec.instances.instance_type == "t3.micro"
    assert states[3].outputs is not None and len(states[3].outputs.instance_ids) == 3
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for h in histories
        for e in h.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert accepted == ["up", "up", "up", "down"]


def test_down_during_a_rollout_cancelled_it_then_tore_down_in_the_same_run() -> None:
    runs = [load(path) for path in STOPPED if path.stem.startswith("down-run-")]
    (converge,) = [load(path) for path in STOPPED if path.stem.startswith("down-converge-")]
    assert len(runs) == 2 and kinds(runs[-1])[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    last = runs[-1]
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in last.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert accepted == ["up", "down"]
    assert "CHILD_WORKFLOW_EXECUTION_CANCELED" in kinds(last)  # the converge, stopped by down
    children = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        for e in last.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert children == ["InspectWorkflow", "ConvergeWorkflow", "TeardownWorkflow"]
    assert kinds(converge)[-1] == "WORKFLOW_EXECUTION_CANCELED"
    result = last.events[-1].workflow_execution_completed_event_attributes.result.payloads[0]
    assert DeploymentState.model_validate(json.loads(result.data)).phase.value == "deleted"


@workflow.defn(name="DeploymentWorkflow")
class InspectsBeforeEveryCreate(DeploymentWorkflow):
    """A plausible edit: read the account before a brand-new deployment's create as well."""

    @workflow.run
    async def run(self, state: DeploymentState) -> DeploymentState:
        return await super().run(state)

    async def _create(self, spec: DeploymentSpec) -> None:
        await workflow.execute_activity_method(
            InventoryActivities.discover_resources,
            Scope(deployment_id=spec.deployment_id, region=spec.region),
            start_to_close_timeout=timedelta(seconds=10),
        )
        await super()._create(spec)


async def test_a_changed_deployment_workflow_fails_replay_of_its_first_run() -> None:
    others = [w for w in WORKFLOWS if w is not DeploymentWorkflow]
    result = await replayer([InspectsBeforeEveryCreate, *others]).replay_workflow(
        load(RUNS[0]), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, workflow.NondeterminismError)
