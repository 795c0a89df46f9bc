"""Determinism of the long-lived deployment workflow: every history in tests/data/histories/deployment
replays against the current code. A recorded life (create, scale out, rolling replacement, down: a
chain of four runs continued as new) and the converges it ran; a rollout that `down` cancelled (rolled
back, then torn down); and every other kind of change (`change-*`): in place (the ALB's CIDR, the
health check, the deregistration delay), a NAT mode switch each way, a rollout in batches of
`rollout.batch_size`, and two changes that failed and rolled back; and the idle loop's timers
(`upkeep-*`, patch `drift-checks-and-ttl`): drift checks that report, the `check` update, a repair in
place, a time-to-live extended and then tearing the deployment down. Recorded by `python
scripts/record_deployment_histories.py`; a replay failure means a change is not compatible with
deployments whose workflow runs now (`workflow.patched`), see tests/test_replay.py. The checks on what
each history holds catch a recording that no longer shows what it is named for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

with workflow.unsafe.imports_passed_through():
    from activities import InventoryActivities
    from models.converge import ConvergeInput, ConvergeResult
    from models.deployment import DeploymentState, Operation, Outcome
    from models.resources import Scope
    from models.spec import DeploymentSpec
    from workflows import WORKFLOWS
    from workflows.converge import ConvergeWorkflow
    from workflows.deployment import DRIFT_AND_TTL, DeploymentWorkflow

HISTORIES = Path(__file__).parent / "data" / "histories" / "deployment"
EVERY = sorted(HISTORIES.glob("*.json"))
RUNS = sorted(HISTORIES.glob("run-*.json"))
CONVERGES = sorted(HISTORIES.glob("converge-*.json"))
STOPPED = sorted(HISTORIES.glob("down-*.json"))
"""A second deployment whose rollout `down` stopped: its two runs and the cancelled converge."""


def numbered(pattern: str) -> list[Path]:
    """A chain's runs in order (run-10 after run-9)."""
    return sorted(HISTORIES.glob(pattern), key=lambda path: int(path.stem.rsplit("-", 1)[1]))


CHANGE_RUNS = numbered("change-run-*.json")
"""A third deployment changed every other way, one converge per run: create, 4 changes, 2 failed, down."""
CHANGES = {
    "change-in-place",
    "change-nat-per-az",
    "change-nat-single",
    "change-rollout-batches",
    "change-rolled-back",
    "change-nat-rolled-back",
}
"""Its converges, named by what each shows."""
MAX_EVENTS_PER_RUN = 60
UPKEEP = ("report", "repair", "ttl")
"""Three deployments of the idle loop's timers, `upkeep-<name>-run-<n>`; each chain has at least two
runs (the create, then the timers), more when a timer fired with nothing due (after `check`, `extend`)."""


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


def change(name: str) -> WorkflowHistory:
    return load(HISTORIES / f"{name}.json")


def scheduled(history: WorkflowHistory) -> list[tuple[str, dict[str, Any]]]:
    """Each activity the workflow scheduled, in order, with its input."""
    found = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            found.append((attributes.activity_type.name, json.loads(attributes.input.payloads[0].data)))
    return found


def activities(history: WorkflowHistory) -> list[str]:
    return [name for name, _ in scheduled(history)]


def upkeep(name: str) -> list[WorkflowHistory]:
    return [load(path) for path in numbered(f"upkeep-{name}-run-*.json")]


def events(histories: Iterable[WorkflowHistory]) -> list[Any]:
    return [event for history in histories for event in history.events]


def updates(histories: Iterable[WorkflowHistory]) -> list[str]:
    """The updates each run accepted, in order."""
    return [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in events(histories)
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]


def upserted(histories: Iterable[WorkflowHistory], key: str) -> list[Any]:
    """Each value the runs upserted for one search attribute, in order."""
    found = []
    for event in events(histories):
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if key in fields:
                found.append(json.loads(fields[key].data))
    return found


def patched(history: WorkflowHistory) -> bool:
    """The run took the timers' branch: the SDK's marker for `workflow.patched(DRIFT_AND_TTL)`."""
    return DRIFT_AND_TTL in map(patch_id, history.events)


def patch_id(event: Any) -> str | None:
    details = event.marker_recorded_event_attributes.details
    if not event.HasField("marker_recorded_event_attributes") or "patch-data" not in details:
        return None
    return json.loads(details["patch-data"].payloads[0].data)["id"]


