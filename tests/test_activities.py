"""Each activity against moto, through Temporal's activity environment: creates are find-or-create,
deletes are idempotent (twice, and on something that never existed)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import (
    AwsClients,
    ComputeActivities,
    InventoryActivities,
    LoadBalancingActivities,
    NetworkActivities,
    PreflightActivities,
    SecurityGroupActivities,
)
from activities.errors import DUPLICATE_CODES, aws_errors
from activities.waits import poll_until
from models.resources import (
    DeleteInput,
    IngressRule,
    InstanceInput,
    ListenerInput,
    LoadBalancerInput,
    NatGatewayInput,
    PreflightInput,
    PreflightResult,
    RegisterTargetsInput,
    ResourceKey,
    RouteTableInput,
    Scope,
    SecurityGroupInput,
    SubnetInput,
    TargetGroupInput,
    Waiting,
)
from tests.support.attempts import attempt_environment
from tests.support.faults import InjectedFault
from tests.support.inventory import counts
from tests.support.specs import fast_spec

WAIT = Waiting(poll_interval_seconds=0.01, timeout_seconds=10)


def call(fn: Callable[..., Any], arg: Any) -> Any:
    return attempt_environment().run(fn, arg)


class Account:
    """Activities bound to fresh clients, plus what preflight found."""

    def __init__(self, aws: AwsClients) -> None:
        self.network = NetworkActivities(aws)
        self.groups = SecurityGroupActivities(aws)
        self.lb = LoadBalancingActivities(aws)
        self.compute = ComputeActivities(aws)
        self.inventory = InventoryActivities(aws)
        self.spec = fast_spec()
        self.scope = Scope(deployment_id=self.spec.deployment_id, region=self.spec.region)
        self.pre: PreflightResult = call(PreflightActivities(aws).preflight, PreflightInput(spec=self.spec))

    def key(self, name: str) -> ResourceKey:
        return ResourceKey(scope=self.scope, name=name)

    def delete(self, name: str) -> DeleteInput:
        return DeleteInput(key=self.key(name), waiting=WAIT)

    def delete_twice(self, steps: list[tuple[str, Callable[..., Any]]]) -> None:
        """Each delete in order; then all again, which must find nothing and still succeed."""
        for name, delete in steps:
            call(delete, self.delete(name))
        for name, delete in steps:
            assert call(delete, self.delete(name)).id is None, name

    def subnet(self, az: str = "ap-northeast-2a", cidr: str = "172.31.112.0/20") -> SubnetInput:
        return SubnetInput(
            key=self.key(f"subnet-private-{az}"), vpc_id=self.pre.vpc_id, cidr=cidr, availability_zone=az
        )

    def nat(self, allocation_id: str) -> NatGatewayInput:
        return NatGatewayInput(
            key=self.key("nat-a"),
            subnet_id=self.pre.public_subnet_ids["ap-northeast-2a"],
            allocation_id=allocation_id,
            waiting=WAIT,
        )

    def group(self, name: str = "sg-alb", source: str | None = None) -> SecurityGroupInput:
        rule = IngressRule(port=80, cidr=None if source else "0.0.0.0/0", source_security_group_id=source,
                           description="test")  # fmt: skip
        return SecurityGroupInput(key=self.key(name), vpc_id=self.pre.vpc_id, description="t", ingress=[rule])

    def target_group(self) -> TargetGroupInput:
        return TargetGroupInput(
            key=self.key("tg-app"), vpc_id=self.pre.vpc_id, port=3000, health_check_path="/"
        )

    def balancer(self, group_id: str) -> LoadBalancerInput:
        return LoadBalancerInput(
            key=self.key("alb"),
            subnet_ids=list(self.pre.public_subnet_ids.values()),
            security_group_id=group_id,
            waiting=WAIT,
        )

    def instance(self, subnet_id: str, group_id: str) -> InstanceInput:
        return InstanceInput(
            key=self.key("app-0"), subnet_id=subnet_id, security_group_id=group_id, ami_id=self.pre.ami_id,
            instance_type="t2.micro", root_volume_gib=8, app_port=3000, waiting=WAIT,
        )  # fmt: skip


@pytest.fixture
def account(aws: AwsClients) -> Account:
    return Account(aws)


def test_preflight_finds_the_default_vpc_public_subnets_and_ami(account: Account, ec2):
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    assert account.pre.vpc_id == vpc["VpcId"]
    assert set(account.pre.public_subnet_ids) == {"ap-northeast-2a", "ap-northeast-2c"}
    assert ec2.describe_images(ImageIds=[account.pre.ami_id])["Images"]


def test_subnet_twice_is_one_subnet_and_deletes_are_idempotent(account: Account):
    before = counts()
    first = call(account.network.create_private_subnet, account.subnet())
    second = call(account.network.create_private_subnet, account.subnet())
    assert first == second and counts()["subnets"] == before["subnets"] + 1
    assert call(account.network.delete_subnet, account.delete(first.name)).id == first.id
    assert call(account.network.delete_subnet, account.delete(first.name)).id is None
    assert counts() == before


def test_lost_reply_on_create_is_found_on_retry(account: Account, aws: AwsClients):
    """The create succeeded in AWS but the client saw an error: the retry must not make a twin."""

    def lose_reply(**kwargs: Any) -> None:
        lose_reply.calls += 1  # type: ignore[attr-defined]
        if lose_reply.calls == 1:  # type: ignore[attr-defined]
            raise ConnectionResetError("reply lost")

    lose_reply.calls = 0  # type: ignore[attr-defined]
    aws.session.events.register("after-call.ec2.AllocateAddress", lose_reply)
    before = counts()["addresses"]
    with pytest.raises(ConnectionResetError):
        call(account.network.allocate_elastic_ip, account.key("eip-nat-a"))
    retried = call(account.network.allocate_elastic_ip, account.key("eip-nat-a"))
    assert counts()["addresses"] == before + 1
    assert retried.allocation_id


def test_elastic_ip_and_nat_gateway(account: Account):
    before = counts()
    eip = call(account.network.allocate_elastic_ip, account.key("eip-nat-a"))
    assert call(account.network.allocate_elastic_ip, account.key("eip-nat-a")) == eip
    nat = call(account.network.create_nat_gateway, account.nat(eip.allocation_id))
    assert call(account.network.create_nat_gateway, account.nat(eip.allocation_id)) == nat
    assert counts()["nat_gateways"] == before["nat_gateways"] + 1
    account.delete_twice(
        [("nat-a", account.network.delete_nat_gateway), ("eip-nat-a", account.network.release_elastic_ip)]
    )
    assert counts() == before


def test_route_table_with_route_and_associations(account: Account, ec2):
    before = counts()
    subnet = call(account.network.create_private_subnet, account.subnet())
    eip = call(account.network.allocate_elastic_ip, account.key("eip-nat-a"))
    nat = call(account.network.create_nat_gateway, account.nat(eip.allocation_id))
    request = RouteTableInput(
        key=account.key("rt-private"),
        vpc_id=account.pre.vpc_id,
        nat_gateway_id=nat.id,
        subnet_ids=[subnet.id],
    )
    table = call(account.network.create_private_route_table, request)
    assert call(account.network.create_private_route_table, request) == table
    described = ec2.describe_route_tables(RouteTableIds=[table.id])["RouteTables"][0]
    assert [r["NatGatewayId"] for r in described["Routes"] if r.get("NatGatewayId")] == [nat.id]
    assert [a["SubnetId"] for a in described["Associations"]] == [subnet.id]
    account.delete_twice(
        [
            ("rt-private", account.network.delete_route_table),
            ("nat-a", account.network.delete_nat_gateway),
            ("eip-nat-a", account.network.release_elastic_ip),
            (subnet.name, account.network.delete_subnet),
        ]
    )
    assert counts() == before


def test_security_groups_with_rules(account: Account, ec2):
    before = counts()
    alb = call(account.groups.create_security_group, account.group())
    assert call(account.groups.create_security_group, account.group()) == alb
    app = call(account.groups.create_security_group, account.group("sg-app", source=alb.id))
    described = ec2.describe_security_groups(GroupIds=[app.id])["SecurityGroups"][0]
    assert len(described["IpPermissions"]) == 1
    assert described["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == alb.id
    account.delete_twice(
        [("sg-app", account.groups.delete_security_group), ("sg-alb", account.groups.delete_security_group)]
    )
    assert counts() == before


def test_load_balancer_target_group_listener_and_targets(account: Account, elbv2):
    before = counts()
    group = call(account.groups.create_security_group, account.group())
    tg = call(account.lb.create_target_group, account.target_group())
    assert call(account.lb.create_target_group, account.target_group()) == tg
    lb = call(account.lb.create_load_balancer, account.balancer(group.id))
    assert call(account.lb.create_load_balancer, account.balancer(group.id)) == lb
    listener = ListenerInput(
        key=account.key("listener-80"), load_balancer_arn=lb.arn, target_group_arn=tg.id, port=80
    )
    created = call(account.lb.create_listener, listener)
    assert call(account.lb.create_listener, listener) == created
    subnet = call(account.network.create_private_subnet, account.subnet())
    instance = call(account.compute.launch_instance, account.instance(subnet.id, group.id))
    assert call(account.compute.launch_instance, account.instance(subnet.id, group.id)) == instance
    register = RegisterTargetsInput(
        key=account.key("targets"), target_group_arn=tg.id, instance_ids=[instance.instance_id], port=3000
    )
    call(account.lb.register_targets, register)
    call(account.lb.register_targets, register)
    health = elbv2.describe_target_health(TargetGroupArn=tg.id)["TargetHealthDescriptions"]
    assert [h["Target"]["Id"] for h in health] == [instance.instance_id]
    assert counts()["instances"] == before["instances"] + 1
    assert counts()["listeners"] == before["listeners"] + 1

    found = call(account.inventory.discover_resources, account.scope)
    assert {r.kind.value for r in found.resources} == {
        "security_group", "target_group", "load_balancer", "listener", "subnet", "instance"
    }  # fmt: skip
    account.delete_twice(
        [
            ("targets", account.lb.deregister_targets),
            ("listener-80", account.lb.delete_listener),
            ("alb", account.lb.delete_load_balancer),
            ("app-0", account.compute.terminate_instance),
            ("tg-app", account.lb.delete_target_group),
            ("sg-alb", account.groups.delete_security_group),
            (subnet.name, account.network.delete_subnet),
        ]
    )
    assert counts() == before
    assert call(account.inventory.discover_resources, account.scope).resources == []


def test_names_taken_by_someone_else_are_refused(account: Account, elbv2):
    elbv2.create_target_group(Name=f"{account.scope.deployment_id}-tg", Protocol="HTTP", Port=80,
                              VpcId=account.pre.vpc_id)  # fmt: skip
    with pytest.raises(ApplicationError) as err:
        call(account.lb.create_target_group, account.target_group())
    assert err.value.non_retryable and "another deployment" in err.value.message


def test_error_classification(account: Account, aws: AwsClients):
    # Hooks go on the session before its first create client is built.
    InjectedFault("ec2", "CreateSubnet", code="Throttling", status=400).install(aws.session)
    InjectedFault("ec2", "AllocateAddress", code="AddressLimitExceeded").install(aws.session)
    with pytest.raises(ApplicationError) as throttled:
        call(account.network.create_private_subnet, account.subnet())
    assert not throttled.value.non_retryable
    with pytest.raises(ApplicationError) as limit:
        call(account.network.allocate_elastic_ip, account.key("eip"))
    assert limit.value.non_retryable and "release unused Elastic IPs" in limit.value.message


def test_preflight_reports_every_problem_at_once(aws: AwsClients, ec2):
    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    taken = ec2.create_subnet(VpcId=vpc_id, CidrBlock="172.31.112.0/24", AvailabilityZone="ap-northeast-2a")
    spec = fast_spec(
        deployment_id=f"p-{uuid.uuid4().hex[:8]}",
        instances={"ami_id": "ami-0123456789abcdef0", "instance_type": "t9.bogus"},
    )
    with pytest.raises(ApplicationError) as err:
        call(PreflightActivities(aws).preflight, PreflightInput(spec=spec))
    message = err.value.message
    assert err.value.non_retryable and err.value.type == "PreflightFailed"
    assert taken["Subnet"]["SubnetId"] in message
    assert "AMI ami-0123456789abcdef0 does not exist" in message
    assert "t9.bogus is not offered" in message


def test_duplicate_on_a_retry_is_retried_but_not_on_the_first_attempt(account: Account, ec2):
    """A conflict on attempt 2+ may be our own create whose reply was lost: look again, don't fail."""
    ec2.create_subnet(
        VpcId=account.pre.vpc_id, CidrBlock="172.31.112.0/20", AvailabilityZone="ap-northeast-2a"
    )
    first = attempt_environment()
    with pytest.raises(ApplicationError) as err:
        first.run(account.network.create_private_subnet, account.subnet())
    assert err.value.type == "InvalidSubnet.Conflict" and err.value.non_retryable
    retry = attempt_environment(attempt=2)
    with pytest.raises(ApplicationError) as err:
        retry.run(account.network.create_private_subnet, account.subnet())
    assert not err.value.non_retryable


