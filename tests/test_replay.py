"""Determinism: recorded histories replay against the current workflow code (temporalio Replayer).

The histories in tests/data/histories were recorded by `python scripts/record_histories.py` (real
Temporal dev server, moto as AWS). A replay failure means a workflow change is not compatible with
runs started before it: guard the change with `workflow.patched`, or, if no such run needs to survive
it, record the histories again. The checks on what each history contains catch a recording that no
longer shows what it is named for (a "rollback" that rolled nothing back).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

with workflow.unsafe.imports_passed_through():
    from activities import InventoryActivities, LoadBalancingActivities, PreflightActivities
    from models.plan import plan
    from models.resources import DeploymentOutputs, Kind, Scope
    from models.spec import DeploymentSpec
    from tests.support.workers import running_worker
    from worker import build_worker
    from workflows import WORKFLOWS
    from workflows.deploy import COMPENSATIONS, INSTANCES_BEFORE_ROUTE, DeployWorkflow
    from workflows.teardown import DELETE_ORDER, TeardownWorkflow

HISTORIES = Path(__file__).parent / "data" / "histories"
RECORDED = {"success", "rollback", "paused_retry", "cancelled", "teardown"}
COMPENSATION_TYPES = {activity.__name__ for activity in COMPENSATIONS.values()}
MAX_EVENTS = 400
"""DESIGN.md: a deployment needs a few hundred events at most (no per-poll activities)."""


def load(name: str) -> WorkflowHistory:
    """`to_json` leaves the workflow id out; the started event carries it."""
    text = (HISTORIES / f"{name}.json").read_text()
    workflow_id = started(WorkflowHistory.from_json(name, text)).workflow_id
    return WorkflowHistory.from_json(workflow_id or name, text)


def replayer(workflows: list[type] = WORKFLOWS) -> Replayer:
    """The worker's workflow classes and data converter, run through the SDK's sandbox (the
    Replayer's default runner): the worker runs them unsandboxed for CPU (worker.py), so these
    replays are where a workflow calling something non-deterministic (the clock, random, I/O) fails."""
    return Replayer(workflows=workflows, data_converter=pydantic_data_converter)


# Replay


def test_every_recorded_history_is_there() -> None:
    assert {path.stem for path in HISTORIES.glob("*.json")} == RECORDED


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_history_replays_against_the_current_code(name: str) -> None:
    history = load(name)
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name}.json no longer replays: {result.replay_failure}"


async def replay_all(workflows: list[type]) -> dict[str, str]:
    """How CI would check a directory of histories in one pass: the failures, by workflow id."""
    histories = {h.run_id: h for h in map(load, sorted(RECORDED))}

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories.values():
            yield history

    results = await replayer(workflows).replay_workflows(each(), raise_on_replay_failure=False)
    return {histories[run].workflow_id: str(err) for run, err in results.replay_failures.items()}


async def test_all_histories_replay_in_one_pass() -> None:
    assert await replay_all(WORKFLOWS) == {}


@workflow.defn(name="DeployWorkflow")
class DeployLooksUpFirst(DeployWorkflow):
    """A plausible edit: look for leftovers before the preflight. Deterministic, but not compatible."""

    @workflow.run
    async def run(self, spec: DeploymentSpec) -> DeploymentOutputs:
        return await super().run(spec)

    async def _deploy(self) -> DeploymentOutputs:
        await workflow.execute_activity_method(
            InventoryActivities.discover_resources,
            Scope(deployment_id=self._spec.deployment_id, region=self._spec.region),
            start_to_close_timeout=timedelta(seconds=10),
        )
        return await super()._deploy()


async def test_a_changed_workflow_fails_replay_of_the_recorded_success() -> None:
    """The check can fail: a deployment that schedules another activity first diverges at once."""
    history = load("success")
    result = await replayer([DeployLooksUpFirst]).replay_workflow(history, raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, workflow.NondeterminismError)
    assert "discover_resources" in str(result.replay_failure)
    assert "preflight" in str(result.replay_failure)
    # Replaying the whole directory names every deployment the change breaks, and only those.
    failures = await replay_all([DeployLooksUpFirst, TeardownWorkflow])
    assert sorted(failures) == sorted(started(load(n)).workflow_id for n in RECORDED - {"teardown"})


@workflow.defn(name="DeployWorkflow")
class DeployReadsTheClock(DeployWorkflow):
    """A non-deterministic edit that changes no command: it reads the host's clock."""

    @workflow.run
    async def run(self, spec: DeploymentSpec) -> DeploymentOutputs:
        return await super().run(spec)

    async def _deploy(self) -> DeploymentOutputs:
        self._started_at = datetime.now()  # workflow.now() is the deterministic one
        return await super()._deploy()


async def test_the_sandbox_the_worker_leaves_out_still_guards_the_replays() -> None:
    """worker.py runs workflows unsandboxed; these replays run them sandboxed and refuse the clock."""
    history = load("success")
    sandboxed = await replayer([DeployReadsTheClock]).replay_workflow(history, raise_on_replay_failure=False)
    assert isinstance(sandboxed.replay_failure, workflow.NondeterminismError)
    # The same code without the sandbox replays "fine": only the sandbox notices the clock.
    unsandboxed = Replayer(
        workflows=[DeployReadsTheClock],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    assert (await unsandboxed.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None


async def test_the_tests_workers_run_workflows_in_the_sandbox(client, aws) -> None:
    """Every path a test drives (keep, pause, per-AZ, cancel, ...) runs sandboxed, not only the
    recordings; worker.py's own worker stays unsandboxed."""
    async with running_worker(client, aws) as worker:
        assert isinstance(worker.config()["workflow_runner"], SandboxedWorkflowRunner)
    product = build_worker(client, "unused", aws)
    assert isinstance(product.config()["workflow_runner"], UnsandboxedWorkflowRunner)


# What each recording shows


@dataclass
class Activity:
    type: str
    step: str | None
    scheduled: int
    outcome: str  # "completed", "failed", "cancelled", "timed out" or "open"


def outcome_of(event: HistoryEvent) -> tuple[int, str] | None:
    for field, outcome in (
        ("activity_task_completed_event_attributes", "completed"),
        ("activity_task_failed_event_attributes", "failed"),
        ("activity_task_canceled_event_attributes", "cancelled"),
        ("activity_task_timed_out_event_attributes", "timed out"),
    ):
        if event.HasField(field):
            return getattr(event, field).scheduled_event_id, outcome
    return None


def decoded(payload: Any) -> Any:
    return json.loads(payload.data)


def step_of(request: Any) -> str | None:
    """The plan step an activity works on: its input's resource key (`key`, or the input is one)."""
    key = request.get("key", request) if isinstance(request, dict) else None
    return key.get("name") if isinstance(key, dict) and "scope" in key else None


def activities(history: WorkflowHistory) -> list[Activity]:
    found: dict[int, Activity] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            request = decoded(attributes.input.payloads[0])
            found[event.event_id] = Activity(
                attributes.activity_type.name, step_of(request), event.event_id, "open"
            )
        elif (ended := outcome_of(event)) is not None:
            found[ended[0]].outcome = ended[1]
    return list(found.values())


def event_types(history: WorkflowHistory) -> list[str]:
    return [EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in history.events]


def first_event(history: WorkflowHistory, kind: str) -> int:
    return next(e.event_id for e in history.events if EventType.Name(e.event_type) == f"EVENT_TYPE_{kind}")


def started(history: WorkflowHistory) -> Any:
    return history.events[0].workflow_execution_started_event_attributes


def spec_of(history: WorkflowHistory) -> DeploymentSpec:
    return DeploymentSpec.model_validate(decoded(started(history).input.payloads[0]))


def resource_steps(spec: DeploymentSpec) -> set[str]:
    """Every plan step that creates something (and so registers a compensation)."""
    return {step.key for step in plan(spec) if step.kind is not None}


def forward_and_undone(history: WorkflowHistory) -> tuple[list[Activity], list[Activity]]:
    every = activities(history)
    undo = [a for a in every if a.type in COMPENSATION_TYPES]
    return [a for a in every if a not in undo], undo


def test_histories_are_small_and_hold_no_credentials() -> None:
    secret = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}|secret_?access_?key|aws_session_token", re.IGNORECASE)
    for name in RECORDED:
        history = load(name)
        assert len(history.events) < MAX_EVENTS, name
        texts = [(HISTORIES / f"{name}.json").read_text()]
        for event in history.events:
            for attributes in (
                "activity_task_scheduled_event_attributes",
                "activity_task_completed_event_attributes",
            ):
                if event.HasField(attributes):
                    inner = getattr(event, attributes)
                    payloads = (
                        inner.input if attributes.endswith("scheduled_event_attributes") else inner.result
                    )
                    texts += [p.data.decode() for p in payloads.payloads]
        assert not [t for t in texts if secret.search(t)], name


def test_success_history_completes_every_planned_step_and_undoes_nothing() -> None:
    history = load("success")
    assert (
        history.events[0].workflow_execution_started_event_attributes.workflow_type.name == "DeployWorkflow"
    )
    assert event_types(history)[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    forward, undo = forward_and_undone(history)
    assert undo == [] and all(a.outcome == "completed" for a in forward)
    assert forward[0].type == PreflightActivities.preflight.__name__
    assert forward[-1].type == LoadBalancingActivities.wait_targets_healthy.__name__
    assert {a.step for a in forward if a.step} >= resource_steps(spec_of(history))
    completed = history.events[-1].workflow_execution_completed_event_attributes
    outputs = DeploymentOutputs.model_validate(decoded(completed.result.payloads[0]))
    assert outputs.listener_arn and len(outputs.instance_ids) == 2


def test_rollback_history_fails_at_the_last_step_and_undoes_every_resource() -> None:
    history = load("rollback")
    assert event_types(history)[-1] == "WORKFLOW_EXECUTION_FAILED"
    message = history.events[-1].workflow_execution_failed_event_attributes.failure.message
    assert "step 'healthy'" in message and "everything created was rolled back" in message
    forward, undo = forward_and_undone(history)
    failed = [a for a in forward if a.outcome == "failed"]
    assert [a.type for a in failed] == [LoadBalancingActivities.wait_targets_healthy.__name__]
    created = {a.step for a in forward if a.step} & resource_steps(spec_of(history))
    assert created == resource_steps(spec_of(history))  # everything existed when it failed
    assert sorted(a.step for a in undo) == sorted(created)  # each resource undone once
    kinds = {step.kind for step in plan(spec_of(history)) if step.kind is not None}
    assert {a.type for a in undo} == {COMPENSATIONS[kind].__name__ for kind in kinds}  # every kind ran
    assert all(a.outcome == "completed" and a.scheduled > failed[0].scheduled for a in undo)


def test_paused_history_waits_for_the_operator_and_retries_only_the_failed_step() -> None:
    history = load("paused_retry")
    types = event_types(history)
    assert types[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    assert spec_of(history).on_failure.value == "pause"
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert accepted == ["retry"] and "WORKFLOW_EXECUTION_UPDATE_COMPLETED" in types
    assert "TIMER_STARTED" in types and "TIMER_CANCELED" in types  # the pause deadline, then the decision
    forward, undo = forward_and_undone(history)
    assert undo == []
    listener = [a for a in forward if a.type == LoadBalancingActivities.create_listener.__name__]
    assert [a.outcome for a in listener] == ["failed", "completed"]
    others = [a.step or a.type for a in forward if a not in listener]
    assert len(others) == len(set(others))  # nothing else ran twice


def test_cancelled_history_undoes_every_resource_it_started() -> None:
    history = load("cancelled")
    assert event_types(history)[-1] == "WORKFLOW_EXECUTION_CANCELED"
    cancel = first_event(history, "WORKFLOW_EXECUTION_CANCEL_REQUESTED")
    forward, undo = forward_and_undone(history)
    begun = {a.step for a in forward} & resource_steps(spec_of(history))
    assert "nat-ap-northeast-2a" in begun and len(begun) >= 3  # cancelled mid-way, with things to undo
    assert sorted(a.step for a in undo) == sorted(begun)
    nat = [a for a in forward if a.step == "nat-ap-northeast-2a"]
    assert [a.outcome for a in nat] == ["cancelled"]  # the wait itself was stopped, not timed out
    assert all(a.outcome == "completed" and a.scheduled > cancel for a in undo)


def test_teardown_history_deletes_every_kind_in_dependency_order() -> None:
    history = load("teardown")
    assert (
        history.events[0].workflow_execution_started_event_attributes.workflow_type.name == "TeardownWorkflow"
    )
    assert event_types(history)[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    every = activities(history)
    assert every[0].type == InventoryActivities.discover_resources.__name__
    assert all(a.outcome == "completed" for a in every)
    order = [COMPENSATIONS[kind].__name__ for kind in DELETE_ORDER]
    recorded = [
        COMPENSATIONS[k].__name__ for k in DELETE_ORDER if k not in (Kind.CERTIFICATE, Kind.DNS_RECORD)
    ]
    deletes = [a.type for a in every[1:]]
    assert sorted(set(deletes), key=order.index) == recorded  # every kind of an HTTP deployment deleted ...
    assert deletes == sorted(deletes, key=order.index)  # ... dependants first
    request = decoded(started(history).input.payloads[0])
    assert request["scope"]["deployment_id"] == spec_of(load("success")).deployment_id


# Runs started before a workflow change


OLDER = HISTORIES / "older"
"""Recorded before instances launched during the NAT wait (patch `instances-launch-before-nat-route`):
a deployment in flight across that upgrade must go on under the new worker, not fail as nondeterministic."""


@pytest.mark.parametrize("path", sorted(OLDER.glob("*.json")), ids=lambda path: path.stem)
async def test_histories_from_before_a_patched_change_still_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"older/{path.name} no longer replays: {result.replay_failure}"


def patch_markers(path: Path) -> set[bytes]:
    """The patch data of every marker in a history (the SDK records `workflow.patched` as a marker)."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    return {
        payload.data
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        for payloads in event.marker_recorded_event_attributes.details.values()
        for payload in payloads.payloads
    }


def test_older_histories_took_the_former_order() -> None:
    """Else the test above would prove nothing: the old runs lack the patch marker, the new ones have it."""
    marker = INSTANCES_BEFORE_ROUTE.encode()
    paths = sorted(OLDER.glob("*.json"))
    assert len(paths) == 4
    assert not any(marker in data for path in paths for data in patch_markers(path))
    assert any(marker in data for data in patch_markers(HISTORIES / "success.json"))