def after_timers(history: WorkflowHistory) -> list[tuple[str, str]]:
    """For each timer that fired: its summary and the first command after it (an activity's or a
    child's type, or the event's kind), workflow tasks skipped."""
    summaries = {
        e.event_id: json.loads(e.user_metadata.summary.data)
        for e in history.events
        if e.HasField("timer_started_event_attributes")
    }
    found = []
    for index, event in enumerate(history.events):
        if event.HasField("timer_fired_event_attributes"):
            started = event.timer_fired_event_attributes.started_event_id
            following = next(e for e in history.events[index + 1 :] if "WORKFLOW_TASK" not in kind(e))
            found.append((summaries[started], command(following)))
    return found


def kind(event: Any) -> str:
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


def command(event: Any) -> str:
    if event.HasField("activity_task_scheduled_event_attributes"):
        return event.activity_task_scheduled_event_attributes.activity_type.name
    if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
        return event.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
    return kind(event)


def checks(histories: Iterable[WorkflowHistory]) -> list[bool]:
    """Whether each drift check found drift, in order, repeats folded: what the deployment went
    through, however many checks each stretch took."""
    found: list[bool] = []
    for event in events(histories):
        if event.HasField("activity_task_completed_event_attributes"):
            result = json.loads(event.activity_task_completed_event_attributes.result.payloads[0].data)
            if isinstance(result, dict) and "checked_at" in result and "items" in result:
                drifted = bool(result["items"])
                found += [drifted] if not found or found[-1] != drifted else []
    return found


def children(histories: Iterable[WorkflowHistory]) -> list[str]:
    return [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        for e in events(histories)
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]


