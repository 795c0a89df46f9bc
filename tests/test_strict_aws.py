"""Rollback and `down` where AWS is stricter than moto: refused deletes and deletions that take time.

With the strict hooks (tests/support/strict_aws.py) on the session the activities use, a delete is
refused while a dependant exists, NAT gateways and instances take polls to go, and a deleted ALB or NAT
still holds its security group or address for a few more attempts. The first tests prove each rule
really refuses (so the emulation cannot silently do nothing); the others show that rollback, on
failure and on cancellation, and teardown still leave the account as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from activities import AwsClients
from models import naming
from models.progress import Phase, StepState
from models.resources import Scope, TeardownInput
from models.spec import DeploymentSpec
from tests.support.faults import InjectedFault, hold_nat_gateways
from tests.support.inventory import inventory
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.strict_aws import REFUSALS, StrictAws
from tests.support.waiting import eventually
from workflows.deploy import DeployWorkflow
from workflows.teardown import TeardownWorkflow

REGION = "ap-northeast-2"
AMI = "ami-12c6146b"


@pytest.fixture
def strict(aws: AwsClients) -> StrictAws:
    """Registered before the session builds any client (clients copy the session's handlers)."""
    return StrictAws(aws.session)


# (d) Each rule refuses, and lets the call through once the dependant is gone


class World:
    """Resources made with a plain client (no hooks), for the strict client to try to delete."""

    def __init__(self) -> None:
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.elbv2 = boto3.client("elbv2", region_name=REGION)
        self.vpc_id = self.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0][
            "VpcId"
        ]
        defaults = sorted(self.ec2.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])
        self.public = [s["SubnetId"] for s in defaults[:2]]

    def group(self, name: str) -> str:
        return self.ec2.create_security_group(GroupName=name, Description=name, VpcId=self.vpc_id)["GroupId"]

    def subnet(self) -> str:
        return self.ec2.create_subnet(VpcId=self.vpc_id, CidrBlock="172.31.200.0/24")["Subnet"]["SubnetId"]

    def instance(self, subnet_id: str, group_id: str) -> str:
        return self.ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet_id, "Groups": [group_id]}],
        )["Instances"][0]["InstanceId"]

    def load_balancer(self, group_id: str) -> str:
        return self.elbv2.create_load_balancer(
            Name=f"lb-{group_id[-6:]}", Subnets=self.public, SecurityGroups=[group_id]
        )["LoadBalancers"][0]["LoadBalancerArn"]

    def nat_gateway(self, subnet_id: str) -> tuple[str, str]:
        allocation_id = self.ec2.allocate_address(Domain="vpc")["AllocationId"]
        gateway = self.ec2.create_nat_gateway(SubnetId=subnet_id, AllocationId=allocation_id)["NatGateway"]
        return gateway["NatGatewayId"], allocation_id

    def exists(self, kind: str, resource_id: str) -> bool:
        return resource_id in inventory()[kind]


@dataclass
class Case:
    """A dependant that makes AWS refuse a delete: build it, try the delete, remove the dependant."""

    operation: str
    code: str
    kind: str
    build: Callable[[World], tuple[str, Callable[[], Any]]]
    """Returns the resource to delete and how to remove what blocks it."""
    delete: Callable[[Any, Any, str], Any]
    """(strict ec2, strict elbv2, resource id) -> the delete call."""


def sg_used_by_instance(w: World) -> tuple[str, Callable[[], Any]]:
    group = w.group("with-instance")
    instance = w.instance(w.subnet(), group)
    return group, lambda: w.ec2.terminate_instances(InstanceIds=[instance])


def sg_used_by_load_balancer(w: World) -> tuple[str, Callable[[], Any]]:
    group = w.group("with-alb")
    arn = w.load_balancer(group)
    return group, lambda: w.elbv2.delete_load_balancer(LoadBalancerArn=arn)


