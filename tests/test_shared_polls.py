"""activities/shared_polls.py: concurrent waits of one kind share one describe per poll, and each still
returns when, and only when, its own resource is ready (judged by botocore's acceptors), or fails as
the single-id wait would, with the same words.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.shared_polls import SHARED
from activities.waits import wait_for
from models.resources import Waiting
from simulate.latency import LatencyModel
from simulate.profile import load_profile
from tests.support.faults import InjectedFault, error_response

REGION = "ap-northeast-2"
POLL = Waiting(poll_interval_seconds=0.05, timeout_seconds=20)


def nat_gateways(aws, count: int) -> list[str]:
    ec2 = aws.ec2(REGION)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    ids = []
    for _ in range(count):
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ids.append(
            ec2.create_nat_gateway(SubnetId=subnet, AllocationId=allocation)["NatGateway"]["NatGatewayId"]
        )
    return ids


def in_threads(work: Callable[[str], None], ids: list[str]) -> dict[str, BaseException]:
    """Run `work` for each id at once; the exceptions raised, by id."""
    raised: dict[str, BaseException] = {}

    def run(resource_id: str) -> None:
        try:
            work(resource_id)
        except BaseException as err:  # noqa: BLE001 - reported to the test
            raised[resource_id] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return raised


def test_waits_of_one_kind_share_polls_and_each_waits_for_its_own(aws):
    model = LatencyModel(load_profile(scale=0.01)).install(aws.session)  # NAT available after 1.05 s
    created: dict[str, float] = {}
    for _ in range(4):
        (gateway,) = nat_gateways(aws, 1)
        created[gateway] = time.monotonic()
    calls_before = SHARED.calls
    returned: dict[str, float] = {}

    def wait(gateway: str) -> None:
        ActivityEnvironment().run(
            wait_for, aws.ec2(REGION), "nat_gateway_available", POLL, gateway, NatGatewayIds=[gateway]
        )
        returned[gateway] = time.monotonic()

    assert in_threads(wait, list(created)) == {}
    assert set(returned) == set(created)
    # Nobody returned before its own gateway was available (1.05 s after its create answered).
    assert all(returned[g] - created[g] >= 1.0 for g in created)
    assert model.held["nat_gateway"] >= 1
    # Four waits polled together: fewer describes than four waits polling alone would need.
    assert 0 < SHARED.calls - calls_before < model.held["nat_gateway"]


def test_a_failed_state_fails_the_wait_with_the_single_waits_words(aws):
    def failed(parsed, **_):
        for item in parsed.get("NatGateways", []):
            item["State"] = "failed"

    # Before the first client: clients copy the session's hooks when they are built.
    aws.session.events.register("after-call.ec2.DescribeNatGateways", failed)
    gateways = nat_gateways(aws, 2)

    def wait(gateway: str) -> None:
        ActivityEnvironment().run(
            wait_for,
            aws.ec2(REGION),
            "nat_gateway_available",
            POLL,
            "the NAT gateway",
            NatGatewayIds=[gateway],
        )

    raised = in_threads(wait, gateways)
    assert set(raised) == set(gateways)
    for err in raised.values():
        assert isinstance(err, ApplicationError)
        assert err.type == "WaiterFailure" and err.non_retryable
        assert "terminal failure state" in str(err)  # botocore's own words, as the single-id wait says


def test_an_error_the_waiter_expects_is_its_verdict(aws):
    """NatGatewayNotFound means `deleted` to nat_gateway_deleted: one call decides, none is repeated."""
    gone = InjectedFault("ec2", "DescribeNatGateways", code="NatGatewayNotFound").install(aws.session)
    (gateway,) = nat_gateways(aws, 1)  # clients copy the session's hooks when built: fault first
    ActivityEnvironment().run(
        wait_for, aws.ec2(REGION), "nat_gateway_deleted", POLL, "gone", NatGatewayIds=[gateway]
    )
    assert gone.calls == 1


def test_an_error_no_acceptor_expects_is_raised_as_the_single_wait_raises_it(aws):
    InjectedFault("ec2", "DescribeNatGateways").install(aws.session)  # UnauthorizedOperation
    (gateway,) = nat_gateways(aws, 1)
    with pytest.raises(ClientError) as raised:  # the activity's @aws_errors classifies it
        ActivityEnvironment().run(
            wait_for, aws.ec2(REGION), "nat_gateway_available", POLL, "it", NatGatewayIds=[gateway]
        )
    assert raised.value.response["Error"]["Code"] == "UnauthorizedOperation"


def test_one_unknown_id_fails_a_shared_call_and_each_wait_asks_alone(aws):
    """AWS fails the whole call for one unknown id: no wait may take that error for its own."""
    unknown = "nat-0000000000000000b"

    def like_aws(params, **_):  # moto leaves unknown ids out of the answer instead
        if unknown in str(params):  # the serialized request
            return error_response("NatGatewayNotFound", f"The Nat Gateway {unknown} was not found")
        return None

    aws.session.events.register("before-call.ec2.DescribeNatGateways", like_aws)
    gateways = nat_gateways(aws, 2)
    client, waiter = aws.ec2(REGION), "nat_gateway_available"
    for resource_id in [*gateways, unknown]:
        SHARED.join(client, waiter, resource_id)
    try:
        verdict = SHARED.next_verdict(client, waiter, gateways[0], -1, POLL)
        verdicts = SHARED.group(client, waiter).verdicts
        assert verdict.ask_alone
        assert all(verdicts[i].ask_alone and not verdicts[i].done for i in [*gateways, unknown])
    finally:
        for resource_id in [*gateways, unknown]:
            SHARED.leave(client, waiter, resource_id)
    # Asked alone, the known ones are available (moto: at once).
    for gateway in gateways:
        ActivityEnvironment().run(wait_for, client, waiter, POLL, gateway, NatGatewayIds=[gateway])
    assert SHARED.group(client, waiter).waiting == {}


def test_other_waits_go_to_the_single_wait(aws):
    (gateway,) = nat_gateways(aws, 1)
    calls_before = SHARED.calls
    # Two ids in one wait: not shared (moto: available at once).
    ActivityEnvironment().run(
        wait_for, aws.ec2(REGION), "nat_gateway_available", POLL, "x", NatGatewayIds=[gateway, gateway]
    )
    assert SHARED.calls == calls_before


def test_instance_waits_share_the_small_status_answer_and_wait_for_running(aws):
    """Instances are polled together with DescribeInstanceStatus, read by instance_running's own
    acceptors; a terminated instance fails its wait as the single wait (DescribeInstances) says."""
    model = LatencyModel(load_profile(scale=0.01)).install(aws.session)  # running after 0.25 s
    asked: list[str] = []
    aws.session.events.register("before-call.ec2", lambda model, **_: asked.append(model.name))
    ec2 = aws.ec2(REGION)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    launched = ec2.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3, SubnetId=subnet)
    ids = [i["InstanceId"] for i in launched["Instances"]]
    ec2.terminate_instances(InstanceIds=ids[2:])
    asked.clear()

    def wait(instance_id: str) -> None:
        ActivityEnvironment().run(
            wait_for, ec2, "instance_running", POLL, f"instance {instance_id}", InstanceIds=[instance_id]
        )

    raised = in_threads(wait, ids)
    assert set(raised) == {ids[2]} and "terminal failure state" in str(raised[ids[2]])
    assert model.held["instance"] >= 1  # the two others were seen pending before running
    assert asked.count("DescribeInstanceStatus") >= 2
    assert asked.count("DescribeInstances") <= 2  # only the failed one asked alone
