"""docs/iam-policy.json grants exactly the AWS actions the worker calls, and its tag conditions hold.

Every AWS call of real deployments (single and per-AZ NAT), a repair, a converge's in-place changes
and NAT mode switch, teardowns and a late rollback is recorded on the boto3 sessions the activities
use, then compared with the policy both ways: a call the policy lacks would fail on real AWS; a grant
nothing uses is privilege to remove.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable

import boto3
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from activities import AwsClients
from models.deployment import DownRequest
from models.naming import DEPLOYMENT_TAG
from models.resources import Scope, TeardownInput
from models.spec import DeploymentSpec
from tests.support.aws_calls import ActionRecorder, AwsCall
from tests.support.drift import SSH, app_group, narrow_egress, repaired
from tests.support.faults import InjectedFault
from tests.support.https import hosted_zone, https_spec
from tests.support.iam_policy import (
    HTTPS_POLICY_PATH,
    POLICY_PATH,
    as_list,
    both_policies,
    granted_actions,
    load_policy,
    requires_request_tag,
    resource_types,
    structure_problems,
)
from tests.support.inventory import inventory
from tests.support.specs import FAST_TIMING, fast_spec
from tests.support.waiting import eventually
from tests.support.workers import running_worker
from tests.test_converge import converge, in_place
from tests.test_deployment_workflow import entity, up
from workflows.deploy import DeployWorkflow
from workflows.deployment import DeploymentWorkflow
from workflows.teardown import TeardownWorkflow

IMPLICIT_ACTIONS = {
    "acm:AddTagsToCertificate": "ACM authorizes the Tags of RequestCertificate as AddTagsToCertificate; "
    "no AddTagsToCertificate request is sent",
    "iam:CreateServiceLinkedRole": "CreateLoadBalancer creates the AWSServiceRoleForElasticLoadBalancing "
    "role as the caller the first time an account gets a load balancer; moto has no such role",
}
"""Actions AWS authorizes inside another call, so no recording can show them: each with its reason."""

CREATED_BY = {
    "ec2:AllocateAddress": {"elastic-ip"},
    "ec2:CreateNatGateway": {"natgateway"},
    "ec2:CreateRouteTable": {"route-table"},
    "ec2:CreateSecurityGroup": {"security-group"},
    "ec2:CreateSubnet": {"subnet"},
    "ec2:RunInstances": {"instance", "volume"},
}
"""The resource types each EC2 create makes (ARN and TagSpecifications share the names): a policy
statement that requires the deployment tag on them needs every one tagged in the call."""


async def run_with_worker(
    client: Client,
    recorder: ActionRecorder,
    scenario: Callable[[Worker], Awaitable[None]],
    *faults: InjectedFault,
) -> None:
    """A fresh session per scenario, watched (and faulted) before it builds its first client."""
    session = recorder.watch(boto3.Session())
    for fault in faults:
        fault.install(session)
    async with running_worker(client, AwsClients(session)) as worker:
        await scenario(worker)


async def deploy(client: Client, worker: Worker, spec: DeploymentSpec) -> None:
    await client.execute_workflow(
        DeployWorkflow.run,
        spec,
        id=f"deploy-{spec.deployment_id}-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def teardown(client: Client, worker: Worker, spec: DeploymentSpec) -> None:
    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
    request = TeardownInput(scope=scope, timing=FAST_TIMING)
    await client.execute_workflow(
        TeardownWorkflow.run,
        request,
        id=f"teardown-{spec.deployment_id}-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


def listing(actions: Iterable[str]) -> str:
    return ", ".join(sorted(actions)) or "none"


@pytest.mark.parametrize("path", [POLICY_PATH, HTTPS_POLICY_PATH], ids=lambda path: path.stem)
def test_policy_document_is_well_formed(path):
    assert structure_problems(load_policy(path), path.read_text()) == []
    granted = granted_actions(both_policies())
    assert set(IMPLICIT_ACTIONS) <= granted, "an implicit action the policies do not grant"
    https_actions = granted_actions(load_policy(HTTPS_POLICY_PATH))
    assert all(a.startswith(("acm:", "route53:")) for a in https_actions)  # HTTPS's own, and only it


def test_structure_check_names_what_iam_would_refuse():
    """The validator itself can fail: each broken policy is reported, not passed."""
    broken = {
        "Version": "2008-10-17",
        "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
            {"Sid": "A", "Effect": "Deny", "Action": [], "Resource": "*", "NotAction": "x"},
            {"Sid": "has space", "Effect": "Allow", "Action": "ec2:DescribeVpcs", "Condition": {"Null": {}}},
        ],
    }
    problems = "\n".join(structure_problems(broken, "x" * 7000))
    for expected in (
        "Version is '2008-10-17'",
        "'ec2:*' is not one exact action",
        "Effect must be 'Allow'",
        "Action must be a non-empty",
        "unexpected keys ['NotAction']",
        "needs a Sid",
        "Resource must be a non-empty",
        "Condition must map",
        "Sids must be unique",
        "7000 characters",
    ):
        assert expected in problems
    assert structure_problems({"Version": "2012-10-17", "Statement": []}, "") == [
        "Statement must be a non-empty list"
    ]


def test_tag_condition_check_names_creates_that_real_aws_would_refuse():
    recorder = ActionRecorder()
    ours = [{"Key": DEPLOYMENT_TAG, "Value": "web"}]
    recorder.calls += [
        AwsCall("ec2:CreateSubnet", {"TagSpecifications": [{"ResourceType": "subnet", "Tags": ours}]}),
        AwsCall("ec2:RunInstances", {"TagSpecifications": [{"ResourceType": "instance", "Tags": ours}]}),
        AwsCall("elasticloadbalancing:CreateListener", {"Tags": [{"Key": "Name", "Value": "web"}]}),
    ]
    assert untagged_creates(recorder, load_policy()) == [
        f"ec2:RunInstances left ['volume'] without {DEPLOYMENT_TAG}",
        f"elasticloadbalancing:CreateListener was called without the {DEPLOYMENT_TAG} tag",
    ]


def test_recorder_names_services_it_cannot_map_to_iam():
    recorder = ActionRecorder()
    session = recorder.watch(boto3.Session())
    session.client("sts", region_name="ap-northeast-2").get_caller_identity()
    session.client("ec2", region_name="ap-northeast-2").describe_vpcs()
    assert recorder.unknown_services == {"sts"} and recorder.actions == {"ec2:DescribeVpcs"}


async def test_policy_grants_exactly_the_actions_the_worker_calls(client: Client, ec2):
    recorder = ActionRecorder()
    zone_id = hosted_zone()
    before = inventory()
    single, per_az, failing = fast_spec(), fast_spec(nat_mode="per_az"), fast_spec(nat_mode="per_az")
    watched = fast_spec(drift={"check_every": "1s", "on_drift": "repair"})
    in_place_spec = fast_spec()
    https_found_zone, https_named_zone = (
        https_spec("a.example.com"),
        https_spec("b.example.com", hosted_zone_id=zone_id),
    )

    async def single_nat_deploy_repair_teardown(worker: Worker) -> None:
        await deploy(client, worker, single)
        # Someone deletes the NAT gateway and releases its address: `up` again makes new ones and
        # re-points the existing route table's default route (the only path that calls ReplaceRoute).
        (nat,) = ec2.describe_nat_gateways(
            Filters=[{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [single.deployment_id]}]
        )["NatGateways"]
        ec2.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"])

        async def nat_state() -> str:
            return ec2.describe_nat_gateways(NatGatewayIds=[nat["NatGatewayId"]])["NatGateways"][0]["State"]

        await eventually(nat_state, lambda state: state == "deleted")
        ec2.release_address(AllocationId=nat["NatGatewayAddresses"][0]["AllocationId"])
        await deploy(client, worker, single)
        await teardown(client, worker, single)

    async def per_az_deploy_teardown(worker: Worker) -> None:
        await deploy(client, worker, per_az)
        await teardown(client, worker, per_az)

    async def late_failure_rolls_back(worker: Worker) -> None:
        with pytest.raises(WorkflowFailureError):
            await deploy(client, worker, failing)

    async def https_deploys_teardowns(worker: Worker) -> None:
        for spec in (https_found_zone, https_named_zone):
            await deploy(client, worker, spec)
            await teardown(client, worker, spec)

    async def converge_in_place_teardown(worker: Worker) -> None:
        # A converge changes the ALB group's CIDR (authorize, revoke) and the target group's health
        # check and deregistration delay, after reading them (DescribeTargetGroupAttributes).
        await deploy(client, worker, in_place_spec)
        await converge(client, worker, in_place(in_place_spec))
        # A NAT mode switch moves each subnet to its new table (ReplaceRouteTableAssociation).
        await converge(client, worker, in_place(in_place_spec).model_copy(update={"nat_mode": "per_az"}))
        await teardown(client, worker, in_place_spec)

    async def drift_repaired_then_down(worker: Worker) -> None:
        # A drift repair puts tags back (CreateTags, AddTags: sent directly, unlike a create's tags),
        # revokes an added rule, puts egress back, registers a target again, sets a listener's action
        # again (ModifyListener) and waits for a deleted NAT gateway.
        created = await up(client, worker, watched)
        out = created.outputs
        assert out is not None, created.message
        instance = out.instance_ids["app-1"]
        ec2.authorize_security_group_ingress(GroupId=app_group(out), IpPermissions=[SSH])
        narrow_egress(ec2, out)
        elbv2 = boto3.client("elbv2", region_name=watched.region)
        elbv2.deregister_targets(TargetGroupArn=out.target_group_arn, Targets=[{"Id": instance}])
        elbv2.remove_tags(ResourceArns=[out.target_group_arn], TagKeys=["Name"])
        elbv2.modify_listener(
            ListenerArn=out.listener_arn,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}],
        )
        ec2.delete_tags(Resources=[instance], Tags=[{"Key": "Name"}])
        await repaired(client, watched.deployment_id)
        await entity(client, watched.deployment_id).execute_update(DeploymentWorkflow.down, DownRequest())

    health_fault = InjectedFault("elbv2", "DescribeTargetHealth", occurrences={1})
    await run_with_worker(client, recorder, single_nat_deploy_repair_teardown)
    await run_with_worker(client, recorder, per_az_deploy_teardown)
    await run_with_worker(client, recorder, late_failure_rolls_back, health_fault)
    await run_with_worker(client, recorder, https_deploys_teardowns)
    await run_with_worker(client, recorder, converge_in_place_teardown)
    await run_with_worker(client, recorder, drift_repaired_then_down)

    assert health_fault.failed == 1  # the rollback path really ran, after everything was created
    assert inventory() == before  # teardowns and the rollback removed everything: their calls were made
    assert recorder.unknown_services == set(), "add these botocore services to IAM_PREFIXES"
    assert {"ec2:ReplaceRoute", "elasticloadbalancing:DeregisterTargets"} <= recorder.actions
    assert {"ec2:CreateTags", "elasticloadbalancing:AddTags", "ec2:DescribeTags"} <= recorder.actions
    assert "elasticloadbalancing:ModifyListener" in recorder.actions
    assert {
        "ec2:RevokeSecurityGroupIngress",
        "ec2:ReplaceRouteTableAssociation",
        "elasticloadbalancing:ModifyTargetGroup",
    } <= recorder.actions

    policy = both_policies()
    called, granted = recorder.actions, granted_actions(policy)
    missing = called - granted
    unused = granted - called - set(IMPLICIT_ACTIONS)
    assert not (missing or unused), (
        f"the worker calls actions docs/iam-policy.json does not grant: {listing(missing)}; "
        f"the policy grants actions no deployment, repair, teardown or rollback called (remove them, or "
        f"add them to IMPLICIT_ACTIONS with the reason AWS needs them): {listing(unused)}"
    )
    sent_directly = called & set(IMPLICIT_ACTIONS)
    assert not sent_directly, f"called directly, but granted only inside a create: {listing(sent_directly)}"

    assert untagged_creates(recorder, policy) == []


def untagged_creates(recorder: ActionRecorder, policy: dict) -> list[str]:
    """Recorded calls that the policy's statements requiring the deployment tag would refuse. A
    statement granting tags only inside a create (a `CreateAction` condition) is not asked about a
    tagging call of its own (a drift repair's): AWS authorizes that one by another statement."""
    return [
        problem
        for statement in policy["Statement"]
        if requires_request_tag(statement, DEPLOYMENT_TAG) and not inside_creates_only(statement)
        for action in sorted(set(as_list(statement["Action"])) & recorder.actions)
        for problem in request_tag_problems(recorder, statement, action)
    ]


def inside_creates_only(statement: dict) -> bool:
    conditions = statement.get("Condition", {}).get("StringEquals", {})
    return any(key.endswith(":CreateAction") for key in conditions)


def request_tag_problems(recorder: ActionRecorder, statement: dict, action: str) -> list[str]:
    """Calls that a statement requiring the deployment tag on created resources would refuse."""
    problems = []
    for call in recorder.calls_of(action):
        if action.startswith("ec2:"):
            wanted = CREATED_BY.get(action)
            if wanted is None or not wanted <= resource_types(statement):
                problems.append(f"{action}: add what it creates to CREATED_BY, as in {statement['Sid']}")
                continue
            tagged = {
                spec["ResourceType"]
                for spec in call.params.get("TagSpecifications", [])
                if any(tag["Key"] == DEPLOYMENT_TAG for tag in spec["Tags"])
            }
            if wanted - tagged:
                problems.append(f"{action} left {sorted(wanted - tagged)} without {DEPLOYMENT_TAG}")
        elif not any(tag["Key"] == DEPLOYMENT_TAG for tag in call.params.get("Tags", [])):
            problems.append(f"{action} was called without the {DEPLOYMENT_TAG} tag")
    return problems
