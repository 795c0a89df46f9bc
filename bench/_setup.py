"""What every benchmark needs: its own Temporal dev server and moto server, a worker whose boto3 session
carries the latency model, and specs whose timings are scaled like the profile.

Nothing here reaches AWS: the moto endpoint and dummy credentials are set before any client exists.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from _variants import SequentialDeployWorkflow  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities import AwsClients  # noqa: E402
from models.spec import DeploymentSpec, TimingSpec  # noqa: E402
from simulate.calls import CallCounter  # noqa: E402
from simulate.latency import LatencyModel  # noqa: E402
from simulate.profile import LatencyProfile  # noqa: E402
from tests.support.servers import free_port, isolate_aws, reset_moto, start_dev_server  # noqa: E402
from worker import build_worker  # noqa: E402

REGION = "ap-northeast-2"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
MIN_SECONDS = 0.001
"""Timing settings must be positive, also at scale 0."""


@dataclass
class Servers:
    client: Client
    moto_url: str

    def reset_aws(self) -> None:
        """An empty account, already set up: moto builds a region's defaults (default VPC, AMIs, SSM
        parameters) on its first call after a reset, about 1 s that AWS never charges."""
        reset_moto(self.moto_url)
        boto3.client("ec2", region_name=REGION).describe_vpcs()
        boto3.client("elbv2", region_name=REGION).describe_load_balancers()
        boto3.client("ssm", region_name=REGION).get_parameter(Name=AMI_PARAMETER)


@asynccontextmanager
async def servers() -> AsyncIterator[Servers]:
    """A moto server in this process and a Temporal dev server (the .venv binary), both on free ports."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    logging.getLogger("temporalio").setLevel(logging.ERROR)  # an injected failure is no warning here
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    isolate_aws(f"http://127.0.0.1:{port}", REGION)
    env = await start_dev_server()
    try:
        yield Servers(client=env.client, moto_url=f"http://127.0.0.1:{port}")
    finally:
        await env.shutdown()
        moto.stop()


@dataclass
class SimulatedAws:
    """One boto3 session with the latency model and the call counter, and the clients built from it."""

    aws: AwsClients
    model: LatencyModel
    counter: CallCounter


def simulated_aws(profile: LatencyProfile) -> SimulatedAws:
    session = boto3.Session()
    model = LatencyModel(profile).install(session)
    counter = CallCounter().install(session)
    return SimulatedAws(AwsClients(session), model, counter)


def bench_worker(client: Client, aws: AwsClients, extra_workflows: Sequence[type] = ()) -> Worker:
    """worker.py's worker on a fresh task queue, plus the baseline workflow that only benchmarks run."""
    return build_worker(
        client, f"bench-{uuid.uuid4()}", aws, extra_workflows=[SequentialDeployWorkflow, *extra_workflows]
    )


def scaled_spec(
    profile: LatencyProfile, poll_seconds: float | None = None, **overrides: Any
) -> DeploymentSpec:
    """The tutorial's defaults with the timing settings a user has on AWS, scaled like the profile.

    Polls and retry delays shrink with the profile (AWS's 5 s poll becomes 50 ms at scale 0.01);
    timeouts stay generous (a benchmark measures, it must not fail on a slow machine) and the
    heartbeat timeout stays at a few seconds (a 0.3 s heartbeat timeout would measure noise).
    """
    defaults = TimingSpec()

    def scaled(seconds: float) -> float:
        return max(seconds * profile.scale, MIN_SECONDS)

    timing = {
        "poll_interval_seconds": poll_seconds or scaled(defaults.poll_interval_seconds),
        "retry_initial_interval_seconds": scaled(defaults.retry_initial_interval_seconds),
        "retry_maximum_interval_seconds": scaled(defaults.retry_maximum_interval_seconds),
        "consistency_window_seconds": scaled(defaults.consistency_window_seconds),
        "heartbeat_timeout_seconds": 5,
        "call_timeout_seconds": 30,
        "nat_gateway_timeout_seconds": 120,
        "load_balancer_timeout_seconds": 120,
        "instance_timeout_seconds": 120,
        "targets_healthy_timeout_seconds": 120,
        "delete_timeout_seconds": 120,
    }
    values: dict[str, Any] = {"deployment_id": f"b-{uuid.uuid4().hex[:10]}", "timing": timing}
    values.update(overrides)
    return DeploymentSpec.model_validate(values)


async def timed(coroutine: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await coroutine
    return result, time.monotonic() - started


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