def sg_referenced_by_rule(w: World) -> tuple[str, Callable[[], Any]]:
    source, other = w.group("source"), w.group("other")
    permission = {
        "IpProtocol": "tcp",
        "FromPort": 80,
        "ToPort": 80,
        "UserIdGroupPairs": [{"GroupId": source}],
    }
    w.ec2.authorize_security_group_ingress(GroupId=other, IpPermissions=[permission])
    return source, lambda: w.ec2.revoke_security_group_ingress(GroupId=other, IpPermissions=[permission])


def subnet_with_instance(w: World) -> tuple[str, Callable[[], Any]]:
    subnet = w.subnet()
    instance = w.instance(subnet, w.group("in-subnet"))
    return subnet, lambda: w.ec2.terminate_instances(InstanceIds=[instance])


def subnet_with_nat_gateway(w: World) -> tuple[str, Callable[[], Any]]:
    subnet = w.subnet()
    gateway, _ = w.nat_gateway(subnet)
    return subnet, lambda: w.ec2.delete_nat_gateway(NatGatewayId=gateway)


def address_of_nat_gateway(w: World) -> tuple[str, Callable[[], Any]]:
    gateway, allocation_id = w.nat_gateway(w.public[0])
    return allocation_id, lambda: w.ec2.delete_nat_gateway(NatGatewayId=gateway)


def target_group_behind_listener(w: World) -> tuple[str, Callable[[], Any]]:
    group = w.elbv2.create_target_group(Name="tg-strict", Protocol="HTTP", Port=80, VpcId=w.vpc_id)
    group_arn = group["TargetGroups"][0]["TargetGroupArn"]
    listener = w.elbv2.create_listener(
        LoadBalancerArn=w.load_balancer(w.group("alb-of-listener")),
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group_arn}],
    )["Listeners"][0]["ListenerArn"]
    return group_arn, lambda: w.elbv2.delete_listener(ListenerArn=listener)


def associated_route_table(w: World) -> tuple[str, Callable[[], Any]]:
    table = w.ec2.create_route_table(VpcId=w.vpc_id)["RouteTable"]["RouteTableId"]
    association = w.ec2.associate_route_table(RouteTableId=table, SubnetId=w.subnet())["AssociationId"]
    return table, lambda: w.ec2.disassociate_route_table(AssociationId=association)


def delete_group(ec2: Any, _: Any, group_id: str) -> Any:
    return ec2.delete_security_group(GroupId=group_id)


def delete_subnet(ec2: Any, _: Any, subnet_id: str) -> Any:
    return ec2.delete_subnet(SubnetId=subnet_id)


CASES = [
    Case("DeleteSecurityGroup", "DependencyViolation", "security_groups", sg_used_by_instance, delete_group),
    Case(
        "DeleteSecurityGroup",
        "DependencyViolation",
        "security_groups",
        sg_used_by_load_balancer,
        delete_group,
    ),
    Case(
        "DeleteSecurityGroup", "DependencyViolation", "security_groups", sg_referenced_by_rule, delete_group
    ),
    Case("DeleteSubnet", "DependencyViolation", "subnets", subnet_with_instance, delete_subnet),
    Case("DeleteSubnet", "DependencyViolation", "subnets", subnet_with_nat_gateway, delete_subnet),
    Case(
        "ReleaseAddress",
        "AuthFailure",
        "addresses",
        address_of_nat_gateway,
        lambda ec2, _, allocation_id: ec2.release_address(AllocationId=allocation_id),
    ),
    Case(
        "DeleteTargetGroup",
        "ResourceInUse",
        "target_groups",
        target_group_behind_listener,
        lambda _, elbv2, arn: elbv2.delete_target_group(TargetGroupArn=arn),
    ),
    Case(
        "DeleteRouteTable",
        "DependencyViolation",
        "route_tables",
        associated_route_table,
        lambda ec2, _, table_id: ec2.delete_route_table(RouteTableId=table_id),
    ),
]


