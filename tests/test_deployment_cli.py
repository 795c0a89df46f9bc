"""`starter.py` through the deployment's long-lived workflow, as an operator runs it: a deployment made
by a standalone `deploy-<id>` run (before that workflow) adopted by `up` and converged; `status` and
`outputs` show the converged fleet; an `up` during a rollout is rejected (exit 5, nothing changed);
`down` during the rollout stops it (rolled back) and removes everything.

The worker runs in the test process (the test holds target health to keep a rollout running);
`starter.py` runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client

from cli.commands import Output, start_deployment
from models.deployment import Operation
from tests.support.held_health import HeldHealth
from tests.support.inventory import inventory
from tests.support.processes import Cli
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from tests.test_cli_operations import run, spec_file
from tests.test_deployment_workflow import entity
from workflows import search_attributes
from workflows.deployment import DeploymentWorkflow

EXIT_OK, EXIT_NOT_APPLICABLE = 0, 5


async def test_up_adopts_a_standalone_deployment_then_status_outputs_and_down_follow_it(
    client: Client, worker, tmp_path, monkeypatch
):
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"adopt-{uuid.uuid4().hex[:8]}"
    before = await asyncio.to_thread(inventory)
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", worker.task_queue)
    legacy = await start_deployment(client, fast_spec(deployment_id=deployment_id), Output(as_json=True))
    old = await legacy.result()  # as `up` ran it before the long-lived workflow: deploy-<id>, alone
    spec = spec_file(tmp_path, deployment_id)

    grown = await run(cli, "up", "--spec", spec, "--set", "instances.count=3", "--json")

    assert grown.code == EXIT_OK, grown.stderr
    result = grown.json()
    assert result["status"] == "COMPLETED" and result["operation"] == "converge"
    assert result["workflow_id"] == f"deployment-{deployment_id}"
    assert result["alb_dns_name"] == old.alb_dns_name  # the same deployment, adopted
    assert sorted(result["instance_ids"]) == ["app-0", "app-1", "app-2-g1"]
    assert set(old.instance_ids.values()) < set(result["instance_ids"].values())
    state = (await entity(client, deployment_id).query(DeploymentWorkflow.status)).state
    assert state.adopted_from == f"deploy-{deployment_id}"
    described = await entity(client, deployment_id).describe()  # the UI's and `list`'s filters
    attributes = described.typed_search_attributes
    assert attributes.get(search_attributes.DEPLOYMENT_ID) == deployment_id
    assert attributes.get(search_attributes.DEPLOYMENT_PHASE) == "ready"

    status = await run(cli, "status", deployment_id, "--json")
    assert status.code == EXIT_OK and status.json()["status"] == "COMPLETED"
    assert status.json()["instance_ids"] == result["instance_ids"]  # the converged fleet, not the create's
    assert status.json()["last_operation"]["operation"] == "converge"
    outputs = await run(cli, "outputs", deployment_id)
    assert outputs.code == EXIT_OK and outputs.json()["instance_ids"] == result["instance_ids"]

    down = await run(cli, "down", deployment_id, "--json")
    assert down.code == EXIT_OK, down.stderr
    assert down.json()["status"] == "DELETED"
    assert set(result["instance_ids"].values()) <= {item["id"] for item in down.json()["deleted"]}
    assert await asyncio.to_thread(inventory) == before


async def test_up_during_a_rollout_is_rejected_and_down_stops_it_and_removes_everything(
    client: Client, aws, worker, tmp_path
):
    held = HeldHealth(aws.session)
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"roll-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, deployment_id)
    before = await asyncio.to_thread(inventory)
    created = await run(cli, "up", "--spec", spec, "--json")
    assert created.code == EXIT_OK, created.stderr
    held.serving, held.held = set(created.json()["instance_ids"].values()), True

    rollout = asyncio.ensure_future(
        run(cli, "up", "--spec", spec, "--set", "instances.instance_type=t3.micro", "--json")
    )
    await eventually(
        lambda: entity(client, deployment_id).query(DeploymentWorkflow.status),
        lambda s: s.running is Operation.CONVERGE,
    )
    deployed = await asyncio.to_thread(inventory)

    second = await run(cli, "up", "--spec", spec, "--set", "instances.count=3", "--json")

    assert second.code == EXIT_NOT_APPLICABLE, second.stderr
    assert second.json()["status"] == "REJECTED" and "is busy: a converge runs" in second.json()["error"]
    assert "Traceback" not in second.stderr
    assert (await asyncio.to_thread(inventory))["instances"] >= deployed["instances"]  # nothing stopped

    down = await run(cli, "down", deployment_id, "--json")

    assert down.code == EXIT_OK, down.stderr
    assert "cancelling the running converge" in down.stderr
    stopped = await rollout
    assert stopped.code == 1 and stopped.json()["status"] == "CANCELLED", stopped.stderr
    assert await asyncio.to_thread(inventory) == before


async def test_cancel_of_a_rollout_puts_the_previous_instances_back(client: Client, aws, worker, tmp_path):
    held = HeldHealth(aws.session)
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"undo-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, deployment_id)
    created = await run(cli, "up", "--spec", spec, "--json")
    assert created.code == EXIT_OK, created.stderr
    deployed = await asyncio.to_thread(inventory)
    held.serving, held.held = set(created.json()["instance_ids"].values()), True

    started = await run(
        cli, "up", "--spec", spec, "--set", "instances.instance_type=t3.micro", "--no-wait", "--json"
    )
    assert started.code == EXIT_OK and started.json()["status"] == "RUNNING", started.stderr
    await eventually(
        lambda: entity(client, deployment_id).query(DeploymentWorkflow.status),
        lambda s: s.running is Operation.CONVERGE,
    )

    cancelled = await run(cli, "cancel", deployment_id, "--json")

    assert cancelled.code == EXIT_OK, cancelled.stderr
    assert cancelled.json()["status"] == "CANCELLED" and cancelled.json()["operation"] == "converge"
    assert await asyncio.to_thread(inventory) == deployed  # exactly the previous instances
    status = await run(cli, "status", deployment_id, "--json")
    assert (
        status.json()["status"] == "COMPLETED" and status.json()["last_operation"]["outcome"] == "cancelled"
    )
    assert status.json()["instance_ids"] == created.json()["instance_ids"]