def test_preflight_does_not_mistake_an_aws_error_for_a_missing_ami(aws: AwsClients):
    InjectedFault("ec2", "DescribeImages", code="UnauthorizedOperation").install(aws.session)
    with pytest.raises(ApplicationError) as err:
        call(PreflightActivities(aws).preflight, PreflightInput(spec=fast_spec()))
    assert err.value.type == "UnauthorizedOperation" and "does not exist" not in err.value.message


@activity.defn(no_thread_cancel_exception=True)
def wait_forever(polled: threading.Event) -> None:
    """A wait whose thread is never interrupted: only the pause between polls can notice the cancel
    (as when the SDK's in-thread CancelledError lands inside botocore and is swallowed)."""

    def check() -> bool:
        polled.set()
        return False

    poll_until(check, Waiting(poll_interval_seconds=30, timeout_seconds=600), "something")


async def test_a_wait_ends_at_its_next_pause_once_cancelled() -> None:
    environment, polled = ActivityEnvironment(), threading.Event()
    waiting = asyncio.create_task(asyncio.to_thread(environment.run, wait_forever, polled))
    await asyncio.to_thread(polled.wait)

    environment.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, timeout=60)  # a 30 s poll interval: only the cancel ends it early


@activity.defn
def create_refused(code: str) -> None:
    """A create whose AWS answer is `code`, through the activities' own error handling."""

    @aws_errors
    def create() -> None:
        raise ClientError({"Error": {"Code": code, "Message": "refused"}}, "CreateNatGateway")

    create()


