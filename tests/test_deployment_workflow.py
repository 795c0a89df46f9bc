"""DeploymentWorkflow (`deployment-<id>`) on the Temporal dev server with real boto3 calls on moto: `up`
by update-with-start creates, then converges (scale out and in, with the exact inventory each time);
an `up` during an operation is rejected; `down` during a rollout cancels it (the rollout rolls back)
and tears down; the run chain continues as new between operations; a deployment made by a standalone
`deploy-<id>` run is adopted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from models.converge import ConvergeResult
from models.deployment import (
    DeploymentPhase,
    DeploymentState,
    DownRequest,
    Operation,
    OperationResult,
    Outcome,
    with_fleet,
    workflow_id,
)
from models.resources import DeploymentOutputs, Kind, Resource
from models.spec import DeploymentSpec
from tests.support.held_health import HeldHealth
from tests.support.inventory import added, inventory
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from tests.test_converge import changed, fleet
from tests.test_deploy_workflow import deploy
from workflows import search_attributes
from workflows.converge import ConvergeWorkflow
from workflows.deployment import DeploymentWorkflow

MAX_EVENTS_PER_RUN = 60
"""The entity's own runs: an operation is a few child workflow events, never its activities."""


def start_operation(
    spec: DeploymentSpec, worker: Worker, state: DeploymentState | None = None, *, attributes: bool = False
) -> WithStartWorkflowOperation:
    """`attributes`: started with the search attributes `starter.py up` gives it."""
    found = search_attributes.for_deployment(spec.deployment_id, "new")[0] if attributes else None
    return WithStartWorkflowOperation(
        DeploymentWorkflow.run,
        state or DeploymentState(deployment_id=spec.deployment_id, region=spec.region),
        id=workflow_id(spec.deployment_id),
        task_queue=worker.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        **({"search_attributes": found} if found else {}),
    )


async def up(
    client: Client,
    worker: Worker,
    spec: DeploymentSpec,
    state: DeploymentState | None = None,
    *,
    attributes: bool = False,
) -> OperationResult:
    operation = start_operation(spec, worker, state, attributes=attributes)
    return await client.execute_update_with_start_workflow(
        DeploymentWorkflow.up, spec, start_workflow_operation=operation
    )


async def runs(client: Client, deployment_id: str) -> list[Any]:
    """Every run of the deployment's workflow, oldest first (the continue-as-new chain)."""
    found = [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id(deployment_id)}'")]
    return sorted(found, key=lambda r: r.start_time)


async def chain(client: Client, deployment_id: str, count: int) -> list[Any]:
    """Visibility is eventually consistent: wait until it lists `count` runs, every one but the last
    closed (a run's status there may lag its continue-as-new)."""
    return await eventually(
        lambda: runs(client, deployment_id),
        lambda found: (
            len(found) == count and all(r.status != WorkflowExecutionStatus.RUNNING for r in found[:-1])
        ),
    )


def entity(client: Client, deployment_id: str) -> WorkflowHandle:
    return client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(deployment_id))


