"""ConvergeWorkflow on the Temporal dev server with real boto3 calls: scale out, scale in and rolling
replacement of a live deployment's instances, each followed by an exact inventory check, and rolled
back exactly when a step fails. The data plane (dataplane/) serves the ALB where traffic matters: a
load loop runs through a rolling replacement, a scale in and a bad app version's rollback.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import boto3
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from activities.user_data import server_source
from models.converge import ConvergeInput, ConvergeResult
from models.diff import Action, diff
from models.live import InspectInput, LiveDeployment
from models.naming import APP_VERSION_TAG, DEFAULT_APP_VERSION
from models.resources import DeploymentOutputs, Scope
from models.spec import DeploymentSpec
from tests.support.faults import InjectedFault
from tests.support.inventory import inventory
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.workers import running_worker
from tests.test_dataplane import LoadLoop
from tests.test_deploy_workflow import deploy
from workflows.converge import ConvergeWorkflow
from workflows.plan import InspectWorkflow

REGION = "ap-northeast-2"


class Capacity:
    """Targets in service as the worker saw them: registrations it made, states AWS reported.

    At each DeregisterTargets the worker sends, how many other registered targets were last reported
    healthy: the capacity left in service. Hooked on the worker's session before its first client."""

    def __init__(self, session: boto3.Session) -> None:
        self._lock = threading.Lock()
        self.registered: set[str] = set()
        self.state: dict[str, str] = {}
        self.left_in_service: list[tuple[set[str], int]] = []
        session.events.register("before-parameter-build.elbv2.RegisterTargets", self._register)
        session.events.register("before-parameter-build.elbv2.DeregisterTargets", self._deregister)
        session.events.register("after-call.elbv2.DescribeTargetHealth", self._health)

    def _register(self, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.registered |= {t["Id"] for t in params["Targets"]}

    def _deregister(self, params: dict[str, Any], **_: Any) -> None:
        leaving = {t["Id"] for t in params["Targets"]}
        with self._lock:
            staying = self.registered - leaving
            self.left_in_service.append((leaving, sum(self.state.get(i) == "healthy" for i in staying)))
            self.registered = staying

    def _health(self, parsed: dict[str, Any], **_: Any) -> None:
        with self._lock:
            for item in parsed.get("TargetHealthDescriptions", []):
                self.state[item["Target"]["Id"]] = item["TargetHealth"]["State"]

    def lowest(self, leaving: set[str]) -> int:
        """The least capacity left in service by a deregistration of any of `leaving`."""
        return min(left for ids, left in self.left_in_service if ids & leaving)


async def inspect(client: Client, worker: Worker, spec: DeploymentSpec) -> LiveDeployment:
    return await client.execute_workflow(
        InspectWorkflow.run,
        InspectInput(scope=Scope(deployment_id=spec.deployment_id, region=spec.region), timing=spec.timing),
        id=f"inspect-{spec.deployment_id}-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def plan_changes(client: Client, worker: Worker, spec: DeploymentSpec) -> dict[str, Action]:
    """What `plan` would show for `spec` now: every resource not unchanged, by name."""
    actions = diff(spec, await inspect(client, worker, spec))
    return {a.name: a.action for a in actions if a.action is not Action.UNCHANGED}


async def start_converge(client: Client, worker: Worker, spec: DeploymentSpec) -> WorkflowHandle:
    """As the deployment's workflow does: read what is live, then start the converge to `spec`."""
    live = await inspect(client, worker, spec)
    return await client.start_workflow(
        ConvergeWorkflow.run,
        ConvergeInput.from_live(spec, live),
        id=f"converge-{spec.deployment_id}-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def converge(client: Client, worker: Worker, spec: DeploymentSpec) -> ConvergeResult:
    return await (await start_converge(client, worker, spec)).result()


def changed(spec: DeploymentSpec, **instances: Any) -> DeploymentSpec:
    return spec.model_copy(update={"instances": spec.instances.model_copy(update=instances)})


def fleet(elbv2: Any, ec2: Any, out: DeploymentOutputs) -> dict[str, tuple[str, str, bool]]:
    """Every live instance of the group's deployment: id -> (type, AZ, registered)."""
    health = elbv2.describe_target_health(TargetGroupArn=out.target_group_arn)["TargetHealthDescriptions"]
    registered = {h["Target"]["Id"] for h in health if h["TargetHealth"]["State"] != "draining"}
    reservations = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )["Reservations"]
    return {
        i["InstanceId"]: (
            i["InstanceType"],
            i["Placement"]["AvailabilityZone"],
            i["InstanceId"] in registered,
        )
        for r in reservations
        for i in r["Instances"]
    }


def with_instances(before: dict[str, set[str]], instances: set[str]) -> dict[str, set[str]]:
    return {**before, "instances": instances}


async def test_scale_out_then_in_spreads_over_the_azs_and_removes_exactly_the_extra_instances(
    client, worker, aws, ec2, elbv2
):
    capacity = Capacity(aws.session)
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    deployed = await asyncio.to_thread(inventory)
    first = set(out.instance_ids.values())

    wider = await converge(client, worker, changed(spec, count=4))

    assert sorted(wider.instance_ids) == ["app-0", "app-1", "app-2-g1", "app-3-g1"]
    assert wider.terminated == []
    four = set(wider.instance_ids.values())
    assert four >= first
    assert await asyncio.to_thread(inventory) == with_instances(deployed, four)
    live = fleet(elbv2, ec2, out)
    assert set(live) == four and all(registered for _, _, registered in live.values())
    assert sorted(az for _, az, _ in live.values()) == ["ap-northeast-2a"] * 2 + ["ap-northeast-2c"] * 2
    assert await plan_changes(client, worker, changed(spec, count=4)) == {}  # app-2-g1 is slot 2's

    narrower = await converge(
        client, worker, spec.model_copy(update={"instances": spec.instances.model_copy(update={"count": 1})})
    )

    assert narrower.instance_ids == {"app-0": out.instance_ids["app-0"]}
    assert sorted(narrower.terminated) == sorted(four - {out.instance_ids["app-0"]})
    assert await asyncio.to_thread(inventory) == with_instances(deployed, {out.instance_ids["app-0"]})
    assert fleet(elbv2, ec2, out) == {out.instance_ids["app-0"]: ("t2.micro", "ap-northeast-2a", True)}
    assert capacity.lowest(four) >= 1  # the kept one stayed in service while the others drained


async def test_rolling_replacement_keeps_capacity_and_leaves_only_the_new_instances(
    client, worker, aws, ec2, elbv2
):
    capacity = Capacity(aws.session)
    spec = fast_spec(instances={"count": 3})
    out = await deploy(client, worker, spec)
    deployed = await asyncio.to_thread(inventory)
    old = set(out.instance_ids.values())
    target = changed(spec, instance_type="t3.micro").model_copy(
        update={"rollout": spec.rollout.model_copy(update={"batch_size": "50%"})}
    )

    result = await converge(client, worker, target)

    assert sorted(result.instance_ids) == ["app-0-g1", "app-1-g1", "app-2-g1"]
    assert sorted(result.terminated) == sorted(old)
    new = set(result.instance_ids.values())
    assert await asyncio.to_thread(inventory) == with_instances(deployed, new)
    live = fleet(elbv2, ec2, out)
    assert {i: t for i, (t, _, registered) in live.items() if registered} == dict.fromkeys(new, "t3.micro")
    # Two batches (50% of 3, rounded up: 2, then 1): each old instance left only once its
    # replacement was healthy, so three targets stayed in service at every deregistration.
    assert len([ids for ids, _ in capacity.left_in_service if ids & old]) == 2
    assert capacity.lowest(old) >= 3
    # `plan` with the same spec: app-N-g1 holds slot N, nothing to create or delete.
    assert await plan_changes(client, worker, target) == {}
    assert await plan_changes(client, worker, spec) == dict.fromkeys(result.instance_ids, Action.REPLACE)

    again = await converge(client, worker, target)  # converged: nothing to do
    assert again.instance_ids == result.instance_ids and again.launched == again.terminated == []


async def test_permanent_failure_mid_rollout_restores_the_previous_instances_exactly(
    client, worker, aws, ec2, elbv2
):
    capacity = Capacity(aws.session)
    fault = InjectedFault("ec2", "RunInstances", occurrences=set()).install(aws.session)
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    old = set(out.instance_ids.values())
    fault.occurrences = {fault.calls + 2}  # the second batch's launch, after the first batch swapped

    with pytest.raises(WorkflowFailureError) as failure:
        await converge(client, worker, changed(spec, instance_type="t3.micro"))

    message = failure.value.cause.message
    assert "app-1-g1" in message and "injected by the test" in message, message
    assert "back on its previous spec (instances app-0, app-1)" in message
    assert await asyncio.to_thread(inventory) == before
    live = fleet(elbv2, ec2, out)
    assert {i: (kind, registered) for i, (kind, _, registered) in live.items()} == dict.fromkeys(
        old, ("t2.micro", True)
    )
    # app-0 left the group only once app-0-g1 was healthy; app-0-g1 left it only once app-0 was back.
    assert [len(ids) for ids, _ in capacity.left_in_service] == [1, 1]
    assert min(left for _, left in capacity.left_in_service) >= 2


@pytest.mark.soak
@pytest.mark.parametrize(
    ("service", "operation", "occurrence"),
    [
        ("elbv2", "RegisterTargets", 2),  # the second batch's registration
        ("elbv2", "DeregisterTargets", 2),  # the second batch's old instance leaving
        ("elbv2", "DescribeTargetHealth", 3),  # a health wait
    ],
)
async def test_permanent_failure_at_each_kind_of_step_restores_the_previous_instances(
    client, worker, aws, service, operation, occurrence
):
    fault = InjectedFault(service, operation, occurrences=set()).install(aws.session)
    spec = fast_spec()
    await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    fault.occurrences = {fault.calls + occurrence}

    with pytest.raises(WorkflowFailureError) as failure:
        await converge(client, worker, changed(spec, instance_type="t3.micro"))

    assert fault.failed == 1
    assert "back on its previous spec (instances app-0, app-1)" in failure.value.cause.message
    assert await asyncio.to_thread(inventory) == before


# With the data plane: the ALB answers, health checks are real, deregistered targets drain


class FailingApp:
    """Once armed, instances launched run an app that exits at once (a bad release): the user data's
    server.js is replaced before botocore encodes it. Hooked before the session builds its clients."""

    def __init__(self, session: boto3.Session) -> None:
        self.armed = False
        session.events.register_first("before-parameter-build.ec2.RunInstances", self._rewrite)

    def _rewrite(self, params: dict[str, Any], **_: Any) -> None:
        if self.armed:
            params["UserData"] = params["UserData"].replace(server_source(), "process.exit(1);\n")


async def test_rolling_replacement_then_scale_in_lose_no_request_through_the_local_alb(
    client, dataplane, plane_aws
):
    spec = fast_spec()
    async with running_worker(client, plane_aws) as worker:
        out = await deploy(client, worker, spec)
        url = (await asyncio.to_thread(dataplane.listener, out.alb_dns_name))["url"]
        with LoadLoop(url, limit=20000) as load:
            replaced = await converge(client, worker, changed(spec, instance_type="t3.micro"))
            during_rollout = len(load.sent)
            smaller = await converge(client, worker, changed(spec, instance_type="t3.micro", count=1))

    statuses = [s.answer.status for s in load.sent]
    assert during_rollout >= 20 and len(statuses) > during_rollout
    assert [s for s in statuses if s != 200] == []
    served_by = {s.answer.instance_id for s in load.sent}
    assert set(replaced.instance_ids.values()) <= served_by  # the new instances took traffic
    assert set(out.instance_ids.values()) <= served_by
    assert list(smaller.instance_ids) == ["app-0-g1"]
    assert {s.answer.instance_id for s in load.sent[-5:]} == set(smaller.instance_ids.values())


async def test_bad_app_version_never_turns_healthy_and_is_rolled_back_with_no_request_lost(
    client, dataplane, plane_aws
):
    spec = fast_spec(timing={**FAST_TIMING, "targets_healthy_timeout_seconds": 4})
    capacity, bad_release = Capacity(plane_aws.session), FailingApp(plane_aws.session)
    async with running_worker(client, plane_aws) as worker:
        out = await deploy(client, worker, spec)
        before = await asyncio.to_thread(inventory)
        bad_release.armed = True
        url = (await asyncio.to_thread(dataplane.listener, out.alb_dns_name))["url"]
        with LoadLoop(url, limit=20000) as load, pytest.raises(WorkflowFailureError) as failure:
            await converge(client, worker, changed(spec, instance_type="t3.micro"))

    message = failure.value.cause.message
    assert "healthy-batch-1" in message and "not healthy" in message, message
    assert "back on its previous spec" in message
    assert await asyncio.to_thread(inventory) == before
    assert [s.answer.status for s in load.sent if s.answer.status != 200] == []
    assert {s.answer.instance_id for s in load.sent} == set(out.instance_ids.values())
    old = set(out.instance_ids.values())
    assert not any(ids & old for ids, _ in capacity.left_in_service)  # old ones never left the group


# In place: who may reach the ALB, the health check, the deregistration delay


class IngressCalls:
    """Every AuthorizeSecurityGroupIngress and RevokeSecurityGroupIngress the worker sends, in order:
    (operation, port, CIDR)."""

    def __init__(self, session: boto3.Session) -> None:
        self.calls: list[tuple[str, int, str]] = []
        for operation in ("AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"):
            session.events.register(f"before-parameter-build.ec2.{operation}", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        for permission in params["IpPermissions"]:
            for cidr in permission.get("IpRanges", []):
                self.calls.append((model.name, permission["FromPort"], cidr["CidrIp"]))


def alb_rules(ec2: Any, out: DeploymentOutputs) -> list[tuple[int, str]]:
    (group,) = ec2.describe_security_groups(GroupIds=[out.alb_security_group_id])["SecurityGroups"]
    return sorted((p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p.get("IpRanges", []))


def target_group_settings(elbv2: Any, out: DeploymentOutputs) -> dict[str, Any]:
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[out.target_group_arn])["TargetGroups"]
    attributes = elbv2.describe_target_group_attributes(TargetGroupArn=out.target_group_arn)["Attributes"]
    fields = (
        "HealthCheckPath",
        "HealthCheckIntervalSeconds",
        "HealthCheckTimeoutSeconds",
        "HealthyThresholdCount",
        "UnhealthyThresholdCount",
    )
    delay = {a["Key"]: a["Value"] for a in attributes}["deregistration_delay.timeout_seconds"]
    return {**{field: group[field] for field in fields}, "delay": delay}


DEFAULT_SETTINGS = {
    "HealthCheckPath": "/",
    "HealthCheckIntervalSeconds": 30,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 5,
    "UnhealthyThresholdCount": 2,
    "delay": "30",
}


def in_place(spec: DeploymentSpec) -> DeploymentSpec:
    """Every setting a converge changes in place, changed."""
    return spec.model_copy(
        update={
            "load_balancer": spec.load_balancer.model_copy(
                update={"allowed_cidr": "10.0.0.0/8", "deregistration_delay_seconds": 60}
            ),
            "app": spec.app.model_copy(
                update={
                    "health_check_path": "/health",
                    "health_check_interval_seconds": 5,
                    "healthy_threshold": 3,
                    "unhealthy_threshold": 4,
                }
            ),
        }
    )


def without_rules(inventory: dict[str, set[str]]) -> dict[str, set[str]]:
    """A rule put back is a new rule (a new id): rules are compared by what they allow."""
    return {kind: ids for kind, ids in inventory.items() if kind != "security_group_rules"}


async def test_allowed_cidr_health_check_and_deregistration_delay_change_in_place(
    client, worker, aws, ec2, elbv2
):
    ingress = IngressCalls(aws.session)
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    deployed = await asyncio.to_thread(inventory)
    assert target_group_settings(elbv2, out) == DEFAULT_SETTINGS
    target = in_place(spec)
    assert await plan_changes(client, worker, target) == {"sg-alb": Action.UPDATE, "tg-app": Action.UPDATE}
    ingress.calls.clear()

    result = await converge(client, worker, target)

    assert result.updated == ["sg-alb", "tg-app"] and result.launched == result.terminated == []
    assert result.instance_ids == out.instance_ids
    # The new range was allowed before the old one was revoked: never a moment with neither.
    assert ingress.calls == [
        ("AuthorizeSecurityGroupIngress", 80, "10.0.0.0/8"),
        ("RevokeSecurityGroupIngress", 80, "0.0.0.0/0"),
    ]
    assert alb_rules(ec2, out) == [(80, "10.0.0.0/8")]
    assert target_group_settings(elbv2, out) == {
        "HealthCheckPath": "/health",
        "HealthCheckIntervalSeconds": 5,
        "HealthCheckTimeoutSeconds": 4,  # AWS wants it below the interval
        "HealthyThresholdCount": 3,
        "UnhealthyThresholdCount": 4,
        "delay": "60",
    }
    after = await asyncio.to_thread(inventory)
    assert without_rules(after) == without_rules(deployed)
    assert len(after["security_group_rules"]) == len(deployed["security_group_rules"])
    assert await plan_changes(client, worker, target) == {}
    again = await converge(client, worker, target)
    assert again.updated == [] and len(ingress.calls) == 2


async def test_a_failure_after_the_in_place_changes_restores_the_old_values(client, worker, aws, ec2, elbv2):
    ingress = IngressCalls(aws.session)
    fault = InjectedFault("ec2", "RunInstances", occurrences=set()).install(aws.session)
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    fault.occurrences = {fault.calls + 1}  # the first launch of the replacement
    ingress.calls.clear()

    with pytest.raises(WorkflowFailureError) as failure:
        await converge(client, worker, changed(in_place(spec), instance_type="t3.micro"))

    assert "back on its previous spec (instances app-0, app-1)" in failure.value.cause.message
    assert alb_rules(ec2, out) == [(80, "0.0.0.0/0")]
    assert target_group_settings(elbv2, out) == DEFAULT_SETTINGS
    # Undone as done: the old range allowed again before the new one was revoked.
    assert ingress.calls == [
        ("AuthorizeSecurityGroupIngress", 80, "10.0.0.0/8"),
        ("RevokeSecurityGroupIngress", 80, "0.0.0.0/0"),
        ("AuthorizeSecurityGroupIngress", 80, "0.0.0.0/0"),
        ("RevokeSecurityGroupIngress", 80, "10.0.0.0/8"),
    ]
    assert without_rules(await asyncio.to_thread(inventory)) == without_rules(before)
    assert await plan_changes(client, worker, spec) == {}


# The app version: a tag at launch; a new version replaces the instances


def versions(ec2: Any, ids: set[str]) -> dict[str, str | None]:
    """Instance id -> its scaleout:app-version tag (None: untagged)."""
    reservations = ec2.describe_instances(InstanceIds=sorted(ids))["Reservations"]
    return {
        i["InstanceId"]: next((t["Value"] for t in i.get("Tags", []) if t["Key"] == APP_VERSION_TAG), None)
        for r in reservations
        for i in r["Instances"]
    }


async def test_a_new_app_version_replaces_untagged_instances_and_tags_the_new_ones(client, worker, ec2):
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    old = set(out.instance_ids.values())
    assert versions(ec2, old) == dict.fromkeys(old, DEFAULT_APP_VERSION)
    # Instances launched before versions were tagged count as the default version.
    ec2.delete_tags(Resources=sorted(old), Tags=[{"Key": APP_VERSION_TAG}])
    assert await plan_changes(client, worker, spec) == {}
    target = spec.model_copy(update={"app": spec.app.model_copy(update={"version": "2.0.1"})})
    assert await plan_changes(client, worker, target) == {"app-0": Action.REPLACE, "app-1": Action.REPLACE}

    result = await converge(client, worker, target)

    assert sorted(result.instance_ids) == ["app-0-g1", "app-1-g1"] and sorted(result.terminated) == sorted(
        old
    )
    new = set(result.instance_ids.values())
    assert versions(ec2, new) == dict.fromkeys(new, "2.0.1")
    assert await plan_changes(client, worker, target) == {}
    assert await plan_changes(client, worker, spec) == {
        "app-0-g1": Action.REPLACE,
        "app-1-g1": Action.REPLACE,
    }


@pytest.mark.soak
@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("ec2", "RevokeSecurityGroupIngress"),  # the new range allowed, the old one not revoked yet
        ("elbv2", "ModifyTargetGroupAttributes"),  # the health check changed, the delay not yet
    ],
)
async def test_a_failure_inside_an_in_place_step_restores_the_old_values(
    client, worker, aws, ec2, elbv2, service, operation
):
    fault = InjectedFault(service, operation, occurrences=set()).install(aws.session)
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    fault.occurrences = {fault.calls + 1}

    with pytest.raises(WorkflowFailureError) as failure:
        await converge(client, worker, in_place(spec))

    assert fault.failed == 1 and "back on its previous spec" in failure.value.cause.message
    assert alb_rules(ec2, out) == [(80, "0.0.0.0/0")]
    assert target_group_settings(elbv2, out) == DEFAULT_SETTINGS
    assert without_rules(await asyncio.to_thread(inventory)) == without_rules(before)
