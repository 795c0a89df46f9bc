"""`plan`: every preflight check on a prepared account, what `up` would create, and the cost estimate."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from temporalio.client import Client, WorkflowFailureError

from activities import AwsClients, InventoryActivities
from models import prices
from models.cost import estimate
from models.plan import PlanReport, changes
from models.resources import Kind, Scope
from models.spec import DeploymentSpec
from tests.support.inventory import REGION, inventory
from tests.support.processes import Cli
from tests.support.specs import FAST_TIMING, fast_spec
from workflows.deploy import DeployWorkflow
from workflows.plan import PlanWorkflow


async def plan_of(client: Client, worker, spec: DeploymentSpec) -> PlanReport:
    return await client.execute_workflow(
        PlanWorkflow.run, spec, id=f"plan-{uuid.uuid4()}", task_queue=worker.task_queue
    )


def ec2() -> Any:
    return boto3.client("ec2", region_name=REGION)


def default_subnet(az: str) -> dict[str, Any]:
    filters = [{"Name": "availability-zone", "Values": [az]}, {"Name": "default-for-az", "Values": ["true"]}]
    subnets = ec2().describe_subnets(Filters=filters)["Subnets"]
    return subnets[0]


def subnet_on_the_cidr(spec: DeploymentSpec) -> None:
    vpc = ec2().describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2().create_subnet(VpcId=vpc["VpcId"], CidrBlock="172.31.112.0/24", AvailabilityZone="ap-northeast-2a")


def no_public_subnet_in_2c(spec: DeploymentSpec) -> None:
    ec2().delete_subnet(SubnetId=default_subnet("ap-northeast-2c")["SubnetId"])


def addresses_exhausted(spec: DeploymentSpec) -> None:
    for _ in range(5):  # moto reports vpc-max-elastic-ips = 5
        ec2().allocate_address(Domain="vpc")


def target_group_name_taken(spec: DeploymentSpec) -> None:
    vpc = ec2().describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    boto3.client("elbv2", region_name=REGION).create_target_group(
        Name=f"{spec.deployment_id}-tg", Protocol="HTTP", Port=80, VpcId=vpc["VpcId"]
    )


def nothing(spec: DeploymentSpec) -> None:
    return None


TWO_B = [
    {"cidr": "172.31.112.0/20", "availability_zone": "ap-northeast-2a"},
    {"cidr": "172.31.144.0/20", "availability_zone": "ap-northeast-2b"},
]
MISSING_AMI = {"instances": {"ami_id": "ami-0123456789abcdef0"}}
MISSING_VPC = {"vpc_id": "vpc-0123456789abcdef0"}
TWO_E = [
    {"cidr": "172.31.112.0/20", "availability_zone": "ap-northeast-2a"},
    {"cidr": "172.31.144.0/20", "availability_zone": "ap-northeast-2e"},
]

# (case, how the account is prepared, spec overrides, words the problem must contain)
CHECKS: list[tuple[str, Callable[[DeploymentSpec], None], dict[str, Any], list[str]]] = [
    ("cidr-overlaps", subnet_on_the_cidr, {}, ["172.31.112.0/20 overlaps existing subnet", "free range"]),
    ("no-public-subnet", no_public_subnet_in_2c, {}, ["no public subnet in ap-northeast-2c", "create one"]),
    ("eip-quota", addresses_exhausted, {}, ["Elastic IP quota (5) leaves 0 free but 1 are needed"]),
    ("name-taken", target_group_name_taken, {}, ["target group name", "-tg is taken by", "deployment_id"]),
    ("az-missing", nothing, {"private_subnets": TWO_E}, ["ap-northeast-2e does not exist"]),
    ("type-not-offered", nothing, {"private_subnets": TWO_B}, ["t2.micro is not offered in ap-northeast-2b"]),
    ("ami-missing", nothing, MISSING_AMI, ["AMI ami-0123456789abcdef0"]),
    ("vpc-missing", nothing, MISSING_VPC, ["VPC vpc-0123456789abcdef0 does not exist"]),
]


@pytest.mark.parametrize(
    ("prepare", "overrides", "words"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS]
)
async def test_each_check_fails_with_its_fix_and_nothing_is_created(
    client: Client, worker, prepare, overrides, words
):
    spec = fast_spec(**overrides)
    prepare(spec)
    before = inventory()

    report = await plan_of(client, worker, spec)
    assert len(report.problems) == 1, report.problems
    assert all(word in report.problems[0] for word in words), report.problems[0]

    with pytest.raises(WorkflowFailureError) as failure:
        await client.execute_workflow(
            DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
        )
    message = failure.value.cause.message
    assert "step 'preflight'" in message and report.problems[0] in message
    assert inventory() == before


async def test_plan_lists_exactly_what_up_creates_then_finds_it(client: Client, worker, aws: AwsClients):
    spec = fast_spec(nat_mode="per_az")
    first = await plan_of(client, worker, spec)
    assert first.problems == [] and first.existing == []
    planned = changes(spec, first.existing)
    assert {c.action for c in planned} == {"create"}

    await client.execute_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )

    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
    created = InventoryActivities(aws).discover_resources(scope).resources
    registrations = {c.key for c in planned if c.kind is Kind.TARGET_REGISTRATION}
    assert {c.key for c in planned} - registrations == {r.name for r in created}
    again = changes(spec, (await plan_of(client, worker, spec)).existing)
    ids = {r.name: r.id for r in created}
    assert all(c.action == "exists" and c.id == ids[c.key] for c in again if c.key not in registrations)


def test_cost_estimate_follows_the_price_table():
    spec = DeploymentSpec()
    cost = estimate(spec)
    volume = 8 * prices.GP3_GIB_MONTH_USD / prices.HOURS_PER_MONTH
    hourly = prices.HOURLY_USD
    expected = (
        2 * (prices.INSTANCE_HOURLY_USD["t2.micro"] + volume)
        + hourly["nat_gateway"]
        + hourly["load_balancer"]
        + hourly["load_balancer_lcu"]
        + 3 * hourly["public_ipv4_address"]  # the NAT's EIP and the ALB's address in each of 2 AZs
    )
    assert cost.hourly_usd == pytest.approx(expected, abs=1e-4)
    assert cost.monthly_usd == pytest.approx(expected * 730, abs=0.01)
    assert cost.region == prices.REGION and cost.prices_taken == prices.TAKEN

    per_az = estimate(DeploymentSpec(nat_mode="per_az"))
    extra_nat = hourly["nat_gateway"] + hourly["public_ipv4_address"]
    assert per_az.hourly_usd == pytest.approx(expected + extra_nat, abs=1e-4)

    unknown = estimate(DeploymentSpec(instances={"instance_type": "x9.mega"}))
    assert any("no price for x9.mega" in note for note in unknown.notes)


async def test_plan_command_for_pipelines(client: Client, worker, tmp_path):
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    deployment_id = f"plan-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"deployment_id": deployment_id, "timing": FAST_TIMING}))

    ready = await asyncio.to_thread(cli.run, "plan", "--spec", str(path), "--json")
    assert ready.code == 0, ready.stderr
    payload = ready.json()
    assert payload["ready"] is True and payload["problems"] == []
    assert {c["action"] for c in payload["changes"]} == {"create"} and payload["cost"]["monthly_usd"] > 0

    blocked = await asyncio.to_thread(
        cli.run, "plan", "--spec", str(path), "--set", "vpc_id=vpc-0123456789abcdef0", "--json"
    )
    assert blocked.code == 2 and blocked.json()["ready"] is False
    assert "vpc-0123456789abcdef0 does not exist" in blocked.stderr and "Traceback" not in blocked.stderr