async def test_up_creates_then_converges_out_and_in_continuing_as_new_between_operations(
    client, worker, ec2, elbv2
):
    spec = fast_spec()
    before = await asyncio.to_thread(inventory)

    created = await up(client, worker, spec)

    assert (created.operation, created.outcome) == (Operation.CREATE, Outcome.COMPLETED), created.message
    assert created.workflow_id == f"deploy-{spec.deployment_id}"
    out = created.outputs
    assert out is not None and sorted(out.instance_ids) == ["app-0", "app-1"]
    deployed = await asyncio.to_thread(inventory)
    assert set(added(before, deployed)["instances"]) == set(out.instance_ids.values())

    wider = await up(client, worker, changed(spec, count=4))

    assert (wider.operation, wider.outcome) == (Operation.CONVERGE, Outcome.COMPLETED), wider.message
    assert wider.outputs is not None and sorted(wider.outputs.instance_ids) == [
        "app-0",
        "app-1",
        "app-2-g1",
        "app-3-g1",
    ]
    four = set(wider.outputs.instance_ids.values())
    assert await asyncio.to_thread(inventory) == {**deployed, "instances": four}
    assert set(fleet(elbv2, ec2, out)) == four

    narrower = await up(client, worker, changed(spec, count=1))

    assert narrower.outcome is Outcome.COMPLETED, narrower.message
    assert narrower.outputs is not None
    assert narrower.outputs.instance_ids == {"app-0": out.instance_ids["app-0"]}
    assert await asyncio.to_thread(inventory) == {**deployed, "instances": {out.instance_ids["app-0"]}}
    assert fleet(elbv2, ec2, out) == {out.instance_ids["app-0"]: ("t2.micro", "ap-northeast-2a", True)}

    same = await up(client, worker, changed(spec, count=1))
    assert (same.operation, same.outcome) == (Operation.NONE, Outcome.UNCHANGED)
    assert same.outputs == narrower.outputs

    # Four operations, four continue-as-new: five runs, each one's history small, the state carried.
    found = await chain(client, spec.deployment_id, 5)
    assert [r.status for r in found[:-1]] == [WorkflowExecutionStatus.CONTINUED_AS_NEW] * 4
    assert found[-1].status == WorkflowExecutionStatus.RUNNING
    for run in found:
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        assert len(history.events) < MAX_EVENTS_PER_RUN
    status = await entity(client, spec.deployment_id).query(DeploymentWorkflow.status)
    assert status.state.operations == 4 and status.state.phase is DeploymentPhase.READY
    assert status.state.spec == changed(spec, count=1) and status.running is None

    down = await entity(client, spec.deployment_id).execute_update(DeploymentWorkflow.down, DownRequest())
    assert down.outcome is Outcome.COMPLETED, down.message
    assert await asyncio.to_thread(inventory) == before
    final = await entity(client, spec.deployment_id).result()
    assert final.phase is DeploymentPhase.DELETED and final.spec is None


