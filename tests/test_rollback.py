"""A permanent failure at every AWS call of a deployment, and cancellation mid-run: the account ends
exactly as it began."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from activities import AwsClients
from activities.preflight import FACTS
from models.progress import Phase, StepState
from models.resources import Scope, TeardownInput
from models.spec import DeploymentSpec
from tests.support.faults import (
    PERMANENT_CODES,
    InjectedFault,
    OperationFaults,
    SiblingRace,
    hold_nat_gateways,
)
from tests.support.inventory import added, inventory
from tests.support.servers import reset_moto
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.waiting import eventually
from tests.support.workers import running_worker
from workflows.deploy import DeployWorkflow
from workflows.teardown import TeardownWorkflow

Point = tuple[str, str, int]
"""(service, operation, occurrence): the n-th call of one operation in a deployment."""


async def run(client: Client, worker: Worker, spec: DeploymentSpec):
    return await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )


def injection_points(recorded: Counter[tuple[str, str]]) -> list[Point]:
    """The first and the last call of every operation a fault-free deployment made."""
    return [(service, op, n) for (service, op), last in sorted(recorded.items()) for n in sorted({1, last})]


async def record_calls(
    client: Client,
    worker: Worker,
    faults: OperationFaults,
    moto_url: str,
    nat_mode: str,
    timing: dict[str, Any] = FAST_TIMING,
) -> Counter[tuple[str, str]]:
    """A fault-free deployment, its calls counted by operation; then a clean account."""
    faults.arm(None)
    await (await run(client, worker, fast_spec(nat_mode=nat_mode, timing=timing))).result()
    recorded = Counter(faults.counts)
    reset_moto(moto_url)  # the next deployments reuse the tutorial's subnet ranges
    return recorded


async def summary_of(handle: WorkflowHandle, activity_id: str) -> str:
    """The UI summary of the step whose activity made the failed call, from the run's history."""
    async for event in handle.fetch_history_events():
        scheduled = event.activity_task_scheduled_event_attributes
        if scheduled.activity_id == activity_id:
            return pydantic_data_converter.payload_converter.from_payload(event.user_metadata.summary)
    raise AssertionError(f"activity {activity_id} is not in the history")


async def inject(
    client: Client,
    worker: Worker,
    faults: OperationFaults,
    point: Point,
    nat_mode: str,
    timing: dict[str, Any] = FAST_TIMING,
) -> list[str]:
    """Fail one call for good; what went wrong, if anything (empty: failed cleanly, rolled back)."""
    service, operation, _ = point
    FACTS.forget()  # as a fresh worker: the preflight's kept facts are asked for again
    before = inventory()
    faults.arm(point)
    handle = await run(client, worker, fast_spec(nat_mode=nat_mode, timing=timing))
    try:
        await handle.result()
    except WorkflowFailureError as failure:
        cause = failure.cause
    else:
        return ["the deployment completed: the fault never fired"]
    hit, problems = faults.hit, []
    if hit is None or hit.activity_id is None:
        return [f"the fault fired outside an activity: {hit}"]
    if not (isinstance(cause, ApplicationError) and cause.type == "DeploymentFailed"):
        return [f"unexpected failure {cause!r}"]
    progress = await handle.query(DeployWorkflow.progress)
    summary = await summary_of(handle, hit.activity_id)
    code = PERMANENT_CODES[service]
    expected = [f"step '{progress.failed_step}' ({summary}) failed", f"{operation} failed: {code}", "To fix"]
    expected.append("everything created was rolled back")
    problems += [f"message lacks {text!r}: {cause.message}" for text in expected if text not in cause.message]
    if progress.phase is not Phase.FAILED or progress.left_behind:
        problems.append(f"phase {progress.phase}, left behind {progress.left_behind}")
    if (await handle.describe()).status != WorkflowExecutionStatus.FAILED:
        problems.append("the run did not end FAILED")
    leaked = added(before, inventory())
    missing = added(inventory(), before)
    if leaked or missing:
        problems.append(f"inventory changed: left {leaked}, removed {missing}")
    return problems


@pytest.mark.parametrize("nat_mode", ["single", pytest.param("per_az", marks=pytest.mark.soak)])
async def test_permanent_failure_at_every_call_rolls_back_everything(
    client, aws: AwsClients, worker, moto_url, nat_mode
):
    """Every operation of a deployment, failed for good at its first and its last call.

    The injection points come from a recorded fault-free run, so a call added to the deployment is
    covered without editing this test.
    """
    await fault_matrix(client, aws, worker, moto_url, nat_mode, FAST_TIMING)


async def fault_matrix(
    client: Client, aws: AwsClients, worker: Worker, moto_url: str, nat_mode: str, timing: dict[str, Any]
) -> None:
    """Fail each injection point in turn; assert every run failed cleanly and rolled back."""
    faults = OperationFaults(aws.session)
    recorded = await record_calls(client, worker, faults, moto_url, nat_mode, timing)
    points = injection_points(recorded)
    report: dict[Point, list[str]] = {}
    fired: set[tuple[str, str]] = set()
    for point in points:
        problems = await inject(client, worker, faults, point, nat_mode, timing)
        service, operation, occurrence = point
        made = faults.counts[service, operation]
        if faults.hit is None and made < occurrence:
            # Concurrent waits of one kind share polls (activities/shared_polls.py), so how many
            # describes a run makes depends on timing: this run's last call is the last call.
            reset_moto(moto_url)
            point = (service, operation, made)
            problems = await inject(client, worker, faults, point, nat_mode, timing)
        report[point] = problems
        if faults.hit is not None:
            fired.add((faults.hit.service, faults.hit.operation))
        if report[point]:
            reset_moto(moto_url)  # a leak must not spill into the next point's preflight
    print(f"fault matrix ({nat_mode}): {len(points)} injection points over {len(recorded)} operations")
    failed = {point: problems for point, problems in report.items() if problems}
    assert not failed, "\n".join(f"{p}: {'; '.join(problems)}" for p, problems in failed.items())
    assert fired == set(recorded) and len(recorded) > 20  # a fault went off in every operation it calls


async def test_rollback_waits_for_a_sibling_create_in_flight(client, aws: AwsClients, worker):
    """One instance fails for good while the other's RunInstances is on the wire: nothing may leak.

    The two instances are concurrent branches of one step; the rollback must stop and settle the
    sibling before it unwinds, or the sibling's instance lands after its compensation found nothing.
    """
    race = SiblingRace(aws.session, "ec2", "RunInstances", lookup="DescribeInstances")
    before = inventory()
    handle = await run(client, worker, fast_spec())

    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert race.calls == 2 and race.held_resource is not None  # the race was run
    assert inventory() == before


async def test_cancel_mid_run_rolls_back_and_ends_cancelled(client, aws: AwsClients, worker):
    held = hold_nat_gateways(aws.session)
    before = inventory()
    handle = await run(client, worker, fast_spec())
    await eventually(
        lambda: handle.query(DeployWorkflow.progress),
        lambda p: (
            p.step("nat-ap-northeast-2a").state is StepState.RUNNING
            and held.polls > 0
            and p.step("app-1").state is StepState.DONE
        ),  # instances launch while the NAT is pending
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
    assert progress.step("app-0").state is StepState.COMPENSATED  # launched before the NAT was available


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
