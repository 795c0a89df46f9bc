"""A transient storm: 30% of all AWS calls fail with a retryable error, and changes lose their replies.

Every run must still complete with exactly one of each resource: a retried create whose first attempt
took effect must find it (by its tags or name) instead of making a twin. Two seeds run in the default
suite; the batch (`make soak`) runs twelve more. Lost replies also come on purpose: one run loses the
reply of the first call of every operation that changes the account.
"""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from temporalio.client import Client
from temporalio.worker import Worker

from activities import AwsClients
from activities.errors import classify
from models.resources import DeploymentOutputs
from models.spec import DeploymentSpec
from tests.support.expected import TUTORIAL_COUNTS
from tests.support.faults import TransientStorm
from tests.support.inventory import added, inventory
from tests.support.specs import FAST_TIMING, fast_spec
from workflows.deploy import DeployWorkflow

RATE = 0.3


STORM_TIMING = {**FAST_TIMING, "retry_maximum_attempts": 10}
"""The spec's default attempts (FAST_TIMING's 3 suit single faults): a step with four creates in a row
(route table, route, two associations) needs several attempts when each fails 30% of the time."""

DEFAULT_SEEDS = [1, 2]
SOAK_SEEDS = list(range(101, 113))


async def deploy(client: Client, worker: Worker, spec: DeploymentSpec) -> DeploymentOutputs:
    return await client.execute_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )


def assert_exactly_the_tutorial(
    before: dict[str, set[str]], outputs: DeploymentOutputs, ec2, elbv2, nat_gateways: int = 1
) -> None:
    """One of each resource, no twin, and the pieces wired to each other (not to a lost twin)."""
    created = {kind: len(ids) for kind, ids in added(before, inventory()).items()}
    per_nat = {"addresses": nat_gateways, "nat_gateways": nat_gateways, "route_tables": nat_gateways}
    assert created == {**TUTORIAL_COUNTS, **per_nat}
    health = elbv2.describe_target_health(TargetGroupArn=outputs.target_group_arn)
    assert sorted(t["Target"]["Id"] for t in health["TargetHealthDescriptions"]) == sorted(
        outputs.instance_ids.values()
    )
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=outputs.load_balancer_arn)["Listeners"]
    assert [a["TargetGroupArn"] for a in listener["DefaultActions"]] == [outputs.target_group_arn]
    table_ids = sorted(set(outputs.route_table_ids.values()))  # by AZ: one table serves both with one NAT
    tables = ec2.describe_route_tables(RouteTableIds=table_ids)["RouteTables"]
    associated = [a["SubnetId"] for t in tables for a in t["Associations"] if not a.get("Main")]
    assert sorted(associated) == sorted(outputs.private_subnet_ids.values())
    routed = [r["NatGatewayId"] for t in tables for r in t["Routes"] if r.get("NatGatewayId")]
    assert sorted(routed) == sorted(outputs.nat_gateway_ids.values())


def report(name: str, storm: TransientStorm, elapsed: float) -> None:
    failed = sum(storm.failed.values())
    print(
        f"{name}: {elapsed:.1f} s, {storm.attempts} attempts, {failed} failed "
        f"({failed / storm.attempts:.0%}), {len(storm.lost)} lost replies; {dict(storm.failed)}"
    )


@pytest.mark.parametrize(
    "seed",
    DEFAULT_SEEDS + [pytest.param(seed, marks=pytest.mark.soak) for seed in SOAK_SEEDS],
)
async def test_storm_completes_with_exact_counts(client, aws: AwsClients, worker, ec2, elbv2, seed):
    storm = TransientStorm(aws.session, seed=seed, rate=RATE)
    before = inventory()
    started = time.monotonic()
    outputs = await deploy(client, worker, fast_spec(timing=STORM_TIMING))
    report(f"storm seed {seed}", storm, time.monotonic() - started)

    assert_exactly_the_tutorial(before, outputs, ec2, elbv2)
    assert sum(storm.failed.values()) > 0


@pytest.mark.parametrize("nat_mode", ["single", pytest.param("per_az", marks=pytest.mark.soak)])
async def test_every_first_reply_lost_completes_with_exact_counts(
    client, aws: AwsClients, worker, ec2, elbv2, nat_mode: str
):
    """The first call of every operation that changes the account takes effect, and its reply is lost."""
    storm = TransientStorm(aws.session, seed=0, rate=0, lose_first_replies=True)
    before = inventory()
    started = time.monotonic()
    outputs = await deploy(client, worker, fast_spec(timing=STORM_TIMING, nat_mode=nat_mode))
    report(f"first replies lost ({nat_mode})", storm, time.monotonic() - started)

    assert_exactly_the_tutorial(before, outputs, ec2, elbv2, nat_gateways=1 if nat_mode == "single" else 2)
    lost = dict(storm.lost)
    assert set(lost) == storm.changing_operations
    assert {"CreateSubnet", "RunInstances", "CreateLoadBalancer", "CreateListener"} <= set(lost)
    assert all(200 <= status < 300 for status in lost.values()), lost  # each took effect on AWS's side


@pytest.mark.parametrize(
    "error",
    [EndpointConnectionError, ConnectionClosedError, ReadTimeoutError],
    ids=lambda error: error.__name__,
)
def test_no_answer_is_a_retryable_connection_error(error: type[Exception]):
    """Before the request left, or mid-reply (the lost reply): both say "cannot reach AWS" and retry."""
    classified = classify(error(endpoint_url="https://ec2.ap-northeast-2.amazonaws.com/"))
    assert classified.type == "ConnectionError" and not classified.non_retryable
    assert classified.message.startswith("cannot reach AWS")
