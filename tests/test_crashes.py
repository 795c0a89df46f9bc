"""Crashes at random moments: the worker process or the Temporal server SIGKILLed mid-deployment.

Each run deploys with `starter.py up` against `worker.py` processes on an AWS (moto) made as slow as the
real one (tests/support/slow_aws.py), kills the worker at a seeded random moment of the deployment or
of its rollback (a permanent failure injected in the worker makes it roll back), starts a new worker,
and checks that the deployment completed with exactly the tutorial's resources, the ones its result
names, or rolled back to the account as it was. The server runs do the same with a durable dev server
killed and started again. Most runs are `soak` (`make soak`); a few seeds also run in the default suite.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from models.plan import plan
from models.progress import DeploymentProgress, Phase, StepState
from models.spec import DeploymentSpec
from tests.support.expected import TUTORIAL_COUNTS, output_ids
from tests.support.faults import error_response
from tests.support.inventory import added, inventory
from tests.support.processes import Cli, stop
from tests.support.servers import DurableTemporal, free_port
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.waiting import eventually
from workflows.deploy import DeployWorkflow

CRASH_WORKER = "tests.support.crash_worker"
SLOW_AWS = {
    "nat_available": 4,
    "alb_active": 5,
    "instance_running": 2,
    "target_healthy": 2,
    "nat_deleted": 3,
    "instance_terminated": 2,
    "mutations": 0.3,
}
"""Seconds each state is held (slow_aws.TRANSITIONS), and the reply delay of every create and delete."""

TIMING = {
    **FAST_TIMING,
    "poll_interval_seconds": 0.2,
    "heartbeat_timeout_seconds": 2,
    "call_timeout_seconds": 6,
    "retry_maximum_attempts": 5,
}
JITTER_SECONDS = 1.0
"""The kill comes up to this long after the chosen step has begun: mid-call, mid-wait, or just after."""

STEPS = [step.key for step in plan(DeploymentSpec())]
FAILURES = ["elbv2.CreateListener#1", "elbv2.RegisterTargets#1", "ec2.RunInstances#2", "ec2.CreateRoute#1"]
"""Where a rollback run fails for good: late (everything to undo) or mid-way (siblings still running)."""

BEGUN = {StepState.RUNNING, StepState.DONE, StepState.FAILED, StepState.CANCELLED}
UNDOING = {StepState.COMPENSATING, StepState.COMPENSATED, StepState.LEFT_BEHIND}


def seeds(count: int, sample: set[int]) -> list:
    """`count` seeded runs, all in `make soak` except the `sample`, which the default suite runs."""
    return [
        pytest.param(seed, id=f"seed{seed}", marks=() if seed in sample else pytest.mark.soak)
        for seed in range(count)
    ]


@dataclass
class Run:
    """One crash run, for the line it prints (`pytest -s` shows them)."""

    kind: str
    seed: int
    target: str = ""
    landed: str = ""
    outcome: str = ""
    started: float = 0.0

    def report(self) -> None:
        seconds = time.monotonic() - self.started
        print(
            f"\ncrash run {self.kind} seed={self.seed} target={self.target} landed in [{self.landed}] "
            f"-> {self.outcome} in {seconds:.1f} s"
        )


@pytest.fixture
def cli(client: Client) -> Cli:
    return Cli(client.service_client.config.target_host, f"crash-{uuid.uuid4()}")


def spec_file(tmp_path: Path, deployment_id: str) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"deployment_id": deployment_id, "timing": TIMING}))
    return str(path)


def worker_env(tmp_path: Path, fail_at: str | None = None) -> dict[str, str]:
    env = {"SLOW_AWS_DIR": str(tmp_path / "aws-clock"), "SLOW_AWS": json.dumps(SLOW_AWS)}
    return {**env, "FAIL_AT": fail_at} if fail_at else env


async def progress_of(handle: WorkflowHandle) -> DeploymentProgress:
    return await handle.query(DeployWorkflow.progress, rpc_timeout=timedelta(seconds=5))


def at_work(progress: DeploymentProgress | None) -> str:
    """The steps running or being undone at a moment, else the phase: where a crash landed."""
    if progress is None:
        return "no answer"
    busy = [s.key for s in progress.steps if s.state in (StepState.RUNNING, StepState.COMPENSATING)]
    return f"{progress.phase.value}: {', '.join(busy) or '-'}"


async def reach_deploy_target(handle: WorkflowHandle, target: str) -> None:
    await eventually(lambda: progress_of(handle), lambda p: p.step(target).state in BEGUN, timeout=120)


async def reach_rollback_target(handle: WorkflowHandle, rng: random.Random) -> str:
    """Once rolling back, a compensation picked at random among the run's, except the last two to run
    (so that the crash still lands inside the rollback); returns its step once it has begun."""
    rolling = await eventually(
        lambda: progress_of(handle), lambda p: p.phase is Phase.ROLLING_BACK, timeout=120
    )
    kinds = {step.key: step.kind for step in plan(DeploymentSpec())}
    # Not the failed step: it shows `compensating` only for the instant its compensation runs, then
    # `failed` again, so a poll can miss it.
    undoable = [s for s in rolling.steps if kinds[s.key] is not None]
    registered = [s for s in undoable if s.state not in (StepState.PENDING, StepState.FAILED)]
    newest_first = [s.key for s in sorted(registered, key=lambda s: s.started_at, reverse=True)]
    target = rng.choice(newest_first[:-2])
    await eventually(lambda: progress_of(handle), lambda p: p.step(target).state in UNDOING, timeout=120)
    return target


async def crash_at_random(
    handle: WorkflowHandle, rng: random.Random, run: Run, crash: Callable[[], Awaitable[None]]
) -> DeploymentProgress | None:
    """The random moment itself is a sleep: the fault's timing, not a wait for a condition."""
    await asyncio.sleep(rng.uniform(0, JITTER_SECONDS))
    try:
        progress = await progress_of(handle)
    except Exception:  # noqa: BLE001 - an unanswered query only makes the record vaguer
        progress = None
    await crash()
    run.landed = at_work(progress)
    return progress


