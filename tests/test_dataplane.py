"""The local data plane in front of moto, with the real deployment workflow: the ALB answers.

Each test deploys through a worker whose AWS endpoint is the data plane (as `make demo` runs it), so
the workflow's health wait reads the data plane's own checks. Time runs at TIME_SCALE: health checks
every 0.6 s, unhealthy after 2 failed checks (AWS's defaults, scaled).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from temporalio.client import WorkflowFailureError

from activities import AwsClients
from activities.tags import DEPLOYMENT_TAG
from activities.user_data import render_user_data
from tests.support.dataplane import TIME_SCALE, Answer, RunningDataPlane, fetch, running_dataplane
from tests.support.inventory import added, inventory
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.waiting import eventually
from tests.test_deploy_workflow import deploy

REGION = "ap-northeast-2"


@pytest.fixture
def aws(dataplane: RunningDataPlane, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    """The worker's clients reach AWS through the data plane, as the demo's worker does."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", dataplane.url)
    return AwsClients(boto3.Session())


@pytest.fixture
def elbv2(dataplane: RunningDataPlane) -> Any:
    return boto3.client("elbv2", region_name=REGION, endpoint_url=dataplane.url)


async def target_states(dataplane: RunningDataPlane, dns_name: str) -> dict[str, dict[str, Any]]:
    listener = await asyncio.to_thread(dataplane.listener, dns_name)
    return {t["id"]: t for t in listener["targets"]}


async def test_local_alb_reaches_both_instances_and_sigterm_stops_their_apps(client, worker, dataplane):
    out = await deploy(client, worker, fast_spec())
    url = (await asyncio.to_thread(dataplane.listener, out.alb_dns_name))["url"]

    answers = [await asyncio.to_thread(fetch, url) for _ in range(6)]

    assert [a.status for a in answers] == [200] * 6
    assert {a.instance_id for a in answers} == set(out.instance_ids.values())
    assert {a.body["availability_zone"] for a in answers if a.body} == {"ap-northeast-2a", "ap-northeast-2c"}
    assert await asyncio.to_thread(dataplane.group_alive)  # the apps run
    dataplane.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(dataplane.process.wait, 20) == 0
    assert not dataplane.group_alive()  # no app outlives the data plane


@dataclass
class Sent:
    sent_at: float
    answered_at: float
    answer: Answer


class LoadLoop:
    """One client sending requests back to back, at most `limit`, until stopped."""

    def __init__(self, url: str, limit: int = 3000) -> None:
        self.url, self.limit = url, limit
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.sent) < self.limit:
            sent_at = time.monotonic()
            answer = fetch(self.url)
            self.sent.append(Sent(sent_at, time.monotonic(), answer))

    async def count(self) -> int:
        return len(self.sent)


async def test_killed_app_turns_unhealthy_and_only_requests_sent_to_it_before_fail(
    client, worker, dataplane, elbv2
):
    out = await deploy(client, worker, fast_spec())
    dead, alive = sorted(out.instance_ids.values())
    url = (await asyncio.to_thread(dataplane.listener, out.alb_dns_name))["url"]

    with LoadLoop(url) as load:
        await eventually(load.count, lambda n: n >= 10)
        pid = (await asyncio.to_thread(dataplane.instances))[dead]["app"]["pid"]
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        states = await eventually(
            lambda: target_states(dataplane, out.alb_dns_name),
            lambda s: s[dead]["state"] == "unhealthy",
        )
        seen_at = time.monotonic()
        after = await load.count()
        await eventually(load.count, lambda n: n >= after + 20)

    assert states[dead]["reason"] == "Target.FailedHealthChecks"
    assert states[alive]["state"] == "healthy"
    health = elbv2.describe_target_health(TargetGroupArn=out.target_group_arn)["TargetHealthDescriptions"]
    assert {h["Target"]["Id"]: h["TargetHealth"]["State"] for h in health} == {
        dead: "unhealthy",
        alive: "healthy",
    }

    # Lost: only requests that round robin gave the dead target between the kill and its unhealthy
    # state (the window): at most every other one, never two in a row (the other target kept serving).
    window = [s for s in load.sent if s.answered_at >= killed_at and s.sent_at < seen_at]
    failed = [s for s in load.sent if s.answer.status != 200]
    assert all(s.answer.status == 502 for s in failed)
    assert all(s in window for s in failed)
    assert len(failed) <= (len(window) + 1) // 2
    statuses = [s.answer.status for s in window]
    assert all(not (a != 200 and b != 200) for a, b in zip(statuses, statuses[1:], strict=False))
    later = [s for s in load.sent if s.sent_at >= seen_at]
    assert len(later) >= 20 and all(s.answer.status == 200 and s.answer.instance_id == alive for s in later)