HTTPS_REFUSALS = {"CreateListener", "DeleteCertificate"}
"""Refusals of HTTPS resources (a listener needs an ISSUED certificate, a certificate in use cannot be
deleted): their case is tests/test_https_activities.py's test_strict_aws_refuses_what_real_aws_refuses."""


def test_every_rule_has_a_case() -> None:
    assert {r.operation for r in REFUSALS} == {c.operation for c in CASES} | HTTPS_REFUSALS


@pytest.mark.parametrize("case", CASES, ids=[c.build.__name__ for c in CASES])
def test_each_rule_refuses_while_the_dependant_exists(aws: AwsClients, strict: StrictAws, case: Case) -> None:
    world = World()
    resource_id, remove_dependant = case.build(world)
    ec2, elbv2 = aws.ec2(REGION), aws.elbv2(REGION)

    with pytest.raises(ClientError) as refused:
        case.delete(ec2, elbv2, resource_id)

    assert refused.value.response["Error"]["Code"] == case.code
    assert strict.refused[(case.operation, case.code)] == 1
    assert world.exists(case.kind, resource_id)  # moto was never asked

    remove_dependant()  # with the plain client: nothing in progress, nothing lingering
    case.delete(ec2, elbv2, resource_id)
    assert not world.exists(case.kind, resource_id)
    assert strict.refused[(case.operation, case.code)] == 1


def test_instance_shuts_down_for_some_polls_and_holds_its_group_and_subnet(
    aws: AwsClients, strict: StrictAws
) -> None:
    world = World()
    group, subnet = world.group("slow"), world.subnet()
    instance = world.instance(subnet, group)
    ec2 = aws.ec2(REGION)
    ec2.terminate_instances(InstanceIds=[instance])

    live = [{"Name": "instance-state-name", "Values": ["pending", "running", "shutting-down"]}]
    seen = []
    for _ in range(strict.polls):
        for call in (
            lambda: ec2.delete_security_group(GroupId=group),
            lambda: ec2.delete_subnet(SubnetId=subnet),
        ):
            with pytest.raises(ClientError, match="DependencyViolation"):
                call()
        reservations = ec2.describe_instances(Filters=live)["Reservations"]
        seen.append([(i["InstanceId"], i["State"]["Name"]) for r in reservations for i in r["Instances"]])
    assert seen == [[(instance, "shutting-down")]] * strict.polls
    reservations = ec2.describe_instances(Filters=live)["Reservations"]
    assert [i for r in reservations for i in r["Instances"]] == []  # terminated: the filter leaves it out
    described = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    assert described["State"]["Name"] == "terminated"

    ec2.delete_security_group(GroupId=group)
    ec2.delete_subnet(SubnetId=subnet)
    assert strict.shown["instance"] == strict.polls


def test_nat_gateway_deletes_for_some_polls_then_its_address_lingers(
    aws: AwsClients, strict: StrictAws
) -> None:
    world = World()
    gateway, allocation_id = world.nat_gateway(world.public[0])
    ec2 = aws.ec2(REGION)
    ec2.delete_nat_gateway(NatGatewayId=gateway)
    going = [{"Name": "state", "Values": ["available", "deleting"]}]

    for _ in range(strict.polls):
        with pytest.raises(ClientError, match="AuthFailure"):
            ec2.release_address(AllocationId=allocation_id)
        assert [g["NatGatewayId"] for g in ec2.describe_nat_gateways(Filters=going)["NatGateways"]] == [
            gateway
        ]
    assert ec2.describe_nat_gateways(Filters=going)["NatGateways"] == []
    assert ec2.describe_nat_gateways(NatGatewayIds=[gateway])["NatGateways"][0]["State"] == "deleted"

    for _ in range(strict.linger_refusals):  # deleted, and yet the address is still held a moment
        with pytest.raises(ClientError, match="AuthFailure"):
            ec2.release_address(AllocationId=allocation_id)
    ec2.release_address(AllocationId=allocation_id)
    assert allocation_id not in inventory()["addresses"]
    assert strict.refused[("ReleaseAddress", "AuthFailure")] == strict.polls + strict.linger_refusals


