"""Which layer retries what (DESIGN.md section 2), seen on the wire.

Reads and deletes: botocore's standard retries first, then Temporal's retry policy. Creates: never
resent by botocore (a lost reply would make a twin); the activity's retry looks the resource up first.
Permanent errors: one call, no retry storm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import HTTPClientError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, CancelledError

from activities import AwsClients, LoadBalancingActivities, NetworkActivities
from activities.aws_clients import call_limits
from activities.errors import aws_errors
from models.spec import TimingSpec, call_budget_seconds
from tests.support.attempts import attempt_environment
from tests.support.inventory import added, inventory
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.wire import WireFault
from tests.test_activities import Account
from workflows.deploy import DeployWorkflow

AWS_TIMING = TimingSpec()
"""The default timeouts: a quick step's call may take 30 s, which holds all of botocore's retries of
a throttled read that fails fast (FAST_TIMING's 5 s holds two or three, as the random backoff falls;
activities/aws_clients.py)."""
BOTOCORE_READ_ATTEMPTS = call_limits(call_budget_seconds(AWS_TIMING.call_timeout_seconds, None)).attempts


def call(fn: Callable[..., Any], arg: Any) -> Any:
    return attempt_environment(AWS_TIMING).run(fn, arg)


class Hooked(Account):
    """Set-up (preflight) on clean clients; the activities under test on `aws`, whose session carries
    the wire fault before its first client is built (clients copy the session's hooks at creation)."""

    def __init__(self, aws: AwsClients, fault: WireFault) -> None:
        super().__init__(AwsClients(boto3.Session()))
        self.clean = NetworkActivities(AwsClients(boto3.Session()))
        fault.install(aws.session)
        self.network, self.lb = NetworkActivities(aws), LoadBalancingActivities(aws)


def test_throttled_read_is_retried_by_botocore_inside_one_activity_call(aws: AwsClients):
    fault = WireFault("ec2", "DescribeSubnets", "RequestLimitExceeded", 503, times=2)
    account = Hooked(aws, fault)
    subnet = call(account.network.create_private_subnet, account.subnet())
    assert subnet.id.startswith("subnet-")
    assert fault.answered == [1, 2] and fault.attempts == 3


def test_throttled_elbv2_read_is_retried_by_botocore(aws: AwsClients):
    fault = WireFault("elbv2", "DescribeTargetGroups", "Throttling", 400, times=2)
    account = Hooked(aws, fault)
    group = call(account.lb.create_target_group, account.target_group())
    assert group.id.startswith("arn:") and fault.attempts == 3


def test_throttled_create_is_not_resent_by_botocore_but_by_the_activity(aws: AwsClients):
    fault = WireFault("ec2", "CreateSubnet", "RequestLimitExceeded", 503, times=1)
    account = Hooked(aws, fault)
    before = inventory()
    with pytest.raises(ApplicationError) as throttled:
        call(account.network.create_private_subnet, account.subnet())
    assert not throttled.value.non_retryable
    assert fault.attempts == 1  # no blind resend
    retried = call(account.network.create_private_subnet, account.subnet())  # Temporal's next attempt
    assert fault.attempts == 2 and {retried.id} == added(before, inventory())["subnets"]


def test_failing_delete_is_retried_by_botocore(aws: AwsClients):
    fault = WireFault("ec2", "DeleteSubnet", "ServiceUnavailable", 503, times=1)
    account = Hooked(aws, fault)
    subnet = call(account.clean.create_private_subnet, account.subnet())
    assert call(account.network.delete_subnet, account.delete(subnet.name)).id == subnet.id
    assert fault.attempts == 2


def test_permanent_error_is_one_call_and_not_retryable(aws: AwsClients):
    fault = WireFault("ec2", "DescribeSubnets", "UnauthorizedOperation", 403, times=99)
    account = Hooked(aws, fault)
    with pytest.raises(ApplicationError) as denied:
        call(account.network.create_private_subnet, account.subnet())
    assert denied.value.non_retryable and "UnauthorizedOperation" in denied.value.message
    assert fault.attempts == 1


async def test_when_botocore_gives_up_temporal_retries_the_activity(client: Client, aws: AwsClients, worker):
    """Two more throttles than botocore's attempts: the preflight activity's first attempt fails, its
    second succeeds, and the deployment completes with nothing twice."""
    times = BOTOCORE_READ_ATTEMPTS + 2
    fault = WireFault("ec2", "DescribeVpcs", "RequestLimitExceeded", 503, times=times).install(aws.session)
    before = inventory()
    spec = fast_spec(timing={**FAST_TIMING, "call_timeout_seconds": AWS_TIMING.call_timeout_seconds})
    handle = await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )
    outputs = await handle.result()

    assert fault.answered == list(range(1, times + 1))
    started = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert started[0] == 2  # preflight: botocore's attempts in the first, the rest in the second
    assert all(attempt == 1 for attempt in started[1:])
    created = added(before, inventory())
    assert len(created["instances"]) == 2 and len(created["nat_gateways"]) == 1 and outputs.alb_dns_name


def test_a_cancellation_raised_mid_request_stays_a_cancellation():
    """The SDK cancels a threaded activity by raising in its thread; botocore wraps it when it lands
    inside an HTTP request. It must leave the activity as the cancellation, not "cannot reach AWS"."""

    @aws_errors
    def request() -> None:
        raise HTTPClientError(error=CancelledError("Cancelled"))

    with pytest.raises(CancelledError):
        request()
