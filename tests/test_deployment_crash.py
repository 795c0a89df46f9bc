"""A worker process SIGKILLed in the middle of a rolling replacement run by the deployment's workflow:
a new worker takes the rollout over and it completes with exactly the new instances (no extra one
left behind, none of the old ones), as `starter.py up` reports them.

`worker.py` processes on a moto made slow where a rollout waits (tests/support/slow_aws.py: an
instance's boot and its target's health check take seconds, on a clock every worker shares).
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from models.deployment import Operation
from tests.support.expected import TUTORIAL_COUNTS
from tests.support.inventory import added, inventory
from tests.support.processes import Cli, stop
from tests.support.specs import FAST_TIMING
from tests.support.waiting import eventually
from tests.test_deployment_workflow import entity
from workflows.converge import ConvergeWorkflow
from workflows.deployment import DeploymentWorkflow

CRASH_WORKER = "tests.support.crash_worker"
SLOW_AWS = {"instance_running": 1, "target_healthy": 3}
TIMING = {
    **FAST_TIMING,
    "poll_interval_seconds": 0.2,
    "heartbeat_timeout_seconds": 2,
    "call_timeout_seconds": 6,
}


def spec_file(tmp_path: Path, deployment_id: str) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"deployment_id": deployment_id, "timing": TIMING}))
    return str(path)


@pytest.mark.soak
async def test_worker_killed_mid_rollout_resumes_with_exactly_the_new_instances(client: Client, tmp_path):
    cli = Cli(client.service_client.config.target_host, f"crash-rollout-{uuid.uuid4()}")
    env = {"SLOW_AWS_DIR": str(tmp_path / "aws-clock"), "SLOW_AWS": json.dumps(SLOW_AWS)}
    deployment_id = f"crash-{uuid.uuid4().hex[:8]}"
    spec = spec_file(tmp_path, deployment_id)
    before = inventory()
    first = cli.worker(CRASH_WORKER, **env)
    second = None
    try:
        created = cli.run("up", "--spec", spec, "--json", timeout=180)
        assert created.code == 0, created.stderr
        old = set(created.json()["instance_ids"].values())
        rollout = cli.start("up", "--spec", spec, "--set", "instances.instance_type=t3.micro", "--json")
        status = await eventually(
            lambda: entity(client, deployment_id).query(DeploymentWorkflow.status),
            lambda s: s.running is Operation.CONVERGE,
            timeout=60,
        )
        child = client.get_workflow_handle_for(ConvergeWorkflow.run, status.child_workflow_id)
        await eventually(
            lambda: child.query(ConvergeWorkflow.progress),
            lambda p: p.step("healthy-batch-1").state == "running",
            timeout=60,
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = cli.worker(CRASH_WORKER, **env)
        stdout, stderr = rollout.communicate(timeout=240)

        assert rollout.returncode == 0, stderr
        result = json.loads(stdout)
        assert result["status"] == "COMPLETED" and result["operation"] == "converge"
        assert sorted(result["instance_ids"]) == ["app-0-g1", "app-1-g1"]
        new = set(result["instance_ids"].values())
        now = added(before, inventory())
        assert {kind: len(ids) for kind, ids in now.items()} == TUTORIAL_COUNTS
        assert now["instances"] == new and not new & old  # no extra instance, no old one left

        down = cli.run("down", deployment_id, "--json", timeout=180)
        assert down.code == 0, down.stderr
        assert inventory() == before
    finally:
        stop(first)
        if second is not None:
            stop(second)
