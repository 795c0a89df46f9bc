"""Bad input, as a user types it: `starter.py` and `worker.py` as processes.

Every case must end with one paragraph on stderr that says what is wrong, the documented exit code
(2 bad input, 4 unknown deployment id, 1 the deployment failed: here, at its read-only preflight),
no traceback, and the account exactly as before. Spec and flag errors need neither Temporal nor AWS:
those runs point TEMPORAL_ADDRESS and AWS_ENDPOINT_URL at ports nobody listens on, so nothing can be
created, and input that wrongly passed validation would fail with another message. The runs that can
reach both compare the whole account before and after.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from temporalio.client import Client

from tests.support.inventory import REGION, inventory
from tests.support.processes import ROOT, Cli, Finished, stop
from tests.support.servers import free_port
from tests.support.specs import FAST_TIMING

BAD_INPUT, DEPLOYMENT_FAILED, UNKNOWN_DEPLOYMENT = 2, 1, 4
SUBNET_A = {"cidr": "172.31.112.0/20", "availability_zone": "ap-northeast-2a"}
SUBNET_C = {"cidr": "172.31.144.0/20", "availability_zone": "ap-northeast-2c"}


def assert_one_paragraph(finished: Finished, code: int, message: str) -> None:
    assert finished.code == code, finished.stderr
    assert message in finished.stderr, finished.stderr
    assert "Traceback" not in finished.stderr and "Traceback" not in finished.stdout
    assert "\n\n" not in finished.stderr.strip()  # one paragraph


def assert_clear_error(finished: Finished, code: int, message: str, before: dict[str, set[str]]) -> None:
    assert_one_paragraph(finished, code, message)
    assert inventory() == before


@pytest.fixture
def offline() -> Cli:
    """No Temporal server and no AWS endpoint at these addresses."""
    cli = Cli(f"127.0.0.1:{free_port()}", f"bad-{uuid.uuid4()}")
    return cli.without(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")


# Specs and flags: refused before any connection


def subnets_yaml(*subnets: str) -> str:
    """`private_subnets` as a user writes it, from "CIDR AZ" pairs."""
    lines = [f"- {{cidr: {cidr}, availability_zone: {az}}}" for cidr, az in (s.split() for s in subnets)]
    return "private_subnets:\n" + "\n".join(lines) + "\n"


SPEC_FILES = [
    ("yaml-syntax", "deployment_id: [unclosed\n", "is not valid YAML or JSON"),
    ("json-syntax", '{"deployment_id": "web", "nat_mode": "single"', "is not valid YAML or JSON"),
    ("list-not-mapping", "- deployment_id: web\n", "must hold a mapping of settings"),
    ("scalar-not-mapping", "web-prod\n", "must hold a mapping of settings"),
    ("unknown-field", "deployment_id: web\ninstance:\n  count: 2\n", "instance: unknown setting"),
    ("unknown-nested", "instances:\n  cuont: 3\n", "instances.cuont: unknown setting"),
    ("count-not-int", "instances:\n  count: two\n", "instances.count: Input should be a valid integer"),
    ("instances-not-map", "instances: 4\n", "instances: Input should be a valid dictionary"),
    ("subnets-not-list", "private_subnets: 172.31.112.0/20\n",
     "private_subnets: Input should be a valid list"),
    ("bool-not-bool", "wait_for_healthy_targets: maybe\n",
     "wait_for_healthy_targets: Input should be a valid boolean"),
    ("tags-not-map", "tags: [team, web]\n", "tags: Input should be a valid dictionary"),
    ("cidr-prefix", subnets_yaml("172.31.112.0/33 ap-northeast-2a", "172.31.144.0/20 ap-northeast-2c"),
     "is not an IPv4 network in CIDR form"),
    ("cidr-outside-default-vpc",
     subnets_yaml("10.0.0.0/24 ap-northeast-2a", "172.31.144.0/20 ap-northeast-2c"),
     "outside the default VPC"),
    ("own-cidrs-overlap", subnets_yaml("172.31.112.0/20 ap-northeast-2a", "172.31.120.0/24 ap-northeast-2c"),
     "overlap; give each subnet its own range"),
    ("duplicate-az", subnets_yaml("172.31.112.0/20 ap-northeast-2a", "172.31.144.0/20 ap-northeast-2c",
                                  "172.31.160.0/20 ap-northeast-2a"),
     "['ap-northeast-2a'] appear twice"),
    ("one-az", subnets_yaml("172.31.112.0/20 ap-northeast-2a"), "at least 2 different availability zones"),
    ("az-other-region", subnets_yaml("172.31.112.0/20 us-east-1a", "172.31.144.0/20 ap-northeast-2c"),
     "'us-east-1a' is not in region"),
    ("empty-id", "deployment_id: ''\n", "deployment_id: must not be empty"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "message"), [c[1:] for c in SPEC_FILES], ids=[c[0] for c in SPEC_FILES])
def test_bad_spec_files(offline: Cli, tmp_path: Path, content: str, message: str):
    spec = tmp_path / "spec.yaml"
    spec.write_text(content)
    assert_one_paragraph(offline.run("up", "--spec", str(spec), "--json"), BAD_INPUT, message)


FLAGS = [
    ("no-command", [], "the following arguments are required: command"),
    ("spec-without-value", ["up", "--spec"], "argument --spec: expected one argument"),
    ("unknown-on-failure", ["up", "--on-failure", "explode"], "argument --on-failure: invalid choice"),
    ("status-without-id", ["status"], "the following arguments are required: deployment_id"),
    ("extra-positional", ["status", "web", "prod"], "unrecognized arguments: prod"),
    ("unknown-phase", ["list", "--phase", "sleeping"], "argument --phase: invalid choice: 'sleeping'"),
    ("set-without-equals", ["up", "--set", "instances.count"], "--set expects PATH=VALUE"),
    ("set-unknown-path", ["up", "--set", "instances.colour=red"], "instances.colour: unknown setting"),
    ("set-negative-poll", ["up", "--set", "timing.poll_interval_seconds=-1"],
     "timing.poll_interval_seconds: Input should be greater than 0"),
    ("set-max-poll-below-poll", ["up", "--set", "timing.max_poll_interval_seconds=1"],
     "max_poll_interval_seconds (1) is below poll_interval_seconds (5)"),
    ("set-infinite-timeout", ["up", "--set", "timing.nat_gateway_timeout_seconds=.inf"],
     "timing.nat_gateway_timeout_seconds: Input should be a finite number"),
    ("set-huge-timeout", ["up", "--set", "timing.call_timeout_seconds=1e300"],
     "timing.call_timeout_seconds: Input should be less than or equal to"),
    ("set-zero-attempts", ["up", "--set", "timing.retry_maximum_attempts=0"], "retry_maximum_attempts"),
    ("set-bad-nat-mode", ["up", "--set", "nat_mode=double"],
     "nat_mode: Input should be 'single' or 'per_az'"),
    ("set-bad-ami-id", ["up", "--set", "instances.ami_id=ubuntu-22.04"],
     "instances.ami_id: String should match"),
    ("set-allowed-cidr-host-bits", ["up", "--set", "load_balancer.allowed_cidr=10.0.0.1/8"],
     "load_balancer.allowed_cidr: Input is not a valid IPv4 network"),
    ("set-reserved-tag", ["up", "--set", "tags.scaleout:deployment=x"],
     "tag key 'scaleout:deployment' is reserved"),
    ("set-tag-elb-refuses", ["up", "--set", "tags.cost&center=web"], "may hold only letters, digits, spaces"),
    ("set-tag-value-too-long", ["up", "--set", "tags.team=" + "x" * 257], "values at most 256"),
    ("id-uppercase", ["up", "--id", "Web_Prod"], "may hold only lowercase letters, digits and inner hyphens"),
    ("id-too-long", ["up", "--id", "a" * 29], "at most 28 fit"),
    ("region-contradicts-azs", ["up", "--region", "us-east-1"],
     "'ap-northeast-2a' is not in region 'us-east-1'"),
    ("region-not-a-region", ["up", "--region", "Seoul"], "'Seoul' is not a region name"),
    ("plan-validates-too", ["plan", "--set", "instances.count=0"],
     "instances.count: Input should be greater"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in FLAGS], ids=[c[0] for c in FLAGS])
def test_bad_flags_and_overrides(offline: Cli, args: list[str], message: str):
    assert_one_paragraph(offline.run(*args), BAD_INPUT, message)


def test_spec_path_that_is_a_directory_or_not_text(offline: Cli, tmp_path: Path):
    assert_one_paragraph(offline.run("up", "--spec", str(tmp_path)), BAD_INPUT, "cannot read spec file")
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\xff\xfe\x00deployment_id")
    assert_one_paragraph(offline.run("up", "--spec", str(binary)), BAD_INPUT, "cannot read spec file")


# No Temporal server


@pytest.mark.parametrize(
    "args",
    [["up", "--no-wait"], ["plan"], ["status", "web"], ["cancel", "web"], ["down", "web"], ["list"],
     ["watch", "web"], ["outputs", "web"]],
    ids=lambda args: args[0],
)  # fmt: skip
def test_no_temporal_server_reachable(offline: Cli, args: list[str]):
    finished = offline.run(*args, timeout=60)
    address = offline.env["TEMPORAL_ADDRESS"]
    assert_one_paragraph(finished, BAD_INPUT, f"cannot reach the Temporal server at {address}")


def test_worker_without_temporal_server_exits_2(offline: Cli):
    finished = subprocess.run(
        [sys.executable, "worker.py"], cwd=ROOT, env=offline.env, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == BAD_INPUT, finished.stderr
    assert "cannot reach the Temporal server" in finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout


# Unknown deployment ids


@pytest.fixture
def cli(client: Client) -> Cli:
    return Cli(client.service_client.config.target_host, f"bad-{uuid.uuid4()}")


@pytest.mark.parametrize("command", ["status", "watch", "outputs", "cancel", "retry", "rollback"])
def test_unknown_deployment_id(cli: Cli, command: str):
    before = inventory()
    deployment_id = f"nope-{uuid.uuid4().hex[:8]}"
    finished = cli.run(command, deployment_id)
    assert_clear_error(finished, UNKNOWN_DEPLOYMENT, f"no deployment named {deployment_id!r}", before)


async def test_down_of_an_unknown_deployment_deletes_nothing(client: Client, worker):
    """Documented: `down` is idempotent, so an id with nothing tagged is a success that deletes nothing."""
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    before = inventory()
    deployment_id = f"nope-{uuid.uuid4().hex[:8]}"
    finished = await asyncio.to_thread(cli.run, "down", deployment_id, "--json")
    assert finished.code == 0, finished.stderr
    assert finished.json()["deleted"] == []
    assert f"nothing of {deployment_id} was left" in finished.stderr
    assert inventory() == before


# Specs that only the account can refute: the preflight fails the run, nothing is created


def prepare_overlap(ec2) -> dict:
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2.create_subnet(
        VpcId=default_vpc["VpcId"], CidrBlock="172.31.120.0/24", AvailabilityZone="ap-northeast-2a"
    )
    return {}


def prepare_other_vpc(ec2) -> dict:
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [{"cidr": "10.30.0.0/24", "availability_zone": "ap-northeast-2a"},
               {"cidr": "10.20.1.0/24", "availability_zone": "ap-northeast-2c"}]  # fmt: skip
    return {"vpc_id": vpc_id, "private_subnets": subnets}


def prepare_full_address_quota(ec2) -> dict:
    for _ in range(5):  # moto answers vpc-max-elastic-ips = 5
        ec2.allocate_address(Domain="vpc")
    return {}


ACCOUNT = [
    ("cidr-overlaps-existing-subnet", prepare_overlap, {}, "overlaps existing subnet"),
    ("cidr-outside-the-vpc", prepare_other_vpc, {}, "private subnet 10.30.0.0/24 is outside vpc-"),
    ("az-not-in-region", None,
     {"private_subnets": [SUBNET_A, {**SUBNET_C, "availability_zone": "ap-northeast-2e"}]},
     "availability zone ap-northeast-2e does not exist in ap-northeast-2"),
    ("vpc-does-not-exist", None, {"vpc_id": "vpc-0123456789abcdef0"},
     "VPC vpc-0123456789abcdef0 does not exist in ap-northeast-2; fix vpc_id"),
    ("ami-does-not-exist", None, {"instances": {"ami_id": "ami-0fedcba9876543210"}},
     "AMI ami-0fedcba9876543210 does not exist in ap-northeast-2"),
    ("ami-parameter-missing", None, {"instances": {"ami_parameter": "/no/such/parameter"}},
     "cannot resolve the AMI from SSM parameter /no/such/parameter"),
    ("instance-type-not-offered", None, {"instances": {"instance_type": "t9.enormous"}},
     "instance type t9.enormous is not offered in ap-northeast-2a"),
    ("address-quota-full", prepare_full_address_quota, {}, "the Elastic IP quota (5) leaves 0 free"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("prepare", "values", "message"), [c[1:] for c in ACCOUNT], ids=[c[0] for c in ACCOUNT]
)
async def test_spec_refuted_by_the_account(client: Client, worker, tmp_path: Path, prepare, values, message):
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    if prepare is not None:
        values = {**values, **prepare(boto3.client("ec2", region_name=REGION))}
    deployment_id = f"bad-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "spec.yaml"
    spec.write_text(json_spec(deployment_id, values))
    before = inventory()

    planned = await asyncio.to_thread(cli.run, "plan", "--spec", str(spec))
    assert_clear_error(planned, BAD_INPUT, message, before)

    finished = await asyncio.to_thread(cli.run, "up", "--spec", str(spec), "--json")
    assert_clear_error(finished, DEPLOYMENT_FAILED, message, before)
    result = finished.json()
    assert result["status"] == "FAILED" and "preflight found problems, nothing was created" in result["error"]


def json_spec(deployment_id: str, values: dict) -> str:
    return json.dumps({"deployment_id": deployment_id, "timing": FAST_TIMING, **values})


# No AWS credentials for the worker


def test_worker_without_aws_credentials(client: Client, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.write_text("")
    cli = Cli(client.service_client.config.target_host, f"bad-{uuid.uuid4()}").without(
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        AWS_CONFIG_FILE=str(empty), AWS_SHARED_CREDENTIALS_FILE=str(empty),
    )  # fmt: skip
    before = inventory()
    worker = cli.worker("worker")
    try:
        spec = tmp_path / "spec.json"
        spec.write_text(json_spec(f"bad-{uuid.uuid4().hex[:8]}", {}))
        finished = cli.run("up", "--spec", str(spec), "--json")
        assert_clear_error(finished, DEPLOYMENT_FAILED, "no AWS credentials found for the worker", before)
        assert "step 'preflight'" in finished.json()["error"]
        assert worker.poll() is None  # the worker itself carries on: the next deployment may have them
    finally:
        stop(worker)