async def finish(starter: subprocess.Popen) -> tuple[int, dict, str]:
    stdout, stderr = await asyncio.to_thread(starter.communicate, timeout=240)
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    return starter.returncode, json.loads(stdout), stderr


def assert_completed_exactly(code: int, result: dict, stderr: str, before: dict[str, set[str]]) -> None:
    assert code == 0, stderr
    assert result["status"] == "COMPLETED"
    created = added(before, inventory())
    assert {kind: len(ids) for kind, ids in created.items()} == TUTORIAL_COUNTS
    for kind, ids in output_ids(result).items():
        assert created[kind] == ids, kind  # what exists is what the run reports: no twin anywhere


def assert_rolled_back(code: int, result: dict, stderr: str, before: dict[str, set[str]]) -> None:
    assert code == 1, stderr
    assert result["status"] == "FAILED"
    assert "UnauthorizedOperation" in result["error"]
    assert "everything created was rolled back" in result["error"]
    assert inventory() == before


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


# The worker process killed


async def worker_crash_run(
    client: Client, cli: Cli, tmp_path: Path, run: Run, fail_at: str | None
) -> tuple[int, dict, str, DeploymentProgress | None]:
    rng = random.Random(run.seed)
    deployment_id = f"crash-{uuid.uuid4().hex[:8]}"
    env = worker_env(tmp_path, fail_at)
    workers = [cli.worker(CRASH_WORKER, **env)]
    try:
        starter = cli.start("up", "--spec", spec_file(tmp_path, deployment_id), "--json")
        handle = client.get_workflow_handle(f"deploy-{deployment_id}")
        if fail_at is None:
            await reach_deploy_target(handle, run.target)
        else:
            run.target = await reach_rollback_target(handle, rng)

        async def crash() -> None:
            kill(workers[0])
            workers.append(cli.worker(CRASH_WORKER, **worker_env(tmp_path)))  # without the failure

        at_kill = await crash_at_random(handle, rng, run, crash)
        code, result, stderr = await finish(starter)
        return code, result, stderr, at_kill
    finally:
        for process in workers:
            stop(process)


@pytest.mark.parametrize("seed", seeds(20, sample={5, 9}))
async def test_worker_killed_at_a_random_moment_of_a_deployment(client, cli: Cli, tmp_path, seed: int):
    run = Run("worker/deploy", seed, target=STEPS[seed % len(STEPS)], started=time.monotonic())
    before = inventory()
    code, result, stderr, at_kill = await worker_crash_run(client, cli, tmp_path, run, None)
    run.outcome = result["status"]
    run.report()
    assert at_kill is not None and at_kill.phase is not Phase.COMPLETED  # the crash hit a live run
    assert_completed_exactly(code, result, stderr, before)