async def test_an_up_during_a_rollout_is_rejected_and_down_cancels_the_rollout_then_tears_down(
    client, worker, aws, ec2, elbv2
):
    held = HeldHealth(aws.session)
    spec = fast_spec()
    before = await asyncio.to_thread(inventory)
    created = await up(client, worker, spec)
    assert created.outputs is not None
    held.serving, held.held = set(created.outputs.instance_ids.values()), True
    handle = entity(client, spec.deployment_id)

    rollout = await client.start_update_with_start_workflow(
        DeploymentWorkflow.up,
        changed(spec, instance_type="t3.micro"),
        start_workflow_operation=start_operation(spec, worker),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    status = await eventually(
        lambda: handle.query(DeploymentWorkflow.status), lambda s: s.running is Operation.CONVERGE
    )
    child = client.get_workflow_handle_for(ConvergeWorkflow.run, status.child_workflow_id)
    await eventually(
        lambda: child.query(ConvergeWorkflow.progress),
        lambda p: p.step("healthy-batch-1").state == "running",
    )
    events_before = len((await handle.fetch_history()).events)

    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await up(client, worker, changed(spec, count=3))

    message = str(rejected.value.cause)
    assert f"{spec.deployment_id} is busy: a converge runs ({status.child_workflow_id})" in message
    assert len((await handle.fetch_history()).events) == events_before  # a rejection adds no event

    down = await handle.execute_update(DeploymentWorkflow.down, DownRequest())

    assert down.outcome is Outcome.COMPLETED, down.message
    assert down.teardown is not None and down.teardown.deleted
    stopped = await rollout.result()
    assert (stopped.operation, stopped.outcome) == (Operation.CONVERGE, Outcome.CANCELLED)
    assert (await child.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await asyncio.to_thread(inventory) == before
    assert (await handle.result()).phase is DeploymentPhase.DELETED


async def test_a_change_no_operation_can_apply_is_rejected_or_refused_with_nothing_changed(client, worker):
    spec = fast_spec()
    created = await up(client, worker, spec)
    assert created.outcome is Outcome.COMPLETED
    deployed = await asyncio.to_thread(inventory)
    handle = entity(client, spec.deployment_id)
    await handle.query(DeploymentWorkflow.status)  # the continued run has taken its first task
    events_before = len((await handle.fetch_history()).events)

    moved = spec.model_copy(
        update={
            "private_subnets": [
                s.model_copy(update={"cidr": "172.31.200.0/24"}) if i == 0 else s
                for i, s in enumerate(spec.private_subnets)
            ]
        }
    )
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await up(client, worker, moved)
    assert "replace the deployment" in str(rejected.value.cause)
    assert "private subnet CIDR in ap-northeast-2a" in str(rejected.value.cause)
    assert len((await handle.fetch_history()).events) == events_before

    port = spec.load_balancer.model_copy(update={"listener_port": 8080})
    moved_listener = await up(client, worker, spec.model_copy(update={"load_balancer": port}))
    assert moved_listener.outcome is Outcome.REFUSED and "listener-80 delete" in (
        moved_listener.message or ""
    )
    assert await asyncio.to_thread(inventory) == deployed


async def test_up_adopts_a_deployment_made_by_a_standalone_deploy_run(client, worker, ec2, elbv2):
    spec = fast_spec()
    out = await deploy(client, worker, spec)  # today's standalone run, no entity workflow
    deployed = await asyncio.to_thread(inventory)
    state = DeploymentState(
        deployment_id=spec.deployment_id, region=spec.region, outputs=out, adopted_from="deploy-x"
    )

    result = await up(client, worker, changed(spec, count=3), state)

    assert (result.operation, result.outcome) == (Operation.CONVERGE, Outcome.COMPLETED), result.message
    assert result.outputs is not None and result.outputs.alb_dns_name == out.alb_dns_name
    assert sorted(result.outputs.instance_ids) == ["app-0", "app-1", "app-2-g1"]
    three = set(result.outputs.instance_ids.values())
    assert three > set(out.instance_ids.values())
    assert await asyncio.to_thread(inventory) == {**deployed, "instances": three}
    assert set(fleet(elbv2, ec2, out)) == three


def test_the_outputs_after_a_nat_mode_switch_name_the_new_gateways_tables_and_fleet():
    single = {"ap-northeast-2a": "rtb-1", "ap-northeast-2c": "rtb-1"}
    outputs = DeploymentOutputs(
        deployment_id="d", region="ap-northeast-2", alb_dns_name="alb", url="http://alb", vpc_id="vpc",
        ami_id="ami", private_subnet_ids={}, public_subnet_ids={}, alb_security_group_id="sg-a",
        app_security_group_id="sg-b", target_group_arn="tg", load_balancer_arn="lb", listener_arn="l",
        elastic_ip_allocation_ids={"ap-northeast-2a": "eip-1"}, nat_gateway_ids={"ap-northeast-2a": "nat-1"},
        route_table_ids=single, instance_ids={"app-0": "i-0"},
        resources=[
            Resource(kind=Kind.NAT_GATEWAY, name="nat-ap-northeast-2a", id="nat-1"),
            Resource(kind=Kind.ROUTE_TABLE, name="rt-private", id="rtb-1"),
            Resource(kind=Kind.INSTANCE, name="app-0", id="i-0"),
            Resource(kind=Kind.TARGET_GROUP, name="tg-app", id="tg"),
        ],
    )  # fmt: skip
    per_az = {"ap-northeast-2a": "rtb-2", "ap-northeast-2c": "rtb-3"}
    result = ConvergeResult(
        instance_ids={"app-0": "i-0", "app-1-g1": "i-1"}, launched=["app-1-g1"], terminated=[],
        nat_gateway_ids={"ap-northeast-2a": "nat-1", "ap-northeast-2c": "nat-2"},
        elastic_ip_allocation_ids={"ap-northeast-2a": "eip-1", "ap-northeast-2c": "eip-2"},
        route_table_ids=per_az,
    )  # fmt: skip

    after = with_fleet(outputs, result)

    assert after.route_table_ids == per_az and after.nat_gateway_ids == result.nat_gateway_ids
    assert after.instance_ids == result.instance_ids and after.alb_dns_name == "alb"
    assert {(r.name, r.id) for r in after.resources} == {
        ("tg-app", "tg"), ("app-0", "i-0"), ("app-1-g1", "i-1"),
        ("nat-ap-northeast-2a", "nat-1"), ("nat-ap-northeast-2c", "nat-2"),
        ("eip-nat-ap-northeast-2a", "eip-1"), ("eip-nat-ap-northeast-2c", "eip-2"),
        ("rt-private-ap-northeast-2a", "rtb-2"), ("rt-private-ap-northeast-2c", "rtb-3"),
    }  # fmt: skip
    back = with_fleet(after, result.model_copy(update={"route_table_ids": single, "nat_gateway_ids": {}}))
    assert {r.name for r in back.resources if r.kind is Kind.ROUTE_TABLE} == {"rt-private"}
    assert back.nat_gateway_ids == after.nat_gateway_ids  # an empty map: unchanged
