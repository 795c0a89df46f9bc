"""bench/_shared_polls.py, the experiment bench/concurrency.py --shared-polls measures: concurrent waits
of one kind share one describe per poll, and each still returns when, and only when, its own resource
is ready (judged by botocore's acceptors), or fails as the single-id wait would.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from models.resources import Waiting
from simulate.latency import LatencyModel
from simulate.profile import load_profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _shared_polls import SharedPolls  # noqa: E402

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


def test_waits_of_one_kind_share_polls_and_each_waits_for_its_own(aws):
    model = LatencyModel(load_profile(scale=0.01)).install(aws.session)  # NAT available after 1.05 s
    created: dict[str, float] = {}
    gateways = []
    for _ in range(4):
        (gateway,) = nat_gateways(aws, 1)
        created[gateway] = time.monotonic()
        gateways.append(gateway)
    polls = SharedPolls()
    returned: dict[str, float] = {}

    def wait(gateway: str) -> None:
        ActivityEnvironment().run(
            polls.wait_for, aws.ec2(REGION), "nat_gateway_available", POLL, gateway, NatGatewayIds=[gateway]
        )
        returned[gateway] = time.monotonic()

    threads = [threading.Thread(target=wait, args=(g,)) for g in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(returned) == set(gateways)
    # Nobody returned before its own gateway was available (1.05 s after its create answered).
    assert all(returned[g] - created[g] >= 1.0 for g in gateways)
    assert model.held["nat_gateway"] >= 1
    # Four waits polled together: fewer describes than four waits polling alone would need.
    assert 0 < polls.calls < model.held["nat_gateway"]


def test_a_failed_state_fails_the_wait_like_the_single_one(aws):
    def failed(parsed, **_):
        for item in parsed.get("NatGateways", []):
            item["State"] = "failed"

    # Before the first client: clients copy the session's hooks when they are built.
    aws.session.events.register("after-call.ec2.DescribeNatGateways", failed)
    (gateway,) = nat_gateways(aws, 1)
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            SharedPolls().wait_for,
            aws.ec2(REGION),
            "nat_gateway_available",
            POLL,
            "the NAT gateway",
            NatGatewayIds=[gateway],
        )
    assert raised.value.type == "WaiterFailure" and raised.value.non_retryable


def test_other_waits_go_to_the_single_wait(aws):
    polls = SharedPolls()
    (gateway,) = nat_gateways(aws, 1)
    # Two ids in one wait: not shared, activities.waits.wait_for answers (moto: available at once).
    ActivityEnvironment().run(
        polls.wait_for, aws.ec2(REGION), "nat_gateway_available", POLL, "x", NatGatewayIds=[gateway, gateway]
    )
    assert polls.calls == 0
