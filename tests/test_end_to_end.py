"""As a user runs it: worker.py and starter.py as processes, a real dev server, moto as AWS.

The worker is SIGKILLed in the middle of a deployment (while it waits for the NAT gateway, which the
test makes slow as on AWS); a new worker picks the deployment up and it completes with no duplicates.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.support.expected import TUTORIAL_COUNTS
from tests.support.inventory import added, inventory
from tests.support.processes import Cli, stop
from tests.support.servers import DurableTemporal, free_port
from tests.support.specs import FAST_TIMING
from tests.support.waiting import eventually
from workflows.deploy import DeployWorkflow

OUTAGE_SECONDS = 12


@pytest.fixture
def cli(client: Client) -> Cli:
    return Cli(client.service_client.config.target_host, f"e2e-{uuid.uuid4()}")


def spec_file(tmp_path, deployment_id: str) -> str:
    path = tmp_path / "spec.json"
    timing = {**FAST_TIMING, "heartbeat_timeout_seconds": 2, "poll_interval_seconds": 0.2}
    path.write_text(json.dumps({"deployment_id": deployment_id, "timing": timing}))
    return str(path)


async def test_worker_killed_mid_deployment_resumes_without_duplicates(client, cli: Cli, tmp_path):
    deployment_id = f"e2e-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, deployment_id)
    before = inventory()
    first_worker = cli.worker(SLOW_NAT_SECONDS="6")
    second_worker = None
    try:
        starter = cli.start("up", "--spec", spec, "--json")
        handle = client.get_workflow_handle(f"deploy-{deployment_id}")
        await eventually(
            lambda: handle.query(DeployWorkflow.progress),
            lambda p: p.step("nat-ap-northeast-2a").state == "running",
            timeout=60,
        )
        first_worker.send_signal(signal.SIGKILL)
        first_worker.wait()
        second_worker = cli.worker(SLOW_NAT_SECONDS="6")
        stdout, stderr = starter.communicate(timeout=180)

        assert starter.returncode == 0, stderr
        result = json.loads(stdout)
        assert result["status"] == "COMPLETED" and result["deployment_id"] == deployment_id
        # The deployment's workflow; its create ran as the child `deploy-<id>` (retry, status, cancel).
        assert result["workflow_id"] == f"deployment-{deployment_id}"
        assert result["operation_workflow_id"] == f"deploy-{deployment_id}"
        assert result["alb_dns_name"].endswith(".elb.amazonaws.com")
        assert len(result["instance_ids"]) == 2 and len(result["nat_gateway_ids"]) == 1
        assert "Traceback" not in stderr
        created = {kind: len(ids) for kind, ids in added(before, inventory()).items()}
        assert created == TUTORIAL_COUNTS

        again = cli.run("up", "--spec", spec, "--json")
        assert again.code == 0, again.stderr
        assert again.json()["instance_ids"] == result["instance_ids"]
        assert {kind: len(ids) for kind, ids in added(before, inventory()).items()} == TUTORIAL_COUNTS

        status = cli.run("status", deployment_id, "--json")
        assert status.code == 0 and status.json()["status"] == "COMPLETED"
        assert status.json()["load_balancer_arn"] == result["load_balancer_arn"]

        down = cli.run("down", deployment_id, "--json")
        assert down.code == 0, down.stderr
        deleted = {item["id"] for item in down.json()["deleted"]}
        assert set(result["instance_ids"].values()) <= deleted
        assert inventory() == before

        down_again = cli.run("down", deployment_id, "--json")
        assert down_again.code == 0 and down_again.json()["deleted"] == []

        second_worker.send_signal(signal.SIGTERM)
        assert second_worker.wait(timeout=40) == 0  # graceful shutdown, clean exit code
    finally:
        stop(first_worker)
        if second_worker is not None:
            stop(second_worker)


async def test_cancel_from_the_command_line_rolls_back(client, cli: Cli, tmp_path):
    deployment_id = f"e2e-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, deployment_id)
    before = inventory()
    worker = cli.worker(SLOW_NAT_SECONDS="600")
    try:
        started = cli.run("up", "--spec", spec, "--no-wait", "--json")
        assert started.code == 0 and started.json()["status"] == "RUNNING"
        handle = client.get_workflow_handle(f"deploy-{deployment_id}")
        await eventually(
            lambda: handle.query(DeployWorkflow.progress),
            lambda p: p.step("nat-ap-northeast-2a").state == "running",
            timeout=60,
        )
        attached = cli.run("up", "--spec", spec, "--no-wait", "--json")
        assert attached.code == 0 and "attaching to the running deployment" in attached.stderr
        runs = [r async for r in client.list_workflows(f"WorkflowId = 'deploy-{deployment_id}'")]
        assert len(runs) == 1  # attached, not started twice

        # The run tells its story in the UI: summary, details, and the step now running.
        description = await handle.describe()
        assert await description.static_summary() == f"Deploy {deployment_id} to ap-northeast-2"
        assert "NAT mode single" in (await description.static_details() or "")
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "running: NAT gateway in ap-northeast-2a" in metadata.current_details

        listed = cli.run("list", "--json")
        assert deployment_id in {d["deployment_id"] for d in listed.json()["deployments"]}

        cancelled = cli.run("cancel", deployment_id, "--json")
        assert cancelled.code == 0, cancelled.stderr
        assert cancelled.json()["status"] == "CANCELLED"
        assert inventory() == before
        status = cli.run("status", deployment_id, "--json")
        assert status.json()["status"] == "CANCELED"
    finally:
        stop(worker)


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["up", "--bogus"], {}, 2, "unrecognized arguments: --bogus"),
        (["launch"], {}, 2, "invalid choice: 'launch'"),
        (["up", "--set", "instances.count=0"], {}, 2, "instances.count: Input should be greater"),
        (["up", "--id", "Bad_Id"], {}, 2, "deployment_id"),
        (["up", "--spec", "/nonexistent.yaml"], {}, 2, "does not exist"),
        (["status", "no-such-deployment"], {}, 4, "no deployment named 'no-such-deployment'"),
        (["down", "x"], {"TEMPORAL_ADDRESS": "127.0.0.1:1"}, 2, "cannot reach the Temporal server"),
        (["list"], {"TEMPORAL_NAMESPACE": "no-such-namespace"}, 2, "refused the request"),
    ],
)
def test_user_errors_are_one_paragraph_without_traceback(cli: Cli, args, env, code, message):
    before = inventory()
    finished = cli.run(*args, timeout=60, **env)
    assert finished.code == code, finished.stderr
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr
    assert inventory() == before


async def test_server_restart_mid_deployment_resumes(cli: Cli, tmp_path):
    """The durable dev server is killed while the NAT gateway is pending and started again."""
    server = DurableTemporal(tmp_path / "temporal.db", free_port())
    server.start()
    cli = Cli(server.address, cli.env["TEMPORAL_TASK_QUEUE"])
    deployment_id = f"e2e-{uuid.uuid4().hex[:8]}"
    before = inventory()
    worker = cli.worker(SLOW_NAT_SECONDS="8")
    try:
        starter = cli.start("up", "--spec", spec_file(tmp_path, deployment_id), "--json")
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        handle = client.get_workflow_handle(f"deploy-{deployment_id}")
        await eventually(
            lambda: handle.query(DeployWorkflow.progress),
            lambda p: p.step("nat-ap-northeast-2a").state == "running",
            timeout=60,
        )
        server.kill()
        await asyncio.sleep(OUTAGE_SECONDS)  # the fault's duration: longer than the client's own retries
        server.start()
        stdout, stderr = starter.communicate(timeout=180)

        assert starter.returncode == 0, stderr
        assert "Temporal server unreachable" in stderr  # the outage outlasted the client's retries
        assert json.loads(stdout)["status"] == "COMPLETED"  # stdout stays one JSON object
        assert {kind: len(ids) for kind, ids in added(before, inventory()).items()} == TUTORIAL_COUNTS
    finally:
        stop(worker)
        server.stop()


def test_failed_deployment_exits_1_naming_step_and_fix(cli: Cli, tmp_path):
    worker = cli.worker("worker")
    try:
        before = inventory()
        failed = cli.run(
            "up", "--spec", spec_file(tmp_path, f"e2e-{uuid.uuid4().hex[:8]}"),
            "--set", "instances.ami_id=ami-0123456789abcdef0", "--json",
        )  # fmt: skip
        assert failed.code == 1, failed.stderr
        result = failed.json()
        assert result["status"] == "FAILED" and result["alb_dns_name"] is None
        assert "step 'preflight'" in result["error"]
        assert (
            "AMI ami-0123456789abcdef0 does not exist in ap-northeast-2; fix instances.ami_id"
            in result["error"]
        )
        assert "Traceback" not in failed.stderr
        assert inventory() == before
    finally:
        stop(worker)