@pytest.mark.parametrize("seed", seeds(9, sample={2}))
async def test_worker_killed_at_a_random_moment_of_a_rollback(client, cli: Cli, tmp_path, seed: int):
    fail_at = FAILURES[seed % len(FAILURES)]
    run = Run(f"worker/rollback({fail_at})", seed, started=time.monotonic())
    before = inventory()
    code, result, stderr, at_kill = await worker_crash_run(client, cli, tmp_path, run, fail_at)
    run.outcome = result["status"]
    run.report()
    assert at_kill is not None and at_kill.phase is Phase.ROLLING_BACK  # the crash hit the rollback
    assert_rolled_back(code, result, stderr, before)


# The Temporal server killed


SERVER_RUNS = [(0, None), (1, None), (2, None), (3, None), (4, "elbv2.CreateListener#1")]


@pytest.mark.soak
@pytest.mark.parametrize(("seed", "fail_at"), SERVER_RUNS, ids=[f"seed{s}" for s, _ in SERVER_RUNS])
async def test_server_killed_at_a_random_moment_and_restarted(cli: Cli, tmp_path, seed: int, fail_at):
    """The durable dev server is SIGKILLed and started again after a random outage of 1-10 s."""
    rng = random.Random(seed)
    run = Run("server/" + ("rollback" if fail_at else "deploy"), seed, started=time.monotonic())
    server = DurableTemporal(tmp_path / "temporal.db", free_port())
    server.start()
    cli = Cli(server.address, cli.env["TEMPORAL_TASK_QUEUE"])
    deployment_id = f"crash-{uuid.uuid4().hex[:8]}"
    before = inventory()
    worker = cli.worker(CRASH_WORKER, **worker_env(tmp_path, fail_at))
    try:
        starter = cli.start("up", "--spec", spec_file(tmp_path, deployment_id), "--json")
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        handle = client.get_workflow_handle(f"deploy-{deployment_id}")
        if fail_at is None:
            run.target = rng.choice(["nat-ap-northeast-2a", "alb", "app-0", "healthy"])
            await reach_deploy_target(handle, run.target)
        else:
            run.target = await reach_rollback_target(handle, rng)
        outage = rng.uniform(1, 10)

        async def crash() -> None:
            server.kill()
            await asyncio.sleep(outage)  # the outage's length is the fault itself
            server.start()

        at_kill = await crash_at_random(handle, rng, run, crash)
        run.landed += f"; outage {outage:.1f} s"
        code, result, stderr = await finish(starter)
        run.outcome = result["status"]
        run.report()
        assert at_kill is not None and at_kill.phase in (Phase.CREATING, Phase.ROLLING_BACK)
        if fail_at is None:
            assert_completed_exactly(code, result, stderr, before)
        else:
            assert_rolled_back(code, result, stderr, before)
    finally:
        stop(worker)
        server.stop()


# A sibling still creating when its branch fails


class SlowSibling:
    """The first CreateSubnet fails for good; the second is slow (the fault) and then goes through."""

    def __init__(self, session, seconds: float) -> None:
        self.seconds, self.calls = seconds, 0
        self.second_done = threading.Event()
        session.events.register("before-call.ec2.CreateSubnet", self._before)
        session.events.register("after-call.ec2.CreateSubnet", self._after)

    def _before(self, **_) -> tuple | None:
        self.calls += 1
        if self.calls == 1:
            return error_response("UnauthorizedOperation", "injected by the test")
        time.sleep(self.seconds)
        return None

    def _after(self, http_response, **_) -> None:
        if self.calls >= 2 and http_response.status_code == 200:
            self.second_done.set()


async def test_a_sibling_create_that_lands_after_the_failure_is_rolled_back(client, aws, worker):
    slow = SlowSibling(aws.session, seconds=3)
    before = inventory()
    spec = fast_spec()
    handle = await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    await eventually(lambda: asyncio.to_thread(slow.second_done.is_set), bool, timeout=30)
    assert inventory() == before
