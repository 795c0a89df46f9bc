"""scripts/aws_smoke.py, the real-AWS acceptance run, held against moto with its test-only flag.

Its refusals run it as a user would, as a process; the runs that deploy use the session's moto and
Temporal servers and the product's worker.py as a process. Nothing here leaves 127.0.0.1: the HTTP
step is skipped under the endpoint override, and its own test asks a local server.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest
from temporalio.testing import WorkflowEnvironment

from models.naming import DEPLOYMENT_TAG, RESOURCE_TAG
from models.spec import DeploymentSpec
from scripts import aws_smoke
from scripts import aws_smoke_timing as timing
from scripts.aws_smoke_checks import SmokeFailure, wait_for_app
from simulate.profile import load_profile
from tests.support.inventory import REGION, added, inventory
from tests.support.processes import ROOT, Cli, stop
from tests.support.servers import free_port
from tests.support.specs import FAST_TIMING
from tests.support.waiting import eventually
from workflows.deploy import DeployWorkflow

SCRIPT = str(ROOT / "scripts" / "aws_smoke.py")
CHECKS = 6
TEST_ONLY = aws_smoke.TEST_ONLY_FLAG


def smoke(cli: Cli, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=ROOT,
        env=cli.env if env is None else env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def one_paragraph(done: subprocess.CompletedProcess, starts: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {starts}"), done.stderr


@pytest.fixture(scope="module")
def cli(temporal_env: WorkflowEnvironment, aws_environment: None) -> Cli:
    return Cli(temporal_env.client.service_client.config.target_host, f"smoke-{uuid.uuid4()}")


@pytest.fixture(scope="module")
async def worker(cli: Cli, temporal_env: WorkflowEnvironment) -> AsyncIterator[None]:
    """The product's worker.py, polling before the first run (the script refuses to start without)."""
    process = cli.worker("worker")
    queue = cli.env["TEMPORAL_TASK_QUEUE"]
    try:
        await eventually(lambda: aws_smoke.worker_listening(temporal_env.client, queue), bool, timeout=60)
        yield
    finally:
        stop(process)


@pytest.fixture
def spec_file(tmp_path: Path) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"timing": FAST_TIMING}))
    return str(path)


def deployment_id() -> str:
    return f"smoke-{uuid.uuid4().hex[:8]}"


# Refusals


