"""`on_failure`: pause (then retry or rollback), keep, and the search attributes that show the phase."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities import AwsClients
from models import naming
from models.progress import Phase, StepState
from models.spec import DeploymentSpec
from tests.support.faults import InjectedFault, hold_nat_gateways
from tests.support.inventory import added, inventory
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from workflows import search_attributes
from workflows.deploy import DeployWorkflow

MUTATING_PREFIXES = ("Create", "Allocate", "Run", "Register", "Authorize", "Associate", "Modify")


class CallLog:
    """Every mutating AWS call the activities make, by operation name."""

    def __init__(self, aws: AwsClients) -> None:
        self.calls: Counter[str] = Counter()
        aws.session.events.register("before-call", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        if model.name.startswith(MUTATING_PREFIXES):
            self.calls[model.name] += 1


async def start(client: Client, worker, spec: DeploymentSpec):
    return await client.start_workflow(
        DeployWorkflow.run,
        spec,
        id=f"deploy-{spec.deployment_id}",
        task_queue=worker.task_queue,
        search_attributes=search_attributes.at_start(spec.deployment_id, Phase.PREFLIGHT.value),
    )


async def paused(handle):
    return await eventually(lambda: handle.query(DeployWorkflow.progress), lambda p: p.phase is Phase.PAUSED)


async def test_pause_then_retry_completes_without_repeating_earlier_steps(client, aws: AwsClients, worker):
    log = CallLog(aws)
    fault = InjectedFault("elbv2", "CreateListener").install(aws.session)
    before = inventory()
    handle = await start(client, worker, fast_spec(on_failure="pause"))

    # Branches that do not need the failed step go on while the run is paused.
    progress = await eventually(
        lambda: handle.query(DeployWorkflow.progress),
        lambda p: p.phase is Phase.PAUSED and p.step("targets").state is StepState.DONE,
    )
    assert progress.failed_step == "listener-80" and "UnauthorizedOperation" in progress.error
    assert progress.step("healthy").state is StepState.PENDING  # it needs the listener
    assert progress.pause_deadline is not None
    done_before = {s.key: s.started_at for s in progress.steps if s.state is StepState.DONE}
    assert "alb" in done_before and "app-0" in done_before  # everything before it is kept
    created = added(before, inventory())
    assert len(created["instances"]) == 2 and len(created["load_balancers"]) == 1
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    calls_while_paused = dict(log.calls)

    fault.occurrences = set()  # the operator removes the cause
    assert "listener-80" in await handle.execute_update(DeployWorkflow.retry)
    outputs = await handle.result()

    assert outputs.listener_arn.startswith("arn:")
    retried = Counter(log.calls) - Counter(calls_while_paused)
    assert retried == Counter({"CreateListener": 1})  # only the failed step ran again
    assert log.calls["RunInstances"] == 2 and log.calls["CreateNatGateway"] == 1
    final = await handle.query(DeployWorkflow.progress)
    assert final.phase is Phase.COMPLETED and final.error is None and final.failed_step is None
    assert {s.key: s.started_at for s in final.steps if s.key in done_before} == done_before
    after = added(before, inventory())
    assert len(after["listeners"]) == 1 and len(after["instances"]) == 2


async def test_a_retried_step_finds_what_its_failed_run_made(client, aws: AwsClients, worker):
    """The route table step made its table, then failed to associate it: the retry must find the table
    (the first run of a step of a new deployment skips that lookup; a step's second run may not)."""
    log = CallLog(aws)
    fault = InjectedFault("ec2", "AssociateRouteTable").install(aws.session)
    before = inventory()
    handle = await start(client, worker, fast_spec(on_failure="pause"))
    progress = await paused(handle)
    assert progress.failed_step == naming.route_table(None)
    fault.occurrences = set()
    await handle.execute_update(DeployWorkflow.retry)
    outputs = await handle.result()
    assert log.calls["CreateRouteTable"] == 1
    assert added(before, inventory())["route_tables"] == set(outputs.route_table_ids.values())


async def test_pause_then_rollback_restores_the_account(client, aws: AwsClients, worker):
    InjectedFault("ec2", "RunInstances").install(aws.session)
    before = inventory()
    handle = await start(client, worker, fast_spec(on_failure="pause"))
    await paused(handle)
    assert added(before, inventory())  # there is something to roll back

    await handle.execute_update(DeployWorkflow.rollback)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    message = failure.value.cause.message
    assert "step 'app-" in message and "rollback requested by the operator" in message
    assert inventory() == before
    assert (await handle.query(DeployWorkflow.progress)).phase is Phase.FAILED


async def test_pause_times_out_into_rollback(client, aws: AwsClients, worker):
    InjectedFault("elbv2", "CreateTargetGroup").install(aws.session)
    before = inventory()
    spec = fast_spec(on_failure="pause")
    spec = spec.model_copy(update={"timing": spec.timing.model_copy(update={"pause_timeout_seconds": 1})})
    handle = await start(client, worker, spec)

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert "nobody decided within" in failure.value.cause.message
    assert inventory() == before


async def test_update_validator_refuses_a_running_deployment(client, aws: AwsClients, worker):
    held = hold_nat_gateways(aws.session)
    handle = await start(client, worker, fast_spec(on_failure="pause"))
    await eventually(lambda: handle.query(DeployWorkflow.progress), lambda p: held.polls > 0)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(DeployWorkflow.retry)
    assert "not paused" in str(refused.value.cause)
    held.released.set()
    await handle.result()


async def test_keep_leaves_everything_for_inspection(client, aws: AwsClients, worker):
    InjectedFault("elbv2", "CreateListener").install(aws.session)
    before = inventory()
    spec = fast_spec(on_failure="keep")
    handle = await start(client, worker, spec)

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "DeploymentFailed"
    assert "kept for inspection" in cause.message and f"down {spec.deployment_id}" in cause.message
    kept = added(before, inventory())
    assert len(kept["load_balancers"]) == 1 and len(kept["target_groups"]) == 1 and "listeners" not in kept
    progress = await handle.query(DeployWorkflow.progress)
    assert progress.kept and progress.phase is Phase.FAILED
    done = [s for s in progress.steps if s.state is StepState.DONE and s.key != "preflight"]
    assert {"alb", "tg-app", "sg-alb"} <= {s.key for s in done}
    everything_kept = set().union(*kept.values())
    assert all(s.resource_id in everything_kept for s in done)  # each step's resource is still there


async def test_search_attributes_follow_the_phase(client, aws: AwsClients, worker):
    InjectedFault("elbv2", "CreateListener").install(aws.session)
    spec = fast_spec(on_failure="pause")
    handle = await start(client, worker, spec)
    await paused(handle)

    async def phase_of() -> str | None:
        description = await handle.describe()
        return description.typed_search_attributes.get(search_attributes.DEPLOYMENT_PHASE)

    await eventually(phase_of, lambda phase: phase == "paused")
    description = await handle.describe()
    assert description.typed_search_attributes.get(search_attributes.DEPLOYMENT_ID) == spec.deployment_id
    query = f"DeploymentId = '{spec.deployment_id}' AND DeploymentPhase = 'paused'"
    found = await eventually(lambda: _ids(client, query), lambda ids: ids == [handle.id], timeout=30)
    assert found == [handle.id]

    await handle.execute_update(DeployWorkflow.rollback)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    await eventually(phase_of, lambda phase: phase == "failed")


async def _ids(client: Client, query: str) -> list[str]:
    return [execution.id async for execution in client.list_workflows(query)]
