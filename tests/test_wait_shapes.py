"""Wait shape (b), which bench/concurrency.py compares with the product's (a): it must deploy correctly.

The product waits one way (activities/waits.py); (b) lives in bench/_retry_shape.py, installed on a
benchmark's worker: a wait is one check per activity attempt, "not ready" is a benign retryable
failure and the retry policy is the poll schedule, so the polls show as the attempt count of the
waiting activities. The wait's timeout counts from the first attempt and ends the wait with the same
message as (a). The deployment below fails if the product stops reaching either of its hooks.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from bench import _retry_shape
from models.resources import NatGatewayInput, Waiting
from simulate.latency import LatencyModel
from simulate.profile import load_profile
from tests.support.specs import fast_spec
from worker import build_worker
from workflows import options
from workflows.deploy import DeployWorkflow

WAIT = Waiting(poll_interval_seconds=1, timeout_seconds=60)


def attempt_scheduled(ago: timedelta) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, scheduled_time=datetime.now(UTC) - ago)
    return env


def test_not_ready_is_a_benign_retryable_failure():
    with pytest.raises(ApplicationError) as raised:
        attempt_scheduled(timedelta(seconds=5)).run(_retry_shape.check_once, lambda: False, WAIT, "the NAT")
    assert raised.value.type == "NotReady" and not raised.value.non_retryable
    assert raised.value.category is ApplicationErrorCategory.BENIGN


def test_timeout_counts_from_the_first_attempt():
    with pytest.raises(ApplicationError) as raised:
        attempt_scheduled(timedelta(seconds=61)).run(_retry_shape.check_once, lambda: False, WAIT, "the NAT")
    assert raised.value.type == "WaitTimeout" and raised.value.non_retryable
    assert raised.value.message == "timed out after 60 s waiting for the NAT"


def test_ready_returns_at_once():
    checks = []
    attempt_scheduled(timedelta(seconds=61)).run(
        _retry_shape.check_once, lambda: checks.append(1) or True, WAIT, "x"
    )
    assert checks == [1]


def test_retry_options_make_the_retry_policy_the_poll_schedule():
    spec = fast_spec()
    chosen = options.activity_options(spec.timing, WAIT) | _retry_shape.wait_options(spec.timing, WAIT)
    policy = chosen["retry_policy"]
    assert policy.initial_interval == policy.maximum_interval == timedelta(seconds=1)
    assert policy.backoff_coefficient == 1.0 and policy.maximum_attempts == 0
    assert chosen["heartbeat_timeout"] is None
    assert chosen["start_to_close_timeout"] == timedelta(seconds=spec.timing.call_timeout_seconds)
    assert chosen["schedule_to_close_timeout"] > timedelta(seconds=WAIT.timeout_seconds)


def test_a_wait_scheduled_before_the_shape_left_the_product_still_decodes():
    """Requests of runs in flight across the upgrade carry `shape: "poll"`."""
    request = NatGatewayInput.model_validate_json(
        '{"key": {"scope": {"deployment_id": "d", "region": "r"}, "name": "nat"}, "subnet_id": "s",'
        ' "allocation_id": "a", "waiting": {"poll_interval_seconds": 1, "timeout_seconds": 60,'
        ' "shape": "poll"}}'
    )
    assert request.waiting == WAIT


async def test_deployment_with_retry_shape_completes_and_polls_by_attempts(client, aws, monkeypatch):
    shape = _retry_shape.install(monkeypatch.setattr)
    model = LatencyModel(load_profile(scale=0.01)).install(aws.session)
    spec = fast_spec()
    worker = build_worker(client, f"tq-{uuid.uuid4()}", aws, sandboxed=True, interceptors=[shape])
    async with worker:
        handle = await client.start_workflow(
            DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
        )
        outputs = await handle.result()
    assert outputs.load_balancer_arn and len(outputs.instance_ids) == 2
    assert model.held["nat_gateway"] >= 1 and model.held["load_balancer"] >= 1
    attempts: dict[str, int] = {}
    scheduled: dict[int, str] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attributes.activity_type.name
            if attributes.activity_type.name == "create_nat_gateway":
                # The interceptor's options, not the product's: no heartbeat, the poll schedule.
                assert attributes.heartbeat_timeout.ToTimedelta() == timedelta(0)
                assert attributes.retry_policy.backoff_coefficient == 1.0
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            name = scheduled[started.scheduled_event_id]
            attempts[name] = max(attempts.get(name, 0), started.attempt)
    # The NAT gateway and the ALB answered "not yet" at least once: their activities were retried.
    assert attempts["create_nat_gateway"] > 1 and attempts["create_load_balancer"] > 1