@pytest.mark.parametrize("code", sorted(DUPLICATE_CODES))
def test_each_duplicate_answer_fails_the_first_attempt_and_is_retried_on_later_ones(code: str) -> None:
    with pytest.raises(ApplicationError) as first:
        ActivityEnvironment().run(create_refused, code)
    assert first.value.non_retryable and first.value.type == code
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)
    with pytest.raises(ApplicationError) as later:
        retry.run(create_refused, code)
    assert not later.value.non_retryable


def test_the_root_volume_maps_to_the_amis_root_device_found_by_preflight(aws: AwsClients, ec2):
    """Preflight reads the AMI once; launches use its root device without asking again."""
    described: list[str] = []
    aws.session.events.register("before-call.ec2.DescribeImages", lambda **_: described.append("x"))
    account = Account(aws)  # preflight: the one DescribeImages
    image = ec2.describe_images(ImageIds=[account.pre.ami_id])["Images"][0]
    assert account.pre.root_device_name == image["RootDeviceName"]
    assert len(described) == 1
    group = call(account.groups.create_security_group, account.group())
    subnet = call(account.network.create_private_subnet, account.subnet())

    def devices(request: InstanceInput) -> list[str]:
        launched = call(account.compute.launch_instance, request)
        found = ec2.describe_instances(InstanceIds=[launched.instance_id])["Reservations"][0]["Instances"][0]
        call(account.compute.terminate_instance, account.delete(request.key.name))
        return [mapping["DeviceName"] for mapping in found["BlockDeviceMappings"]]

    given = account.instance(subnet.id, group.id).model_copy(update={"root_device_name": "/dev/sdf"})
    assert devices(given) == ["/dev/sdf"] and len(described) == 1
    # A run started before preflight reported it: looked up at launch.
    assert devices(account.instance(subnet.id, group.id)) == [image["RootDeviceName"]]
    assert len(described) == 2