async def test_deregistered_target_drains_its_request_in_flight_then_is_unused(
    client, worker, dataplane, elbv2
):
    out = await deploy(client, worker, fast_spec())
    delay = 200  # AWS seconds: 4 s here, longer than the slow request
    elbv2.modify_target_group_attributes(
        TargetGroupArn=out.target_group_arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}],
    )
    url = (await asyncio.to_thread(dataplane.listener, out.alb_dns_name))["url"]

    slow = asyncio.create_task(asyncio.to_thread(fetch, f"{url}/slow?ms=2500"))
    states = await eventually(
        lambda: target_states(dataplane, out.alb_dns_name),
        lambda s: any(t["in_flight"] == 1 for t in s.values()),
    )
    (leaving,) = [i for i, t in states.items() if t["in_flight"] == 1]
    (staying,) = set(out.instance_ids.values()) - {leaving}
    deregistered_at = time.monotonic()
    elbv2.deregister_targets(TargetGroupArn=out.target_group_arn, Targets=[{"Id": leaving, "Port": 3000}])

    states = await target_states(dataplane, out.alb_dns_name)
    assert states[leaving]["state"] == "draining" and states[leaving]["in_flight"] == 1
    assert (states[leaving]["reason"]) == "Target.DeregistrationInProgress"
    during = [await asyncio.to_thread(fetch, url) for _ in range(6)]
    assert [(a.status, a.instance_id) for a in during] == [(200, staying)] * 6  # no new request to it
    finished = await slow
    assert (finished.status, finished.instance_id) == (200, leaving)  # the request in flight completed

    def health() -> dict[str, str]:
        (item,) = elbv2.describe_target_health(
            TargetGroupArn=out.target_group_arn, Targets=[{"Id": leaving, "Port": 3000}]
        )["TargetHealthDescriptions"]
        return item["TargetHealth"]

    assert health()["State"] == "draining"
    final = await eventually(lambda: asyncio.to_thread(health), lambda h: h["State"] == "unused", timeout=30)
    assert final["Reason"] == "Target.NotRegistered"
    assert time.monotonic() - deregistered_at >= delay * TIME_SCALE
    listed = elbv2.describe_target_health(TargetGroupArn=out.target_group_arn)["TargetHealthDescriptions"]
    assert [h["Target"]["Id"] for h in listed] == [staying]


async def test_app_failing_its_health_check_fails_the_wait_naming_targets_and_rolls_back(client, worker, ec2):
    spec = fast_spec(
        app={"health_check_path": "/not-served"},
        timing={**FAST_TIMING, "targets_healthy_timeout_seconds": 5},
    )
    before = await asyncio.to_thread(inventory)

    with pytest.raises(WorkflowFailureError) as failure:
        await deploy(client, worker, spec)

    message = failure.value.cause.message
    launched = [
        i["InstanceId"]
        for r in ec2.describe_instances(
            Filters=[{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [spec.deployment_id]}]
        )["Reservations"]
        for i in r["Instances"]
    ]
    assert len(launched) == 2
    for instance_id in launched:
        assert f"{instance_id} unhealthy (Target.ResponseCodeMismatch" in message, message
    assert "health check" in message and "[404]" in message
    assert added(before, await asyncio.to_thread(inventory)) == {}


def test_without_node_it_says_so_in_one_line_and_target_health_is_motos(moto_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node on it
    log = tmp_path / "dataplane.log"
    with running_dataplane(moto_url, log) as plane:
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=plane.url)
        elbv2 = boto3.client("elbv2", region_name=REGION, endpoint_url=plane.url)
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
        (instance,) = ec2.run_instances(
            ImageId="ami-12345678",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnets[0],
            UserData=render_user_data(3000),
        )["Instances"]
        group = elbv2.create_target_group(
            Name="no-node", Protocol="HTTP", Port=3000, VpcId=instance["VpcId"], TargetType="instance"
        )["TargetGroups"][0]["TargetGroupArn"]
        balancer = elbv2.create_load_balancer(Name="no-node", Subnets=subnets)["LoadBalancers"][0]
        elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )
        elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": instance["InstanceId"], "Port": 3000}])

        (health,) = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        assert health["TargetHealth"]["State"] == "healthy"  # moto's word: nothing checks it
        assert fetch(plane.listener(balancer["DNSName"])["url"]).status == 502  # no app runs
    lines = [line for line in log.read_text().splitlines() if "node" in line]
    assert len(lines) == 1 and lines[0].startswith("dataplane: node is not on PATH")