def test_deleted_load_balancer_holds_its_group_a_few_more_times(aws: AwsClients, strict: StrictAws) -> None:
    world = World()
    group = world.group("alb-linger")
    arn = world.load_balancer(group)
    aws.elbv2(REGION).delete_load_balancer(LoadBalancerArn=arn)
    ec2 = aws.ec2(REGION)

    for _ in range(strict.linger_refusals):
        with pytest.raises(ClientError, match="DependencyViolation"):
            ec2.delete_security_group(GroupId=group)
    ec2.delete_security_group(GroupId=group)
    assert group not in inventory()["security_groups"]


# (a)-(c) Rollback and teardown under the strict rules


def hold_instances_pending(session: boto3.Session) -> threading.Event:
    """Instances answer `pending` until the event is set: a deployment stopped with most of it made."""
    seen = threading.Event()

    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                if instance["State"]["Name"] == "running":
                    instance["State"] = {"Code": 0, "Name": "pending"}
                    seen.set()

    def rewrite_status(parsed: dict[str, Any], **_: Any) -> None:
        for status in parsed.get("InstanceStatuses", []):
            if status["InstanceState"]["Name"] == "running":
                status["InstanceState"] = {"Code": 0, "Name": "pending"}
                seen.set()

    session.events.register("after-call.ec2.DescribeInstances", rewrite)
    session.events.register("after-call.ec2.DescribeInstanceStatus", rewrite_status)
    return seen


async def start(client: Client, worker: Worker, spec: DeploymentSpec):
    return await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )


def assert_strictness_was_met(strict: StrictAws, *, instances: bool = True) -> None:
    """Every slow deletion was waited for, and every linger was retried through."""
    assert strict.shown["nat-gateway"] > 0
    assert (strict.shown["instance"] > 0) is instances
    assert strict.refused[("DeleteSecurityGroup", "DependencyViolation")] >= strict.linger_refusals
    assert strict.refused[("ReleaseAddress", "AuthFailure")] >= strict.linger_refusals


@pytest.mark.parametrize("nat_mode", ["single", "per_az"])
async def test_failure_at_the_last_step_rolls_everything_back(
    client, aws: AwsClients, strict: StrictAws, worker, nat_mode: str
) -> None:
    InjectedFault("elbv2", "DescribeTargetHealth", occurrences={1}).install(aws.session)
    before = inventory()
    handle = await start(client, worker, fast_spec(nat_mode=nat_mode))

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert "step 'healthy'" in failure.value.cause.message
    progress = await handle.query(DeployWorkflow.progress)
    assert progress.phase is Phase.FAILED and progress.left_behind == []
    assert inventory() == before
    assert_strictness_was_met(strict)


FAILURE_POINTS = [
    ("ec2", "CreateNatGateway", 1),
    ("ec2", "AssociateRouteTable", 2),
    ("ec2", "AuthorizeSecurityGroupIngress", 2),
    ("elbv2", "CreateLoadBalancer", 1),
    ("ec2", "RunInstances", 2),
    ("elbv2", "RegisterTargets", 1),
    ("elbv2", "CreateListener", 1),
]
"""Mid-way failures: some of each chain made, the rest not. Two run by default, all under `make soak`."""
DEFAULT_POINTS = {("ec2", "RunInstances", 2), ("elbv2", "CreateListener", 1)}
DENIED = {"ec2": "UnauthorizedOperation", "elbv2": "AccessDenied"}


