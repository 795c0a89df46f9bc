"""Failure at every create step, and cancellation mid-run: the account ends exactly as it began."""

from __future__ import annotations

import boto3
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from activities import AwsClients
from models.progress import Phase, StepState
from models.resources import Scope, TeardownInput
from models.spec import DeploymentSpec
from tests.support.faults import InjectedFault, hold_nat_gateways
from tests.support.inventory import added, inventory
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.waiting import eventually
from tests.support.workers import running_worker
from workflows.deploy import DeployWorkflow
from workflows.teardown import TeardownWorkflow

# (service, operation, occurrence, the step the failure must be reported at)
CREATE_CALLS = [
    ("ec2", "DescribeVpcs", 1, "preflight"),
    ("ec2", "CreateSubnet", 1, "subnet-private-"),
    ("ec2", "CreateSubnet", 2, "subnet-private-"),
    ("ec2", "AllocateAddress", 1, "eip-nat-ap-northeast-2a"),
    ("ec2", "CreateNatGateway", 1, "nat-ap-northeast-2a"),
    ("ec2", "DescribeNatGateways", 2, "nat-ap-northeast-2a"),
    ("ec2", "CreateRouteTable", 1, "rt-private"),
    ("ec2", "CreateRoute", 1, "rt-private"),
    ("ec2", "AssociateRouteTable", 2, "rt-private"),
    ("ec2", "CreateSecurityGroup", 1, "sg-alb"),
    ("ec2", "CreateSecurityGroup", 2, "sg-app"),
    ("ec2", "AuthorizeSecurityGroupIngress", 2, "sg-app"),
    ("elbv2", "CreateTargetGroup", 1, "tg-app"),
    ("elbv2", "ModifyTargetGroupAttributes", 1, "tg-app"),
    ("elbv2", "CreateLoadBalancer", 1, "alb"),
    ("ec2", "RunInstances", 1, "app-"),
    ("ec2", "RunInstances", 2, "app-"),
    ("elbv2", "RegisterTargets", 1, "targets"),
    ("elbv2", "CreateListener", 1, "listener-80"),
    ("elbv2", "DescribeTargetHealth", 1, "healthy"),
]


async def run(client: Client, worker: Worker, spec: DeploymentSpec):
    return await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )


@pytest.mark.parametrize(
    ("service", "operation", "occurrence", "step"),
    CREATE_CALLS,
    ids=[f"{op}#{n}" for _, op, n, _ in CREATE_CALLS],
)
async def test_permanent_failure_rolls_back_everything(
    client, aws: AwsClients, worker, service, operation, occurrence, step
):
    fault = InjectedFault(service, operation, occurrences={occurrence}).install(aws.session)
    before = inventory()
    handle = await run(client, worker, fast_spec())

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert fault.failed == 1
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "DeploymentFailed"
    assert f"step '{step}" in cause.message
    assert "UnauthorizedOperation" in cause.message and "rolled back" in cause.message
    assert inventory() == before
    progress = await handle.query(DeployWorkflow.progress)
    assert progress.phase is Phase.FAILED and progress.left_behind == []
    assert any(s.state is StepState.FAILED for s in progress.steps)
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED


async def test_cancel_mid_run_rolls_back_and_ends_cancelled(client, aws: AwsClients, worker):
    held = hold_nat_gateways(aws.session)
    before = inventory()
    handle = await run(client, worker, fast_spec())
    await eventually(
        lambda: handle.query(DeployWorkflow.progress),
        lambda p: p.step("nat-ap-northeast-2a").state is StepState.RUNNING and held.polls > 0,
    )
    assert inventory() != before  # there is something to roll back
    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert inventory() == before
    progress = await handle.query(DeployWorkflow.progress)
    assert progress.phase is Phase.CANCELLED
    assert progress.step("nat-ap-northeast-2a").state is StepState.COMPENSATED


async def test_transient_errors_are_retried_without_duplicates(client, aws: AwsClients, worker):
    faults = [
        InjectedFault("ec2", op, code="RequestLimitExceeded", status=503, occurrences={1}).install(
            aws.session
        )
        for op in ("CreateSubnet", "AllocateAddress", "RunInstances", "CreateSecurityGroup")
    ] + [
        InjectedFault("elbv2", op, code="Throttling", status=400, occurrences={1}).install(aws.session)
        for op in ("CreateLoadBalancer", "CreateListener")
    ]
    before = inventory()
    handle = await run(client, worker, fast_spec())
    outputs = await handle.result()

    assert all(f.failed == 1 for f in faults)
    after = inventory()
    created = {kind: len(after[kind] - before[kind]) for kind in after}
    assert created["subnets"] == 2 and created["addresses"] == 1 and created["instances"] == 2
    assert created["security_groups"] == 2 and created["load_balancers"] == 1
    assert created["listeners"] == 1
    assert len(outputs.instance_ids) == 2


async def test_undeletable_resource_is_reported_by_id_and_down_removes_it(client, aws: AwsClients, worker):
    """A compensation that fails for good does not hide its resource, nor stop the other compensations."""
    InjectedFault("elbv2", "CreateListener").install(aws.session)
    InjectedFault("ec2", "DeleteSecurityGroup", code="UnauthorizedOperation").install(aws.session)
    before = inventory()
    spec = fast_spec()
    handle = await run(client, worker, spec)

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    progress = await handle.query(DeployWorkflow.progress)
    left = {entry.split(" ")[0]: entry for entry in progress.left_behind}
    assert set(left) == {"sg-alb", "sg-app"}
    for name in left:
        assert progress.step(name).resource_id in left[name]  # reported by id
        assert progress.step(name).state is StepState.LEFT_BEHIND
    message = failure.value.cause.message
    assert "rollback could not delete" in message and "starter.py down" in message
    remaining = added(before, inventory())
    assert set(remaining) <= {"security_groups", "security_group_rules"}  # everything else went
    assert len(remaining["security_groups"]) == 2

    async with running_worker(client, AwsClients(boto3.Session())) as healthy:
        request = TeardownInput(
            scope=Scope(deployment_id=spec.deployment_id, region=spec.region), timing=FAST_TIMING
        )
        await client.execute_workflow(
            TeardownWorkflow.run, request, id=f"teardown-{spec.deployment_id}", task_queue=healthy.task_queue
        )
    assert inventory() == before
