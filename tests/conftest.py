"""Real servers for the whole session: a moto server as AWS, a Temporal dev server as Temporal.

Each test gets an empty AWS account (moto reset) and its own task queue, so tests never see each
other's state. Nothing here reaches the network: the AWS endpoint and dummy credentials are set first.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import AwsClients
from tests.support.dataplane import RunningDataPlane, running_dataplane
from tests.support.servers import free_port, reset_moto, start_dev_server, start_moto
from tests.support.workers import running_worker

REGION = "ap-northeast-2"


ACM_VALIDATION_WAIT_SECONDS = 1
"""moto issues a certificate this long after its request (its default, 60 s, would stall every HTTPS
test); whole seconds: moto reads the setting as an int."""


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # For this session's moto server, and any that processes this session start.
    os.environ["MOTO_ACM_VALIDATION_WAIT"] = str(ACM_VALIDATION_WAIT_SECONDS)
    port = free_port()
    server = start_moto(port, tmp_path_factory.mktemp("moto") / "moto.log")
    url = f"http://127.0.0.1:{port}"
    warm_up(url)
    yield url
    server.terminate()
    server.wait(timeout=30)


def warm_up(url: str) -> None:
    """moto builds a region's backends on their first call (EC2: 1.4 s here), longer than a quick
    step's read timeout under FAST_TIMING (activities/aws_clients.py: 1.9 s); a reset keeps them
    built. So the session pays it here, not whichever test calls first."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    session.client("ec2", endpoint_url=url).describe_vpcs()
    session.client("elbv2", endpoint_url=url).describe_load_balancers()


@pytest.fixture(scope="session", autouse=True)
def aws_environment(moto_url: str) -> Iterator[None]:
    """Dummy credentials and the moto endpoint, for this process and the processes it starts."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ENDPOINT_URL", moto_url)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_REGION", REGION)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(autouse=True)
def empty_account(moto_url: str) -> None:
    reset_moto(moto_url)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
async def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def aws() -> AwsClients:
    """A fresh session per test: fault hooks registered on it reach every client it builds."""
    return AwsClients(boto3.Session())


@pytest.fixture
def ec2() -> object:
    return boto3.client("ec2", region_name=REGION)


@pytest.fixture
def elbv2() -> object:
    return boto3.client("elbv2", region_name=REGION)


@pytest.fixture
async def worker(client: Client, aws: AwsClients) -> AsyncIterator[Worker]:
    async with running_worker(client, aws) as running:
        yield running


@pytest.fixture
def dataplane(moto_url: str, tmp_path: Path) -> Iterator[RunningDataPlane]:
    """The local data plane in front of the session's moto (tests/support/dataplane.py), for tests
    whose traffic, health checks or draining matter."""
    with running_dataplane(moto_url, tmp_path / "dataplane.log") as plane:
        yield plane


@pytest.fixture
def plane_aws(dataplane: RunningDataPlane, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    """Activities' clients that reach moto through the data plane, so it learns of every change at
    once (a terminated instance drains before its next request)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", dataplane.url)
    return AwsClients(boto3.Session())