@pytest.mark.parametrize(
    ("service", "operation", "occurrence"),
    [
        pytest.param(
            *point, marks=[] if point in DEFAULT_POINTS else [pytest.mark.soak], id=f"{point[1]}#{point[2]}"
        )
        for point in FAILURE_POINTS
    ],
)
async def test_failure_mid_way_rolls_everything_back(
    client, aws: AwsClients, strict: StrictAws, worker, service: str, operation: str, occurrence: int
) -> None:
    fault = InjectedFault(service, operation, code=DENIED[service], occurrences={occurrence})
    fault.install(aws.session)
    before = inventory()
    handle = await start(client, worker, fast_spec())

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert fault.failed == 1
    assert f"{operation} failed: {DENIED[service]}" in failure.value.cause.message
    progress = await handle.query(DeployWorkflow.progress)
    assert progress.phase is Phase.FAILED and progress.left_behind == []
    assert inventory() == before
    states = [step.state for step in progress.steps]
    assert states.count(StepState.FAILED) == 1 and StepState.PENDING in states  # mid-way
    made = {step.key for step in progress.steps if step.resource_id and step.key != "preflight"}
    assert made and all(progress.step(key).state is StepState.COMPENSATED for key in made)
    assert_strictness_met_for(strict, made)


def assert_strictness_met_for(strict: StrictAws, made: set[str]) -> None:
    """What was made met the strict rules on its way out: slow deletions waited, lingers retried."""
    # Implications only: a create still in flight at the failure is settled and undone, but it may not
    # have reported its id (instances launch beside the NAT chain).
    if naming.nat_gateway("ap-northeast-2a") in made:
        assert strict.shown["nat-gateway"] > 0
        assert strict.refused[("ReleaseAddress", "AuthFailure")] >= strict.linger_refusals
    if {naming.instance(0), naming.instance(1)} & made:
        assert strict.shown["instance"] > 0
    if naming.LOAD_BALANCER in made:
        assert strict.refused[("DeleteSecurityGroup", "DependencyViolation")] >= strict.linger_refusals


def held_at_nat_gateway(session: boto3.Session) -> tuple[str, Callable[[], bool]]:
    held = hold_nat_gateways(session)
    return naming.nat_gateway("ap-northeast-2a"), lambda: held.polls > 0


def held_at_instances(session: boto3.Session) -> tuple[str, Callable[[], bool]]:
    return naming.instance(0), hold_instances_pending(session).is_set


@pytest.mark.parametrize("hold", [held_at_nat_gateway, held_at_instances], ids=["nat", "instances"])
async def test_cancel_mid_way_rolls_everything_back(
    client, aws: AwsClients, strict: StrictAws, worker, hold: Callable[..., tuple[str, Callable[[], bool]]]
) -> None:
    step, holding = hold(aws.session)
    before = inventory()
    handle = await start(client, worker, fast_spec())
    launched = naming.instance(1)
    await eventually(
        lambda: handle.query(DeployWorkflow.progress),
        lambda p: (
            p.step(step).state is StepState.RUNNING
            and holding()
            # held at the NAT gateway, the instances still launch: they need no route
            and (hold is held_at_instances or p.step(launched).state is StepState.DONE)
        ),
    )
    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    progress = await handle.query(DeployWorkflow.progress)
    assert progress.phase is Phase.CANCELLED and progress.left_behind == []
    assert progress.step(step).state is StepState.COMPENSATED
    assert inventory() == before
    assert_strictness_was_met(strict)  # either way the instances were running, and were waited out


@pytest.mark.parametrize("nat_mode", ["single", "per_az"])
async def test_down_removes_a_completed_deployment(client, strict: StrictAws, worker, nat_mode: str) -> None:
    before = inventory()
    spec = fast_spec(nat_mode=nat_mode)
    outputs = await (await start(client, worker, spec)).result()
    assert len(outputs.nat_gateway_ids) == (2 if nat_mode == "per_az" else 1)

    request = TeardownInput(
        scope=Scope(deployment_id=spec.deployment_id, region=spec.region), timing=FAST_TIMING
    )
    await client.execute_workflow(
        TeardownWorkflow.run, request, id=f"teardown-{spec.deployment_id}", task_queue=worker.task_queue
    )

    assert inventory() == before
    assert_strictness_was_met(strict)
