"""Time-to-live: a deployment with `ttl` is torn down by its own workflow when the deadline passes;
`starter.py extend` moves the deadline (an update, answered at once) and is refused clearly once it
has passed or when there is none; the wait survives a worker and a Temporal server restart.

The deployment's workflow on the Temporal dev server, real boto3 calls on moto; `starter.py` as a
subprocess where the operator's words are what is tested.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities import AwsClients
from models.deployment import DeploymentPhase, DeploymentState, Operation, Outcome
from tests.support.faults import InjectedFault
from tests.support.inventory import added, inventory
from tests.support.processes import Cli
from tests.support.servers import DurableTemporal, free_port
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.waiting import eventually
from tests.support.workers import running_worker
from tests.test_cli_operations import run
from tests.test_deployment_workflow import entity, up
from worker import build_worker
from workflows import search_attributes
from workflows.deployment import DeploymentWorkflow

EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_APPLICABLE = 0, 2, 5


async def test_the_deadline_tears_the_deployment_down_and_extend_is_refused_after_it(client: Client, worker):
    spec = fast_spec(ttl="2s")
    before = await asyncio.to_thread(inventory)

    created = await up(client, worker, spec, attributes=True)
    assert created.outcome is Outcome.COMPLETED, created.message
    assert added(before, await asyncio.to_thread(inventory))["instances"]
    handle = entity(client, spec.deployment_id)
    final: DeploymentState = await handle.result()  # the workflow ends with the teardown

    assert final.phase is DeploymentPhase.DELETED and final.expired
    assert final.last is not None and (final.last.operation, final.last.outcome) == (
        Operation.TEARDOWN,
        Outcome.COMPLETED,
    )
    assert final.last.message is not None and "time-to-live ended" in final.last.message
    assert final.expires_at is not None and final.expires_at - final.last.finished_at <= timedelta(0)
    assert await asyncio.to_thread(inventory) == before
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search_attributes.DEPLOYMENT_EXPIRES) == final.expires_at

    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    late = await run(cli, "extend", spec.deployment_id, "1h")
    assert late.code == EXIT_NOT_APPLICABLE
    assert f"{spec.deployment_id} expired at" in late.stderr and "too late to extend it" in late.stderr
    assert "Traceback" not in late.stderr


async def test_extend_moves_the_deadline_and_needs_one(client: Client, worker, tmp_path):
    spec = fast_spec()
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    created = await up(client, worker, spec)
    assert created.outcome is Outcome.COMPLETED, created.message

    none_yet = await run(cli, "extend", spec.deployment_id, "1h")
    assert none_yet.code == EXIT_NOT_APPLICABLE
    assert "has no time-to-live; set one with `starter.py up --ttl 2h`" in none_yet.stderr

    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"deployment_id": spec.deployment_id, "timing": FAST_TIMING}))
    given = await run(cli, "up", "--spec", str(path), "--ttl", "2h", "--json")
    assert given.code == EXIT_OK, given.stderr
    handle = entity(client, spec.deployment_id)
    status = await handle.query(DeploymentWorkflow.status)
    deadline = status.state.expires_at
    assert deadline is not None and status.state.ttl == timedelta(hours=2)
    assert status.state.last is not None and status.state.last.outcome is Outcome.UNCHANGED

    again = await run(cli, "up", "--spec", str(path), "--ttl", "2h", "--json")  # the same ttl: kept
    assert again.code == EXIT_OK, again.stderr
    assert (await handle.query(DeploymentWorkflow.status)).state.expires_at == deadline

    moved = await run(cli, "extend", spec.deployment_id, "1h30m", "--json")
    assert moved.code == EXIT_OK, moved.stderr
    assert moved.json()["expires_at"] == (deadline + timedelta(minutes=90)).isoformat().replace("+00:00", "Z")
    status = await handle.query(DeploymentWorkflow.status)
    assert status.state.expires_at == deadline + timedelta(minutes=90)
    shown = await run(cli, "status", spec.deployment_id, "--json")
    assert shown.json()["expires_at"] == status.state.expires_at.isoformat()

    bad = await run(cli, "extend", spec.deployment_id, "soon")
    assert bad.code == EXIT_BAD_INPUT and "'soon' is not a duration" in bad.stderr

    gone = await run(cli, "down", spec.deployment_id, "--json")
    assert gone.code == EXIT_OK, gone.stderr


async def test_the_deadline_survives_a_worker_and_a_server_restart(tmp_path: Path, aws: AwsClients):
    server = DurableTemporal(tmp_path / "temporal.db", free_port(), search_attributes.dev_server_flags())
    server.start()
    task_queue = f"tq-{uuid.uuid4()}"
    try:
        spec = fast_spec(ttl="6s")
        before = await asyncio.to_thread(inventory)
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        async with build_worker(client, task_queue, aws, sandboxed=True) as worker:
            created = await up(client, worker, spec)
        assert created.outcome is Outcome.COMPLETED, created.message
        server.kill()  # and no worker either: the deadline passes while nothing runs
        server.start()
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        async with build_worker(client, task_queue, aws, sandboxed=True):
            final: DeploymentState = await entity(client, spec.deployment_id).result()
        assert final.phase is DeploymentPhase.DELETED and final.expired
        assert await asyncio.to_thread(inventory) == before
    finally:
        server.stop()


async def test_a_teardown_the_deadline_started_that_cannot_finish_reports_by_id(client: Client, aws):
    spec = fast_spec(ttl="1s")
    fault = InjectedFault("elbv2", "DeleteLoadBalancer").install(aws.session)
    async with running_worker(client, aws) as worker:
        created = await up(client, worker, spec)
        out = created.outputs
        assert out is not None, created.message
        status = await eventually(
            lambda: entity(client, spec.deployment_id).query(DeploymentWorkflow.status),
            lambda s: s.state.last is not None and s.state.last.operation is Operation.TEARDOWN,
            timeout=60,
        )
        last = status.state.last
        assert (last.outcome, status.state.phase, status.state.expired) == (
            Outcome.FAILED,
            DeploymentPhase.FAILED,
            True,
        )
        assert out.load_balancer_arn in (last.message or "") and "time-to-live ended" in (last.message or "")
        assert fault.failed >= 1

        fault.occurrences = set()  # the operator fixes what blocked it, then `down` finishes the job
        cli = Cli(client.service_client.config.target_host, worker.task_queue)
        done = await run(cli, "down", spec.deployment_id, "--json")
    assert done.code == EXIT_OK, done.stderr
    assert out.load_balancer_arn not in (await asyncio.to_thread(inventory))["load_balancers"]