def test_refuses_without_credentials(cli: Cli, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.write_text("")
    env = {name: value for name, value in cli.env.items() if not name.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(tmp_path),
    )
    one_paragraph(smoke(cli, env=env), "aws-smoke deploys the tutorial's web tier into a real AWS account")


def test_refuses_an_endpoint_override_without_the_test_only_flag(cli: Cli, moto_url: str):
    done = smoke(cli)
    one_paragraph(done, "aws-smoke checks the web tier on real AWS, but an endpoint override is set")
    assert f"AWS_ENDPOINT_URL={moto_url}" in done.stderr
    assert TEST_ONLY not in smoke(cli, "--help").stdout  # for the project's tests only


def test_refuses_a_service_endpoint_override_too(cli: Cli):
    env = {k: v for k, v in cli.env.items() if k != "AWS_ENDPOINT_URL"}
    done = smoke(cli, env={**env, "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:1"})
    one_paragraph(done, "aws-smoke checks the web tier on real AWS")
    assert "AWS_ENDPOINT_URL_EC2=" in done.stderr


def test_refuses_without_a_worker(cli: Cli):
    lonely = cli.without(TEMPORAL_TASK_QUEUE=f"nobody-{uuid.uuid4()}")
    one_paragraph(smoke(lonely, TEST_ONLY), "no worker polls task queue 'nobody-")


def test_refuses_a_deployment_id_that_already_has_resources(cli: Cli, worker: None, spec_file: str):
    """It deletes what it deploys, so it must never adopt a deployment it did not make."""
    name = deployment_id()
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    tags = [{"Key": DEPLOYMENT_TAG, "Value": name}, {"Key": RESOURCE_TAG, "Value": "alb"}]
    ec2.create_security_group(
        GroupName=f"{name}-sg-alb",
        Description="a deployment the smoke run did not make",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )
    before = inventory()
    done = smoke(cli, TEST_ONLY, "--spec", spec_file, "--id", name)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"deployment {name} already has resources" in done.stderr and "Traceback" not in done.stderr
    assert inventory() == before


async def test_refuses_a_deployment_id_whose_run_is_in_flight(
    cli: Cli, worker: None, temporal_env: WorkflowEnvironment
):
    """`up` would attach to that run, and the smoke run would then tear down what it did not start."""
    name = deployment_id()
    handle = await temporal_env.client.start_workflow(
        DeployWorkflow.run,
        DeploymentSpec(deployment_id=name),
        id=f"deploy-{name}",
        task_queue=f"nobody-{uuid.uuid4()}",  # stays running: no worker takes it
    )
    try:
        done = await asyncio.to_thread(smoke, cli, TEST_ONLY, "--id", name)
        one_paragraph(done, f"deployment {name} is running")
    finally:
        await handle.terminate()


# Runs that deploy


def test_deploys_checks_and_tears_down_on_moto(cli: Cli, worker: None, spec_file: str):
    before = inventory()
    name = deployment_id()
    done = smoke(cli, TEST_ONLY, "--spec", spec_file, "--id", name, "--verify-grace", "0")

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    assert out.count("   PASS ") == CHECKS and "FAIL" not in out
    assert "== app answers: SKIPPED - endpoint override" in out
    assert "== verify nothing remains: PASSED" in out and f"{DEPLOYMENT_TAG}={name}" in out
    assert out.rstrip().endswith("aws-smoke PASSED")
    assert inventory() == before

    assert_timing_tables(out)


def assert_timing_tables(out: str) -> None:
    """Each step's real seconds next to the model's, for the whole run, the deployment and teardown."""
    profile = load_profile()
    deploy = row(out, "deploy")
    assert deploy[0] == "passed" and deploy[2] == f"{timing.modelled_deployment(profile):.1f}"
    assert row(out, "teardown")[2] == f"{timing.modelled_teardown(profile):.1f}"
    deployment = out.split("Deployment steps: real against the latency model")[1]
    for step in ("preflight", "private subnets", "nat gateway", "load balancer", "instances", "healthy"):
        real, model = row(deployment, step)[:2]
        assert float(real) >= 0 and float(model) > 0
    teardown = out.split("Teardown steps: real against the latency model")[1]
    assert float(row(teardown, "nat gateway")[1]) > 60  # nat_gateway_deleted in the profile
    assert row(teardown, "confirm nothing left")[0] != "-"  # down's own last look, timed too


def row(text: str, step: str) -> list[str]:
    """The cells after `step` in the first table row that starts with it."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if cells and cells[0] == step:
            return cells[1:]
    raise AssertionError(f"no row {step!r} in:\n{text}")


async def test_a_failure_mid_way_still_tears_down_and_what_remains_is_listed_by_id(
    cli: Cli, worker: None, spec_file: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """A step that breaks (here the checks, with an error of their own) stops the run but not the
    teardown; a resource carrying the deployment's tag that `down` did not remove (made here right
    after it) fails the run and is named by id; the timing tables still come."""
    name = deployment_id()
    before = inventory()
    leftover: list[str] = []
    real_teardown = aws_smoke.Smoke.teardown

    def broken_checks(self: aws_smoke.Smoke) -> str:
        raise RuntimeError("checks broke")

    def teardown_then_leak(self: aws_smoke.Smoke) -> str:
        result = real_teardown(self)
        leftover.append(tagged_subnet(name))
        return result

    for variable in ("TEMPORAL_ADDRESS", "TEMPORAL_TASK_QUEUE"):
        monkeypatch.setenv(variable, cli.env[variable])
    monkeypatch.setattr(aws_smoke.Smoke, "checks", broken_checks)
    monkeypatch.setattr(aws_smoke.Smoke, "teardown", teardown_then_leak)
    argv = [TEST_ONLY, "--spec", spec_file, "--id", name, "--verify-grace", "0"]
    code = await asyncio.to_thread(aws_smoke.main, argv)

    out = capsys.readouterr().out
    assert code == 1
    assert "== checks: FAILED" in out and "RuntimeError: checks broke" in out and "Traceback" not in out
    assert "== teardown: PASSED" in out
    assert "== verify nothing remains: FAILED" in out and f"subnet {leftover[0]}" in out
    assert out.rstrip().endswith("aws-smoke FAILED: checks, verify nothing remains")
    assert row(out, "deploy")[0] == "passed" and "Teardown steps: real against the latency model" in out
    assert added(before, inventory()) == {"subnets": {leftover[0]}}


def tagged_subnet(name: str) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    tags = [{"Key": DEPLOYMENT_TAG, "Value": name}, {"Key": RESOURCE_TAG, "Value": "subnet-private-x"}]
    return ec2.create_subnet(
        VpcId=vpc,
        CidrBlock="172.31.200.0/24",
        AvailabilityZone=f"{REGION}a",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": tags}],
    )["Subnet"]["SubnetId"]


# Pieces


def test_model_folds_the_apps_boot_into_the_health_wait():
    """The app's boot is no AWS call: the model's health wait holds it, as the workflow's does."""
    profile = load_profile()
    rows = {r.step: r for r in timing.deployment_rows(DeploymentSpec(), None, profile)}
    assert "app" not in rows
    assert rows["nat gateway"].model == pytest.approx(105 + 0.3 + 0.15)
    assert rows["healthy"].model_done == pytest.approx(timing.modelled_deployment(profile))
    boot = profile.states["app_listening"] + profile.states["target_healthy"]
    assert rows["healthy"].model > boot - rows["load balancer"].model_done  # from the listener on


@pytest.fixture
def local_app() -> Iterator[str]:
    """The app's answer, from 127.0.0.1."""

    class App(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.dumps({"message": "Awesome API", "hostname": "ip-10-0-0-1"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_app_step_reports_the_answer_and_its_hosts(local_app: str):
    assert wait_for_app(local_app, 5, hosts_expected=2) == "'Awesome API' from 1 host(s): ip-10-0-0-1"


def test_app_step_gives_up_at_its_deadline():
    with pytest.raises(SmokeFailure, match="did not answer with HTTP 200 within 1 s"):
        wait_for_app(f"http://127.0.0.1:{free_port()}/", 1, hosts_expected=2)


def test_endpoint_overrides_are_named_without_their_userinfo():
    environ = {"AWS_ENDPOINT_URL_S3": "http://user:secret@127.0.0.1:1", "AWS_REGION": REGION}
    assert aws_smoke.endpoint_overrides(environ) == ["AWS_ENDPOINT_URL_S3=http://***@127.0.0.1:1"]
    assert aws_smoke.endpoint_overrides({**environ, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}) == []