def ended(histories: list[WorkflowHistory]) -> DeploymentState:
    """The chain is whole (each run continued as the next) and its last run returned this state."""
    for history, following in zip(histories, histories[1:], strict=False):
        continued = history.events[-1].workflow_execution_continued_as_new_event_attributes
        assert continued.new_execution_run_id == following.run_id
    assert kinds(histories[-1])[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    result = histories[-1].events[-1].workflow_execution_completed_event_attributes.result.payloads[0]
    return DeploymentState.model_validate(json.loads(result.data))


def converged(history: WorkflowHistory) -> ConvergeResult:
    assert kinds(history)[-1] == "WORKFLOW_EXECUTION_COMPLETED", kinds(history)[-1]
    result = history.events[-1].workflow_execution_completed_event_attributes.result.payloads[0]
    return ConvergeResult.model_validate(json.loads(result.data))


def failure(history: WorkflowHistory) -> str:
    assert kinds(history)[-1] == "WORKFLOW_EXECUTION_FAILED", kinds(history)[-1]
    return history.events[-1].workflow_execution_failed_event_attributes.failure.message


# Replay: every file in the folder, whatever its name


@pytest.mark.parametrize("path", EVERY, ids=lambda path: path.stem)
async def test_recorded_deployment_history_replays(path: Path) -> None:
    result = await replayer().replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"


def test_every_recorded_scenario_is_there() -> None:
    """A recorder run that lost a scenario leaves its files out: the replay above would not notice."""
    names = {path.stem for path in EVERY}
    assert not CHANGES - names, sorted(CHANGES - names)
    assert len(RUNS) == 4 and len(CONVERGES) == 2 and len(STOPPED) == 3 and len(CHANGE_RUNS) == 8
    required = {f"upkeep-{name}-run-{number}" for name in UPKEEP for number in (1, 2)}
    assert not required - names, sorted(required - names)


# What each history shows


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


def test_in_place_changes_the_alb_rules_then_the_target_group_and_launches_nothing() -> None:
    history = change("change-in-place")
    (ingress, ingress_in), (settings, settings_in) = scheduled(history)
    assert (ingress, settings) == ("change_ingress", "configure_target_group")
    assert ingress_in["add"] == [{"port": 80, "cidr": "10.0.0.0/8"}]
    assert ingress_in["remove"] == [{"port": 80, "cidr": "0.0.0.0/0"}]
    wanted = {
        "health_check_path": "/health",
        "health_check_interval_seconds": 5,
        "deregistration_delay_seconds": 60,
    }
    assert {field: settings_in["settings"][field] for field in wanted} == wanted
    result = converged(history)
    assert result.updated == ["sg-alb", "tg-app"] and result.launched == result.terminated == []


def test_nat_mode_switches_make_the_new_path_before_retiring_the_old_one() -> None:
    wider, narrower = change("change-nat-per-az"), change("change-nat-single")
    assert activities(wider) == [
        "preflight",  # the public subnet for the new NAT gateway
        "allocate_elastic_ip",
        "create_nat_gateway",
        "create_private_route_table",
        "create_private_route_table",
        "switch_route_table",
        "switch_route_table",
        "delete_route_table",  # the single mode's table, serving no subnet now
    ]
    assert len(converged(wider).nat_gateway_ids) == 2
    assert activities(narrower) == [
        "create_private_route_table",
        "switch_route_table",
        "switch_route_table",
        "delete_route_table",
        "delete_route_table",
        "delete_nat_gateway",
        "release_elastic_ip",
    ]
    assert len(converged(narrower).nat_gateway_ids) == 1


def test_a_rollout_in_batches_of_the_batch_size_terminates_the_old_instances_last() -> None:
    history = change("change-rollout-batches")
    registered = [
        len(request["instance_ids"]) for name, request in scheduled(history) if name == "register_targets"
    ]
    assert registered == [2, 1]  # "50%" of 3 instances, rounded up
    names = activities(history)
    assert names.count("launch_instance") == 3 and names[-3:] == ["terminate_instance"] * 3
    result = converged(history)
    assert sorted(result.launched) == ["app-0-g1", "app-1-g1", "app-2-g1"] and len(result.terminated) == 3


def test_a_failed_change_undid_its_in_place_changes_and_its_first_batch() -> None:
    history = change("change-rolled-back")
    message = failure(history)
    assert "RunInstances" in message and "rolled back" in message, message
    steps = scheduled(history)
    failed_at = max(i for i, (name, _) in enumerate(steps) if name == "launch_instance")
    undone = [name for name, _ in steps[failed_at + 1 :]]
    assert undone[-2:] == ["configure_target_group", "change_ingress"]  # done first, undone last
    assert {"terminate_instance", "reinstate_targets", "drain_targets"} <= set(undone)
    ingress = [request for name, request in steps if name == "change_ingress"]
    assert (ingress[-1]["add"], ingress[-1]["remove"]) == (ingress[0]["remove"], ingress[0]["add"])
    settings = [request["settings"] for name, request in steps if name == "configure_target_group"]
    assert settings[-1]["health_check_path"] == "/health" and settings[0]["health_check_path"] == "/"


def test_a_failed_nat_switch_moved_the_subnet_back_and_removed_what_it_made() -> None:
    history = change("change-nat-rolled-back")
    message = failure(history)
    assert "ReplaceRouteTableAssociation" in message and "rolled back" in message, message
    names = activities(history)
    assert names.count("switch_route_table") == 4  # two moves (the second failed), both moved back
    assert names[-4:] == [
        "delete_route_table",
        "delete_route_table",
        "delete_nat_gateway",
        "release_elastic_ip",
    ]


def test_the_changed_deployment_recorded_every_outcome_and_kept_its_spec_through_failures() -> None:
    histories = [load(path) for path in CHANGE_RUNS]
    for history, following in zip(histories, histories[1:], strict=False):
        continued = history.events[-1].workflow_execution_continued_as_new_event_attributes
        assert continued.new_execution_run_id == following.run_id
    states = [state_in(h) for h in histories[1:]]
    assert [(s.last.operation, s.last.outcome) for s in states if s.last] == [
        (Operation.CREATE, Outcome.COMPLETED),
        *[(Operation.CONVERGE, Outcome.COMPLETED)] * 4,
        *[(Operation.CONVERGE, Outcome.FAILED)] * 2,
    ]
    assert all(len(h.events) < MAX_EVENTS_PER_RUN for h in histories)
    last = states[-1]
    assert last.spec is not None and last.spec.app.version == "2.0.0" and last.spec.nat_mode.value == "single"
    assert kinds(histories[-1])[-1] == "WORKFLOW_EXECUTION_COMPLETED"


def test_drift_report_a_scheduled_check_and_check_found_a_rule_added_by_hand_and_its_removal() -> None:
    runs = upkeep("report")
    final = ended(runs)
    assert all(patched(history) for history in runs)  # every run, the create's too, reached the idle loop
    assert started_with_drift_attribute(runs[0])
    assert ("next drift check", "check_drift") in [pair for h in runs for pair in after_timers(h)]
    assert checks(runs) == [False, True, False]  # clean, the rule added by hand, clean again
    assert upserted(runs, "DeploymentDrift") == [True, False]
    assert updates(runs) == ["up", "check", "down"]
    (report,) = update_results(runs, "check")
    assert [(i["name"], i["drift"], i["field"], i["actual"]) for i in report["items"]] == [
        ("sg-app", "extra", "ingress", "tcp/22 from 0.0.0.0/0")
    ]
    assert "repair_in_place" not in activities_of(runs)  # `report` changes nothing
    assert final.phase.value == "deleted" and not final.expired


def test_drift_repair_put_back_a_deregistered_target_and_a_removed_tag_in_place() -> None:
    runs = upkeep("repair")
    final = ended(runs)
    assert all(patched(history) for history in runs)
    repairs = [
        request["report"]["items"] for name, request in scheduled_in(runs) if name == "repair_in_place"
    ]
    assert repairs, activities_of(runs)
    found = {(item["name"], item["drift"], item["field"]) for items in repairs for item in items}
    assert found == {("tg-app", "missing", "target"), ("app-1", "missing", "tag:Name")}
    names = activities_of(runs)
    last_repair = len(names) - 1 - names[::-1].index("repair_in_place")
    assert "check_drift" in names[last_repair + 1 :]  # checked again after the repair
    assert checks(runs)[-2:] == [True, False] and upserted(runs, "DeploymentDrift") == [True, False]
    assert children(runs) == ["DeployWorkflow", "TeardownWorkflow"]  # nothing to make again: no converge
    assert updates(runs) == ["up", "down"] and final.phase.value == "deleted"


def test_ttl_extend_moved_the_deadline_and_the_deadline_tore_the_deployment_down() -> None:
    runs = upkeep("ttl")
    final = ended(runs)
    assert all(patched(history) for history in runs)
    assert updates(runs) == ["up", "extend"]  # no `down`: the deadline ended it
    deadlines = [datetime.fromisoformat(value) for value in upserted(runs, "DeploymentExpires")]
    assert len(deadlines) == 2 and deadlines[1] - deadlines[0] == timedelta(seconds=2)
    (extended,) = update_results(runs, "extend")
    assert datetime.fromisoformat(extended["expires_at"]) == deadlines[1]
    # The timer set before `extend` fires first and only waits again; the moved deadline tears down.
    assert after_timers(runs[-1]) == [
        ("time-to-live: tear down", "TIMER_STARTED"),
        ("time-to-live: tear down", "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"),
    ]
    assert children(runs[-1:]) == ["TeardownWorkflow"]
    assert final.phase.value == "deleted" and final.expired and final.expires_at == deadlines[1]
    assert final.last is not None and (final.last.operation, final.last.outcome) == (
        Operation.TEARDOWN,
        Outcome.COMPLETED,
    )
    assert "time-to-live ended" in (final.last.message or "")


def started_with_drift_attribute(history: WorkflowHistory) -> bool:
    started = history.events[0].workflow_execution_started_event_attributes
    return "DeploymentDrift" in started.search_attributes.indexed_fields


def scheduled_in(histories: Iterable[WorkflowHistory]) -> list[tuple[str, dict[str, Any]]]:
    return [step for history in histories for step in scheduled(history)]


def activities_of(histories: Iterable[WorkflowHistory]) -> list[str]:
    return [name for name, _ in scheduled_in(histories)]


def update_results(histories: list[WorkflowHistory], name: str) -> list[Any]:
    """What each accepted update of `name` answered."""
    accepted = {
        e.event_id
        for e in events(histories)
        if e.HasField("workflow_execution_update_accepted_event_attributes")
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name == name
    }
    return [
        json.loads(e.workflow_execution_update_completed_event_attributes.outcome.success.payloads[0].data)
        for e in events(histories)
        if e.HasField("workflow_execution_update_completed_event_attributes")
        and e.workflow_execution_update_completed_event_attributes.accepted_event_id in accepted
    ]


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


@workflow.defn(name="ConvergeWorkflow")
class SettingsBeforeRules(ConvergeWorkflow):
    """A plausible edit: the target group's settings before the ALB's rules (both in place)."""

    @workflow.run
    async def run(self, request: ConvergeInput) -> ConvergeResult:
        return await super().run(request)

    async def _update_in_place(self) -> list[str]:
        plan = self._plan
        self._plan = plan.model_copy(update={"ingress": None})  # the target group's settings alone
        updated = await super()._update_in_place()
        self._plan = plan.model_copy(update={"target_group": None})  # then the ALB's rules
        updated = [*await super()._update_in_place(), *updated]
        self._plan = plan
        return updated


async def test_a_changed_converge_workflow_fails_replay_of_the_in_place_change() -> None:
    others = [w for w in WORKFLOWS if w is not ConvergeWorkflow]
    result = await replayer([SettingsBeforeRules, *others]).replay_workflow(
        change("change-in-place"), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, workflow.NondeterminismError)
    assert "configure_target_group" in str(result.replay_failure), result.replay_failure


@workflow.defn(name="DeploymentWorkflow")
class IdlesWithoutTimers(DeploymentWorkflow):
    """The idle loop as it was before the patch: waiting for an update only, with no timer."""

    @workflow.run
    async def run(self, state: DeploymentState) -> DeploymentState:
        return await super().run(state)

    async def _idle(self) -> None:
        await workflow.wait_condition(lambda: self._pending is not None or self._down is not None)


async def test_the_idle_loop_without_its_timers_fails_replay_of_a_drift_check() -> None:
    others = [w for w in WORKFLOWS if w is not DeploymentWorkflow]
    result = await replayer([IdlesWithoutTimers, *others]).replay_workflow(
        upkeep("report")[1], raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure
