"""Deployments, rollbacks and teardowns on an AWS that is eventually consistent, as the real one is.

moto knows a new id at once; tests/support/eventual_aws.py makes it answer as EC2 documents: for
WINDOW seconds after a create, calls naming the new id get NotFound and filtered describes miss it.
Every test checks that the window really bit (the stand-in's counters), so none passes by luck.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from activities import AwsClients
from models.deployment import DownRequest, Outcome
from models.naming import DEPLOYMENT_TAG, RESOURCE_TAG, private_subnet
from models.resources import Scope, TeardownInput
from models.spec import DeploymentSpec
from simulate.latency import LatencyModel
from simulate.profile import load_profile
from tests.support.eventual_aws import EventualAws
from tests.support.faults import InjectedFault, OperationFaults, TransientStorm
from tests.support.inventory import REGION, added, inventory
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.workers import running_worker
from tests.test_deployment_workflow import entity, up
from tests.test_rollback import fault_matrix, inject
from tests.test_storm import STORM_TIMING, assert_exactly_the_tutorial
from workflows.deploy import DeployWorkflow
from workflows.deployment import DeploymentWorkflow
from workflows.teardown import TeardownWorkflow

WINDOW = 2.0
"""The emulated consistency window, seconds."""
TIMING = {**FAST_TIMING, "consistency_window_seconds": WINDOW + 1}
"""The deployment's own idea of the window: longer than AWS's, as a user's should be."""


@pytest.fixture
def eventual(aws: AwsClients) -> EventualAws:
    """Installed before the worker's first call builds a client (clients copy the session's hooks)."""
    return EventualAws(aws.session, window=WINDOW)


def spec(**overrides: Any) -> DeploymentSpec:
    return fast_spec(timing=TIMING, **overrides)


async def deploy(client: Client, worker: Worker, deployment: DeploymentSpec):
    return await client.execute_workflow(
        DeployWorkflow.run, deployment, id=f"deploy-{deployment.deployment_id}", task_queue=worker.task_queue
    )


async def down(client: Client, worker: Worker, deployment_id: str) -> None:
    request = TeardownInput(scope=Scope(deployment_id=deployment_id, region=REGION), timing=TIMING)
    await client.execute_workflow(
        TeardownWorkflow.run, request, id=f"teardown-{deployment_id}", task_queue=worker.task_queue
    )


def tagged_with(deployment_id: str) -> list[str]:
    """Everything in the account carrying the deployment's tag (a plain client: the truth)."""
    tags = boto3.client("ec2", region_name=REGION).describe_tags(
        Filters=[{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [deployment_id]}]
    )["Tags"]
    live = inventory()
    return sorted({t["ResourceId"] for t in tags if any(t["ResourceId"] in ids for ids in live.values())})


# The stand-in itself


def test_stand_in_hides_a_new_id_then_shows_it(aws: AwsClients):
    eventual = EventualAws(aws.session, window=0.5)
    ec2 = aws.ec2(REGION)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="young", Description="d", VpcId=vpc)["GroupId"]

    with pytest.raises(ClientError) as refused:
        ec2.describe_security_groups(GroupIds=[group])
    assert refused.value.response["Error"]["Code"] == "InvalidGroup.NotFound"
    listed = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["young"]}])
    assert listed["SecurityGroups"] == []
    with pytest.raises(ClientError):  # a mutation naming it has no effect
        ec2.delete_security_group(GroupId=group)

    deadline = time.monotonic() + 10
    while eventual.young(group):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["GroupId"] == group
    assert eventual.refused["DescribeSecurityGroups"] == 1 and eventual.hidden["DescribeSecurityGroups"] == 1


def test_stand_in_answers_a_repeated_client_token_with_the_first_resource(aws: AwsClients):
    """moto ignores ClientToken (two calls, two instances); AWS returns the first call's instance."""
    eventual = EventualAws(aws.session, window=0.5)
    ec2 = aws.ec2(REGION)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    launch = {"ImageId": image, "MinCount": 1, "MaxCount": 1, "ClientToken": "same-token"}
    first = ec2.run_instances(**launch)["Instances"][0]["InstanceId"]
    second = ec2.run_instances(**launch)["Instances"][0]["InstanceId"]
    assert first == second and eventual.replayed["RunInstances"] == 1
    assert len(inventory()["instances"]) == 1


# Deployments


async def test_deployment_completes_with_exactly_the_tutorials_resources(
    client, aws: AwsClients, eventual: EventualAws, worker, ec2, elbv2
):
    """With the window and the latency model: every NotFound for a new id is waited out, and the
    lookups that missed new resources made no twin."""
    LatencyModel(load_profile(scale=0.01)).install(aws.session)
    before = inventory()
    outputs = await deploy(client, worker, spec())

    assert_exactly_the_tutorial(before, outputs, ec2, elbv2)
    # The window bit: calls naming new ids were refused, and lookups missed new resources.
    assert eventual.refused["AuthorizeSecurityGroupIngress"] >= 1
    assert sum(eventual.refused.values()) >= 5, eventual.refused


CREATE_POINTS = [
    ("ec2", "AuthorizeSecurityGroupIngress", 1),
    ("ec2", "RunInstances", 2),
]
"""Where a permanent failure leaves something seconds old to roll back, in the default suite: in the
activity that made it (the group whose rule fails) and late (everything to undo, the instances among
them seconds old); the soak batch fails the first call of every create."""
SOAK_CREATE_POINTS = [
    ("ec2", "CreateRoute", 1),
    ("elbv2", "CreateListener", 1),
    ("ec2", "CreateSubnet", 1),
    ("ec2", "AllocateAddress", 1),
    ("ec2", "CreateNatGateway", 1),
    ("ec2", "CreateRouteTable", 1),
    ("ec2", "AssociateRouteTable", 1),
    ("ec2", "CreateSecurityGroup", 1),
    ("ec2", "CreateSecurityGroup", 2),
    ("ec2", "AuthorizeSecurityGroupIngress", 2),
    ("elbv2", "CreateTargetGroup", 1),
    ("elbv2", "ModifyTargetGroupAttributes", 1),
    ("elbv2", "CreateLoadBalancer", 1),
    ("ec2", "RunInstances", 1),
    ("elbv2", "RegisterTargets", 1),
]


@pytest.mark.parametrize(
    "point",
    CREATE_POINTS + [pytest.param(p, marks=pytest.mark.soak) for p in SOAK_CREATE_POINTS],
    ids=lambda p: f"{p[1]}#{p[2]}",
)
async def test_permanent_failure_rolls_back_to_the_account_before(
    client, aws: AwsClients, eventual: EventualAws, worker, point
):
    """The rollback comes seconds after the creates: its lookups miss them and its deletes by id
    answer NotFound, and neither may be taken as "already gone"."""
    faults = OperationFaults(aws.session)
    problems = await inject(client, worker, faults, point, "single", timing=TIMING)

    assert not problems, problems
    assert eventual.refused or eventual.hidden, "the window never bit"


@pytest.mark.soak
async def test_fault_matrix_with_the_window(client, aws: AwsClients, eventual: EventualAws, worker, moto_url):
    """Every operation failed for good at its first and last call, with the window on."""
    await fault_matrix(client, aws, worker, moto_url, "single", TIMING)


async def test_down_right_after_up_leaves_nothing_tagged(client, aws: AwsClients, eventual, worker):
    deployment = spec()
    before = inventory()
    await deploy(client, worker, deployment)
    await down(client, worker, deployment.deployment_id)

    assert inventory() == before
    assert tagged_with(deployment.deployment_id) == []


@pytest.mark.parametrize(
    "seed", [3, pytest.param(4, marks=pytest.mark.soak), pytest.param(5, marks=pytest.mark.soak)]
)
async def test_transient_storm_with_the_window_completes_with_exact_counts(
    client, aws: AwsClients, eventual: EventualAws, worker, ec2, elbv2, seed
):
    """30% retryable faults and lost replies, on top of the window: a retried create's lookup misses
    its own lost-reply resource, and only tokens, names and conflicts keep it from making a twin."""
    TransientStorm(aws.session, seed=seed, rate=0.3)
    before = inventory()
    outputs = await deploy(
        client, worker, fast_spec(timing={**STORM_TIMING, **TIMING, "retry_maximum_attempts": 10})
    )

    assert_exactly_the_tutorial(before, outputs, ec2, elbv2)
    assert eventual.refused or eventual.hidden


