"""`on_failure: pause` for a change of a live deployment (ConvergeWorkflow): a scale out 2 -> 3 whose
new instance fails for good pauses with nothing undone and the old instances in service; `rollback`
puts the account back exactly, nobody deciding rolls back by itself, and `retry` once the cause is
gone completes the change. Through `starter.py`, the paused change is the converge child of
`deployment-<id>`: `up` exits 3 and `rollback` addresses the child.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from models.converge import ConvergeResult
from models.progress import DeploymentProgress, Phase, StepState
from tests.support.faults import InjectedFault
from tests.support.inventory import inventory
from tests.support.processes import Cli
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from tests.test_cli_operations import run, spec_file
from tests.test_converge import changed, fleet, start_converge, with_instances
from tests.test_deploy_workflow import deploy
from tests.test_deployment_workflow import entity
from workflows import search_attributes
from workflows.converge import ConvergeWorkflow

EXIT_OK, EXIT_BAD_INPUT, EXIT_PAUSED, EXIT_NOT_APPLICABLE = 0, 2, 3, 5


async def paused(handle: WorkflowHandle) -> DeploymentProgress:
    return await eventually(
        lambda: handle.query(ConvergeWorkflow.progress), lambda p: p.phase is Phase.PAUSED
    )


def undone(progress: DeploymentProgress) -> list[str]:
    """Steps a rollback has touched."""
    touched = (StepState.COMPENSATING, StepState.COMPENSATED, StepState.LEFT_BEHIND)
    return [s.key for s in progress.steps if s.state in touched]


async def test_paused_scale_out_keeps_the_old_instances_in_service_then_rollback_restores_exactly(
    client, worker, aws, ec2, elbv2
):
    launches = InjectedFault("ec2", "RunInstances", occurrences=set()).install(aws.session)
    spec = fast_spec(on_failure="pause")
    out = await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    old = set(out.instance_ids.values())
    launches.occurrences = {launches.calls + 1}  # the new instance's launch

    handle = await start_converge(client, worker, changed(spec, count=3))
    progress = await paused(handle)

    assert progress.failed_step == "app-2-g1" and "injected by the test" in (progress.error or "")
    assert progress.pause_deadline is not None and undone(progress) == []
    assert progress.step("register-scale-out").state is StepState.PENDING
    live = fleet(elbv2, ec2, out)
    assert {i for i, (_, _, registered) in live.items() if registered} == old  # still serving
    assert set(live) == old  # the failed launch made nothing

    assert await handle.execute_update(ConvergeWorkflow.rollback) == "rolling back"
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    message = failure.value.cause.message
    assert "app-2-g1" in message and "rollback requested by the operator" in message, message
    assert "back on its previous spec (instances app-0, app-1)" in message
    assert await asyncio.to_thread(inventory) == before
    assert (await handle.query(ConvergeWorkflow.progress)).phase is Phase.FAILED

    # Nobody deciding within the pause timeout rolls back as well.
    launches.occurrences = {launches.calls + 1}
    unattended = changed(spec, count=3).model_copy(
        update={"timing": spec.timing.model_copy(update={"pause_timeout_seconds": 1})}
    )
    handle = await start_converge(client, worker, unattended)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "nobody decided within" in failure.value.cause.message
    assert await asyncio.to_thread(inventory) == before


async def test_paused_health_wait_retried_once_the_cause_is_gone_completes_the_scale_out(
    client, worker, aws, ec2, elbv2
):
    launches = InjectedFault("ec2", "RunInstances", occurrences=set()).install(aws.session)
    health = InjectedFault("elbv2", "DescribeTargetHealth", occurrences=set()).install(aws.session)
    spec = fast_spec(on_failure="pause")
    out = await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    launched_before = launches.calls
    health.occurrences = None  # every health poll from now on

    handle = await start_converge(client, worker, changed(spec, count=3))
    progress = await paused(handle)

    assert progress.failed_step == "healthy-scale-out" and undone(progress) == []
    assert progress.step("app-2-g1").state is StepState.DONE
    assert progress.step("register-scale-out").state is StepState.DONE

    health.occurrences = set()  # the operator removes the cause
    answer = await handle.execute_update(ConvergeWorkflow.retry)
    result: ConvergeResult = await handle.result()

    assert answer == "retrying healthy-scale-out"
    assert launches.calls == launched_before + 1  # the launch did not run again
    assert sorted(result.instance_ids) == ["app-0", "app-1", "app-2-g1"] and result.terminated == []
    three = set(result.instance_ids.values())
    assert three > set(out.instance_ids.values())
    assert await asyncio.to_thread(inventory) == with_instances(before, three)
    assert {i for i, (_, _, registered) in fleet(elbv2, ec2, out).items() if registered} == three
    final = await handle.query(ConvergeWorkflow.progress)
    assert final.phase is Phase.COMPLETED and final.error is None and final.failed_step is None


async def test_up_of_a_change_pauses_with_exit_3_and_rollback_addresses_the_converge_child(
    client: Client, aws, worker, tmp_path
):
    launches = InjectedFault("ec2", "RunInstances", occurrences=set()).install(aws.session)
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"pause-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, deployment_id)
    created = await run(cli, "up", "--spec", spec, "--json")
    assert created.code == EXIT_OK, created.stderr
    deployed = await asyncio.to_thread(inventory)
    launches.occurrences = {launches.calls + 1}

    up = await run(cli, "up", "--spec", spec, "--set", "instances.count=3", "--on-failure", "pause", "--json")

    assert up.code == EXIT_PAUSED, up.stderr
    assert up.json()["status"] == "PAUSED" and "injected by the test" in up.json()["error"]
    assert up.json()["progress"]["failed_step"] == "app-2-g1"
    assert f"starter.py rollback {deployment_id}" in up.stderr and "Traceback" not in up.stderr
    shown = await run(cli, "status", deployment_id, "--json")
    assert shown.json()["status"] == "PAUSED" and shown.json()["workflow_id"].startswith("converge-")
    assert shown.json()["progress"]["failed_step"] == "app-2-g1"
    listed = await eventually(
        lambda: run(cli, "list", "--phase", "paused", "--json"),
        lambda done: deployment_id in {d["deployment_id"] for d in done.json()["deployments"]},
    )
    assert listed.code == EXIT_OK
    busy = await run(cli, "up", "--spec", spec, "--set", "instances.count=4", "--json")
    assert busy.code == EXIT_NOT_APPLICABLE and "is paused after a failure; decide first" in busy.stderr

    rollback = await run(cli, "rollback", deployment_id, "--json")

    assert rollback.code == EXIT_OK, rollback.stderr
    answer = rollback.json()
    assert answer["status"] == "FAILED" and answer["operation"] == "converge"
    assert answer["operation_workflow_id"].startswith(f"converge-{deployment_id}-")
    assert "rollback requested by the operator" in answer["error"]
    assert await asyncio.to_thread(inventory) == deployed
    phase = await entity(client, deployment_id).describe()
    assert phase.typed_search_attributes.get(search_attributes.DEPLOYMENT_PHASE) == "ready"

    again = await run(cli, "retry", deployment_id)
    assert again.code == EXIT_BAD_INPUT and "not paused" in again.stderr
