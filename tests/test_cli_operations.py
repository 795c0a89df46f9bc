"""The operator's commands as processes: a paused `up`, then `status`, `retry`, `outputs`, `watch`, `list`.

The worker runs in the test process (so the test can remove the injected cause while the run is
paused); `starter.py` runs as a subprocess, as an operator or a CI pipeline runs it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from temporalio.client import Client

from activities import AwsClients
from tests.support.faults import InjectedFault
from tests.support.inventory import added, inventory
from tests.support.processes import Cli, Finished
from tests.support.specs import FAST_TIMING
from tests.support.waiting import eventually

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PAUSED, EXIT_UNKNOWN = 0, 1, 2, 3, 4


async def run(cli: Cli, *args: str) -> Finished:
    """In a thread: the in-process worker shares this event loop and must keep running."""
    return await asyncio.to_thread(cli.run, *args)


def listed_ids(listed: Finished) -> list[str]:
    """`list --json`'s deployment ids, in its order (an id twice would show twice)."""
    return [row["deployment_id"] for row in listed.json()["deployments"]] if listed.code == EXIT_OK else []


def spec_file(tmp_path, deployment_id: str) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"deployment_id": deployment_id, "timing": FAST_TIMING}))
    return str(path)


async def test_paused_up_then_retry_from_the_command_line(client: Client, aws: AwsClients, worker, tmp_path):
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"ops-{uuid.uuid4().hex[:8]}"
    fault = InjectedFault("elbv2", "CreateListener").install(aws.session)
    before = inventory()

    up = await run(cli, "up", "--spec", spec_file(tmp_path, deployment_id), "--on-failure", "pause", "--json")
    assert up.code == EXIT_PAUSED, up.stderr
    paused = up.json()
    assert paused["status"] == "PAUSED" and "UnauthorizedOperation" in paused["error"]
    assert f"starter.py retry {deployment_id}" in up.stderr and "Traceback" not in up.stderr
    assert "no worker polls" not in up.stderr
    assert added(before, inventory())  # what was created so far is kept

    status = await run(cli, "status", deployment_id, "--json")
    assert status.code == EXIT_OK and status.json()["status"] == "PAUSED"
    assert status.json()["progress"]["failed_step"] == "listener-80"

    too_early = await run(cli, "outputs", deployment_id)
    assert too_early.code == EXIT_FAILED and "not COMPLETED" in too_early.stderr

    fault.occurrences = set()
    retry = await run(cli, "retry", deployment_id, "--json")
    assert retry.code == EXIT_OK, retry.stderr
    assert retry.json()["status"] == "COMPLETED" and retry.json()["alb_dns_name"]

    outputs = await run(cli, "outputs", deployment_id)
    assert outputs.code == EXIT_OK
    assert outputs.json()["listener_arn"] == retry.json()["listener_arn"]

    watch = await run(cli, "watch", deployment_id, "--json")
    assert watch.code == EXIT_OK and watch.json()["status"] == "COMPLETED"

    listed = await eventually(
        lambda: run(cli, "list", "--phase", "ready", "--json"), lambda r: deployment_id in listed_ids(r)
    )
    (row,) = [row for row in listed.json()["deployments"] if row["deployment_id"] == deployment_id]
    assert (row["workflow_id"], row["phase"]) == (f"deployment-{deployment_id}", "ready")
    create = await run(cli, "list", "--phase", "completed", "--json")  # its create, a child: not listed
    assert create.code == EXIT_OK and deployment_id not in listed_ids(create)

    again = await run(cli, "rollback", deployment_id)
    assert again.code == EXIT_BAD_INPUT and "not paused" in again.stderr


async def test_paused_up_then_rollback_from_the_command_line(
    client: Client, aws: AwsClients, worker, tmp_path
):
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"ops-{uuid.uuid4().hex[:8]}"
    InjectedFault("ec2", "RunInstances").install(aws.session)
    before = inventory()

    up = await run(cli, "up", "--spec", spec_file(tmp_path, deployment_id), "--on-failure", "pause")
    assert up.code == EXIT_PAUSED, up.stderr

    rollback = await run(cli, "rollback", deployment_id, "--json")
    assert rollback.code == EXIT_OK, rollback.stderr
    assert rollback.json()["status"] == "FAILED" and "rollback requested" in rollback.json()["error"]
    assert inventory() == before

    unknown = await run(cli, "retry", f"no-such-{uuid.uuid4().hex[:6]}")
    assert unknown.code == EXIT_UNKNOWN and "Traceback" not in unknown.stderr


async def test_up_says_when_no_worker_polls_its_task_queue(client: Client, tmp_path):
    """Without a worker the run would wait in silence: `up` names the task queue nobody polls."""
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    deployment_id = f"ops-{uuid.uuid4().hex[:8]}"
    cli = Cli(client.service_client.config.target_host, queue)

    up = await run(cli, "up", "--spec", spec_file(tmp_path, deployment_id), "--no-wait", "--json")

    assert up.code == EXIT_OK, up.stderr
    assert up.json()["status"] == "RUNNING"
    assert f"no worker polls task queue '{queue}'" in up.stderr and "python worker.py" in up.stderr
    # The deployment's long-lived workflow started with the spec in its input (no worker to accept an update).
    await client.get_workflow_handle(f"deployment-{deployment_id}").terminate("test: no worker on purpose")


async def test_cancel_whose_rollback_leaves_something_says_so_and_fails(
    client: Client, aws: AwsClients, worker, tmp_path
):
    """A compensation that fails for good: `cancel` exits non-zero and lists the leftovers by id,
    and so does `status`; `down` then removes them."""
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"ops-{uuid.uuid4().hex[:8]}"
    InjectedFault("ec2", "RunInstances").install(aws.session)
    undeletable = InjectedFault("ec2", "DeleteSecurityGroup").install(aws.session)
    before = inventory()
    up = await run(cli, "up", "--spec", spec_file(tmp_path, deployment_id), "--on-failure", "pause")
    assert up.code == EXIT_PAUSED, up.stderr
    groups = added(before, inventory())["security_groups"]

    cancel = await run(cli, "cancel", deployment_id, "--json")

    assert cancel.code == EXIT_FAILED, cancel.stderr
    result = cancel.json()
    assert result["status"] == "CANCELLED" and "rollback could not delete" in result["error"]
    assert all(group in result["error"] for group in groups)  # by id
    assert {entry.split(" ")[0] for entry in result["left_behind"]} == {"sg-alb", "sg-app"}
    assert "Traceback" not in cancel.stderr
    status = await run(cli, "status", deployment_id, "--json")
    assert status.json()["status"] == "CANCELED" and len(status.json()["left_behind"]) == 2

    undeletable.occurrences = set()
    removed = await run(cli, "down", deployment_id, "--json")
    assert removed.code == EXIT_OK, removed.stderr
    assert inventory() == before