def test_a_wait_polls_less_often_as_it_ages_up_to_its_maximum_interval() -> None:
    waiting = Waiting(poll_interval_seconds=0.05, max_poll_interval_seconds=0.2, timeout_seconds=30)
    assert [waiting.interval(age) for age in (0, 0.1, 0.4, 0.6, 5)] == [0.05, 0.05, 0.1, 0.15, 0.2]
    assert Waiting(poll_interval_seconds=0.05, timeout_seconds=1).interval(100) == 0.05  # runs from before
    checks: list[float] = []

    def check() -> bool:
        checks.append(time.monotonic())
        return checks[-1] - checks[0] > 1.5

    ActivityEnvironment().run(poll_until, check, waiting, "something old")
    gaps = [later - earlier for earlier, later in zip(checks, checks[1:], strict=False)]
    # Every 0.05 s throughout would be 30 checks; a quarter of the age, capped at 0.2 s, is ~15.
    assert len(checks) < 20
    assert all(gap >= 0.19 for earlier, gap in zip(checks, gaps, strict=False) if earlier - checks[0] >= 0.8)


def test_preflight_keeps_the_regions_static_facts_and_asks_afresh_for_the_rest(aws: AwsClients):
    asked: Counter[str] = Counter()
    aws.session.events.register("before-call", lambda model, **_: asked.update([model.name]))
    preflight = PreflightActivities(aws)
    call(preflight.preflight, PreflightInput(spec=fast_spec()))
    first, static = Counter(asked), {
        "DescribeAvailabilityZones", "GetParameter", "DescribeImages", "DescribeInstanceTypeOfferings"
    }  # fmt: skip
    asked.clear()
    call(preflight.preflight, PreflightInput(spec=fast_spec()))
    assert static <= set(first) and not static & set(asked)
    assert asked["DescribeSubnets"] == first["DescribeSubnets"] > 0
    assert asked["DescribeAddresses"] == first["DescribeAddresses"] > 0
    # A missing AMI is not kept: fixed (here: still missing), it is asked for again.
    missing = fast_spec().model_copy(update={"instances": fast_spec().instances.model_copy(
        update={"ami_id": "ami-00000000000000000"})})  # fmt: skip
    for _ in range(2):
        asked.clear()
        with pytest.raises(ApplicationError, match="ami-00000000000000000 does not exist"):
            call(preflight.preflight, PreflightInput(spec=missing))
        assert asked["DescribeImages"] == 1