# Twins: two resources with the deployment's and the logical name's tags


def make_twin_subnet(session: boto3.Session, deployment_id: str) -> list[str]:
    """Right after the deployment's first subnet, a second one with the same tags (as a lost reply,
    then a lookup that missed the first, would make): ids of the twins made."""
    twins: list[str] = []
    plain = boto3.client("ec2", region_name=REGION)
    claimed = threading.Lock()  # the two subnets are created at once, in two threads

    def twin(parsed: dict[str, Any], **_: Any) -> None:
        tags = {t["Key"]: t["Value"] for t in parsed.get("Subnet", {}).get("Tags", [])}
        if tags.get(DEPLOYMENT_TAG) != deployment_id or not claimed.acquire(blocking=False):
            return
        made = plain.create_subnet(
            VpcId=parsed["Subnet"]["VpcId"],
            CidrBlock="172.31.250.0/24",
            AvailabilityZone=parsed["Subnet"]["AvailabilityZone"],
            TagSpecifications=[{"ResourceType": "subnet", "Tags": parsed["Subnet"]["Tags"]}],
        )
        twins.append(made["Subnet"]["SubnetId"])

    session.events.register("after-call.ec2.CreateSubnet", twin)
    return twins


async def test_rollback_deletes_a_twin(client, aws: AwsClients, worker):
    deployment = spec()
    twins = make_twin_subnet(aws.session, deployment.deployment_id)
    InjectedFault("elbv2", "CreateListener").install(aws.session)
    before = inventory()

    with pytest.raises(WorkflowFailureError):
        await deploy(client, worker, deployment)

    assert len(twins) == 1
    assert added(before, inventory()) == {}  # the twin went with its sibling


async def test_down_deletes_a_twin(client, aws: AwsClients, worker):
    deployment = spec()
    twins = make_twin_subnet(aws.session, deployment.deployment_id)
    before = inventory()
    await deploy(client, worker, deployment)
    subnets = boto3.client("ec2", region_name=REGION).describe_subnets(SubnetIds=twins)["Subnets"]
    names = {t["Value"] for s in subnets for t in s["Tags"] if t["Key"] == RESOURCE_TAG}
    assert names <= {private_subnet(az) for az in deployment.availability_zones}  # a true twin

    await down(client, worker, deployment.deployment_id)

    assert inventory() == before  # both twins went
    assert tagged_with(deployment.deployment_id) == []


async def test_a_check_right_after_a_change_waits_out_the_window_and_finds_no_drift(
    client: Client, aws: AwsClients, eventual: EventualAws
):
    """A check waits until what the last operation made is visible to every call. Here the stand-in
    cannot show the harm of not waiting (registering a target already waits out its instance's
    window); on AWS each API's view converges on its own, DescribeTags and filtered describes too."""
    deployment = spec()
    async with running_worker(client, aws) as worker:
        created = await up(client, worker, deployment)
        assert created.outcome is Outcome.COMPLETED, created.message
        grown = await up(client, worker, deployment.model_copy(update={"instances": {"count": 3}}))
        assert grown.outcome is Outcome.COMPLETED and grown.finished_at is not None, grown.message
        report = await entity(client, deployment.deployment_id).execute_update(DeploymentWorkflow.check)
        down_result = await entity(client, deployment.deployment_id).execute_update(
            DeploymentWorkflow.down, DownRequest()
        )

    assert sum(eventual.refused.values()) + sum(eventual.hidden.values()) > 0  # the window was emulated
    assert report.items == []
    assert report.checked_at - grown.finished_at >= timedelta(seconds=TIMING["consistency_window_seconds"])
    assert down_result.outcome is Outcome.COMPLETED
