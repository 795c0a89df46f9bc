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

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from cli.commands import Output, start_deployment
from models.deployment import DeploymentState, Operation, workflow_id
from tests.support.held_health import HeldHealth
from tests.support.inventory import inventory
from tests.support.processes import Cli, Finished
from tests.support.servers import DurableTemporal, free_port
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from tests.test_cli_operations import run, spec_file
from tests.test_deployment_workflow import entity
from workflows import search_attributes
from workflows.deployment import DeploymentWorkflow

EXIT_OK, EXIT_BAD_INPUT, EXIT_NOT_APPLICABLE = 0, 2, 5


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

    listed = await eventually(
        lambda: run(cli, "list", "--phase", "ready", "--json"), lambda r: deployment_id in rows_of(r)
    )
    (row,) = rows_of(listed)[deployment_id]  # once: not again as its adopted deploy-<id> run
    assert (row["workflow_id"], row["phase"], row["standalone"]) == (
        f"deployment-{deployment_id}",
        "ready",
        False,
    )
    assert row["region"] == "ap-northeast-2"

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


def rows_of(listed: Finished) -> dict[str, list[dict]]:
    """`list --json`'s deployments by id (a list each, to show that each is listed once)."""
    if listed.code != EXIT_OK:
        return {}
    found: dict[str, list[dict]] = {}
    for row in listed.json()["deployments"]:
        found.setdefault(row["deployment_id"], []).append(row)
    return found


async def idle_deployment(client: Client, deployment_id: str, queue: str, drifted: bool) -> WorkflowHandle:
    """A deployment workflow no worker runs (its queue has none): visibility lists it with the search
    attributes it started with, as a drift check would have set them."""
    attributes = search_attributes.at_start(deployment_id, "new").search_attributes
    return await client.start_workflow(
        DeploymentWorkflow.run,
        DeploymentState(deployment_id=deployment_id, region="ap-northeast-2"),
        id=workflow_id(deployment_id),
        task_queue=queue,
        memo={"deployment_id": deployment_id, "region": "ap-northeast-2"},
        search_attributes=TypedSearchAttributes(
            [*attributes, SearchAttributePair(search_attributes.DEPLOYMENT_DRIFT, drifted)]
        ),
    )


async def test_list_shows_deployment_workflows_and_standalone_runs_once_and_filters_the_drifted(
    client: Client, tmp_path, monkeypatch
):
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    cli = Cli(client.service_client.config.target_host, queue)
    drifted, clean, alone = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("drift", "clean", "alone"))
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", queue)
    handles = [
        await idle_deployment(client, drifted, queue, drifted=True),
        await idle_deployment(client, clean, queue, drifted=False),
        await start_deployment(client, fast_spec(deployment_id=alone), Output(as_json=True)),
    ]
    try:
        listed = await eventually(
            lambda: run(cli, "list", "--json"), lambda r: {drifted, clean, alone} <= set(rows_of(r))
        )
        rows = rows_of(listed)
        assert [len(rows[name]) for name in (drifted, clean, alone)] == [1, 1, 1]
        (row,) = rows[drifted]
        assert (row["workflow_id"], row["phase"], row["drifted"]) == (f"deployment-{drifted}", "new", True)
        assert (row["region"], row["standalone"], row["status"]) == ("ap-northeast-2", False, "RUNNING")
        assert rows[clean][0]["drifted"] is False
        (row,) = rows[alone]
        assert (row["workflow_id"], row["standalone"], row["drifted"]) == (f"deploy-{alone}", True, None)

        only_drifted = await run(cli, "list", "--drifted", "--json")
        assert only_drifted.code == EXIT_OK, only_drifted.stderr
        assert drifted in rows_of(only_drifted) and not {clean, alone} & set(rows_of(only_drifted))
        new = await run(cli, "list", "--phase", "new", "--json")
        assert {drifted, clean} <= set(rows_of(new)) and alone not in rows_of(new)
        table = await run(cli, "list", "--drifted")
        assert table.code == EXIT_OK and drifted in table.stdout and clean not in table.stdout
        assert "Traceback" not in table.stderr
    finally:
        for handle in handles:
            await handle.terminate("test: listed, never run")


def test_list_on_a_namespace_without_the_search_attributes_says_how_to_register_them(tmp_path):
    server = DurableTemporal(tmp_path / "temporal.db", free_port())  # no --search-attribute flags
    server.start()
    try:
        cli = Cli(server.address, f"bare-{uuid.uuid4().hex[:8]}")
        listed = cli.run("list", "--json")
        assert listed.code == EXIT_OK and listed.json() == {"deployments": []}, listed.stderr
        for flags in (["--drifted"], ["--phase", "ready"]):
            refused = cli.run("list", *flags)
            assert refused.code == EXIT_BAD_INPUT, (flags, refused.stderr)
            assert "register the DeploymentPhase and DeploymentDrift search attributes" in refused.stderr
            assert "docs/temporal-connection.md" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        server.stop()