def test_a_create_known_to_be_new_looks_for_an_earlier_one_only_on_a_retry(aws: AwsClients):
    """`known_new` skips the lookup on the first attempt; a retry looks, and adopts what came before."""
    asked: Counter[str] = Counter()
    aws.session.events.register("before-call", lambda model, **_: asked.update([model.name]))
    account = Account(aws)  # its clients are built now, with the hook

    def known_new(request: Any) -> Any:
        if isinstance(request, ResourceKey):
            return request.model_copy(update={"known_new": True})
        return request.model_copy(update={"key": known_new(request.key)})

    cases = [
        (account.network.create_private_subnet, account.subnet(), "DescribeSubnets"),
        (account.network.allocate_elastic_ip, account.key("eip-nat-ap-northeast-2a"), "DescribeAddresses"),
        (account.groups.create_security_group, account.group(), "DescribeSecurityGroups"),
        (account.lb.create_target_group, account.target_group(), "DescribeTargetGroups"),
    ]
    for create, request, lookup in cases:
        asked.clear()
        first = call(create, known_new(request))
        assert asked[lookup] == 0, lookup
        retry = attempt_environment(attempt=2)
        assert retry.run(create, known_new(request)) == first  # found, not made twice
        assert asked[lookup] >= 1, lookup


def test_preflight_lists_what_the_deployment_already_has(account: Account, aws: AwsClients):
    assert account.pre.existing == []  # a new deployment: its creates may skip their lookups
    subnet = call(account.network.create_private_subnet, account.subnet())
    group = call(account.lb.create_target_group, account.target_group())
    again = call(PreflightActivities(aws).preflight, PreflightInput(spec=account.spec))
    assert again.existing == [subnet.id, group.id]
