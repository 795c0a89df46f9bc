"""The in-place drift repair (activities/drift_repair.py) on a real deployment on moto.

Each test deploys, makes the drift by hand with boto3 as a console user would, writes the report's items
by hand as models/drift.py says the check writes them, runs the repair as a worker would, and compares
the live state with what the deployment created: its security groups' rules (descriptions and rule
tags too), its tags, its targets.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from temporalio.client import Client
from temporalio.worker import Worker

from activities import AwsClients, DriftRepairActivities
from models import naming
from models.drift import Drift, DriftItem, DriftReport, RepairInput, RepairResult
from models.resources import DeploymentOutputs, Kind, Scope
from models.spec import DeploymentSpec
from tests.support.attempts import attempt_environment
from tests.support.aws_calls import ActionRecorder
from tests.support.drift import narrow_egress
from tests.support.iam_policy import as_list, load_policy
from tests.support.inventory import inventory
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from tests.test_deploy_workflow import deploy

REGION = "ap-northeast-2"
WRITES = ("Authorize", "Revoke", "Create", "Add", "Register", "Deregister", "Delete", "Modify", "Terminate")


def request(spec: DeploymentSpec, *items: DriftItem) -> RepairInput:
    report = DriftReport(
        deployment_id=spec.deployment_id, region=spec.region, checked_at=datetime.now(UTC), items=list(items)
    )
    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
    return RepairInput(scope=scope, spec=spec, report=report, timing=spec.timing)


async def repair(aws: AwsClients, spec: DeploymentSpec, *items: DriftItem) -> RepairResult:
    """As a worker runs it: in a thread, inside an attempt with the quick steps' timeouts."""
    environment = attempt_environment(spec.timing)
    activities = DriftRepairActivities(aws)
    return await asyncio.to_thread(environment.run, activities.repair_in_place, request(spec, *items))


def ingress(ec2: Any, group_id: str) -> set[tuple]:
    """Every ingress rule of the group, exactly: ports, source, description and the rule's tags."""
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
    return {
        (
            r["IpProtocol"],
            r.get("FromPort"),
            r.get("ToPort"),
            r.get("CidrIpv4")
            or r.get("CidrIpv6")
            or r.get("PrefixListId")
            or r.get("ReferencedGroupInfo", {}).get("GroupId"),
            r.get("Description"),
            frozenset((t["Key"], t["Value"]) for t in r.get("Tags", [])),
        )
        for r in rules["SecurityGroupRules"]
        if not r["IsEgress"]
    }


def ec2_tags(ec2: Any, *ids: str) -> set[tuple[str, str, str]]:
    described = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": list(ids)}])["Tags"]
    return {(t["ResourceId"], t["Key"], t["Value"]) for t in described}


def elb_tags(elbv2: Any, *arns: str) -> set[tuple[str, str, str]]:
    described = elbv2.describe_tags(ResourceArns=list(arns))["TagDescriptions"]
    return {(d["ResourceArn"], t["Key"], t["Value"]) for d in described for t in d["Tags"]}


def targets(elbv2: Any, arn: str) -> set[tuple[str, int]]:
    described = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {(d["Target"]["Id"], d["Target"]["Port"]) for d in described}


def writes(recorder: ActionRecorder) -> set[str]:
    return {a for a in recorder.actions if a.split(":")[1].startswith(WRITES)}


def rule_item(
    out: DeploymentOutputs, group: str, drift: Drift, rule: str, field: str = "ingress"
) -> DriftItem:
    group_id = out.alb_security_group_id if group == naming.ALB_SECURITY_GROUP else out.app_security_group_id
    side = {"actual": rule} if drift is Drift.EXTRA else {"expected": rule}
    return DriftItem(name=group, kind=Kind.SECURITY_GROUP, id=group_id, drift=drift, field=field, **side)


def target_item(out: DeploymentOutputs, drift: Drift, instance_id: str) -> DriftItem:
    side = {"actual": instance_id} if drift is Drift.EXTRA else {"expected": instance_id}
    return DriftItem(
        name=naming.TARGET_GROUP,
        kind=Kind.TARGET_GROUP,
        id=out.target_group_arn,
        drift=drift,
        field="target",
        **side,
    )


def stale(service: str, operation: str, collection: str, snapshot: list[dict[str, Any]]) -> AwsClients:
    """Clients whose `operation` answers with `snapshot`, as an eventually consistent describe may
    still show the view from before the last writes (moto never does)."""
    session = boto3.Session()

    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        parsed[collection] = copy.deepcopy(snapshot)

    session.events.register(f"after-call.{service}.{operation}", rewrite)
    return AwsClients(session)


def deregistering_by_port() -> AwsClients:
    """Clients on which DeregisterTargets acts as on AWS: a target named with a port other than the
    one it is registered on (the group's port when none is named) stays, and AWS answers 200 anyway.
    moto removes it whatever the port. One call is judged whole (the repair names one target)."""
    session, plain = boto3.Session(), boto3.client("elbv2", region_name=REGION)

    def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["deregistering"] = copy.deepcopy(params)

    def ignore_other_ports(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        params = context["deregistering"]
        arn = params["TargetGroupArn"]
        (group,) = plain.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"]
        described = plain.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        registered = {(d["Target"]["Id"], d["Target"]["Port"]) for d in described}
        if all((t["Id"], t.get("Port", group["Port"])) in registered for t in params["Targets"]):
            return None
        ok = AWSResponse(url="https://elasticloadbalancing.invalid", status_code=200, headers={}, raw=None)
        return ok, {"ResponseMetadata": {"HTTPStatusCode": 200}}

    event = "elastic-load-balancing-v2.DeregisterTargets"
    session.events.register(f"before-parameter-build.{event}", remember)
    session.events.register(f"before-call.{event}", ignore_other_ports)
    return AwsClients(session)


def allowed(actions: set[str]) -> bool:
    """docs/iam-policy.json grants each action outside a create call too: by a statement whose
    condition does not name the create (`ec2:CreateAction`, `elasticloadbalancing:CreateAction`)."""

    def on_existing(statement: dict[str, Any]) -> bool:
        keys = [key for operator in statement.get("Condition", {}).values() for key in operator]
        return not any(key.endswith(":CreateAction") for key in keys)

    statements = load_policy()["Statement"]
    return all(any(a in as_list(s["Action"]) and on_existing(s) for s in statements) for a in actions)


@pytest.fixture
def recorder(aws: AwsClients) -> ActionRecorder:
    """Watches the session the repair's clients come from (before it builds one)."""
    recorder = ActionRecorder()
    recorder.watch(aws.session)
    return recorder


async def test_ingress_rules_are_put_back_exactly_and_a_second_run_changes_nothing(
    client: Client, worker: Worker, aws: AwsClients, ec2, recorder: ActionRecorder
):
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    alb, app = out.alb_security_group_id, out.app_security_group_id
    created = {alb: ingress(ec2, alb), app: ingress(ec2, app)}
    vpc = out.vpc_id
    other = ec2.create_security_group(GroupName="someone-else", Description="not ours", VpcId=vpc)["GroupId"]

    offices = ec2.create_managed_prefix_list(
        PrefixListName="offices", MaxEntries=2, AddressFamily="IPv4", Entries=[{"Cidr": "192.0.2.0/24"}]
    )["PrefixList"]["PrefixListId"]

    # Someone opens SSH to IPv4 and IPv6, a port range, everything to a prefix list, lets another
    # group in, and closes both of ours; the listener's port stays open only through a wider range.
    ec2.authorize_security_group_ingress(
        GroupId=app, CidrIp="0.0.0.0/0", IpProtocol="tcp", FromPort=22, ToPort=22
    )
    ec2.authorize_security_group_ingress(
        GroupId=app,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=app, IpPermissions=[{"IpProtocol": "-1", "PrefixListIds": [{"PrefixListId": offices}]}]
    )
    ec2.authorize_security_group_ingress(
        GroupId=alb,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 90, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=app,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 3000, "ToPort": 3000, "UserIdGroupPairs": [{"GroupId": other}]}
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=alb,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8100, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
        ],
    )
    ec2.revoke_security_group_ingress(
        GroupId=alb, CidrIp="0.0.0.0/0", IpProtocol="tcp", FromPort=80, ToPort=80
    )
    # moto matches a source group's rule only with its description (AWS ignores it).
    pair = {"GroupId": alb, "Description": "App port from the load balancer only"}
    ec2.revoke_security_group_ingress(
        GroupId=app,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 3000, "ToPort": 3000, "UserIdGroupPairs": [pair]}],
    )
    items = [
        rule_item(out, naming.APP_SECURITY_GROUP, Drift.EXTRA, "tcp/22 from 0.0.0.0/0"),
        rule_item(out, naming.APP_SECURITY_GROUP, Drift.EXTRA, "tcp/22 from ::/0"),
        rule_item(out, naming.APP_SECURITY_GROUP, Drift.EXTRA, f"all from {offices}"),
        rule_item(out, naming.APP_SECURITY_GROUP, Drift.EXTRA, f"tcp/3000 from {other}"),
        rule_item(out, naming.ALB_SECURITY_GROUP, Drift.EXTRA, "tcp/80-90 from 0.0.0.0/0"),
        rule_item(out, naming.ALB_SECURITY_GROUP, Drift.EXTRA, "tcp/8000-8100 from 10.0.0.0/8"),
        rule_item(out, naming.ALB_SECURITY_GROUP, Drift.MISSING, "tcp/80 from 0.0.0.0/0"),
        rule_item(
            out, naming.APP_SECURITY_GROUP, Drift.MISSING, f"tcp/3000 from {naming.ALB_SECURITY_GROUP}"
        ),
    ]
    assert {alb: ingress(ec2, alb), app: ingress(ec2, app)} != created
    drifted = ec2.describe_security_groups(GroupIds=[alb, app])["SecurityGroups"]

    recorder.calls.clear()  # the deploy's calls
    first = await repair(aws, spec, *items)
    assert first == RepairResult(fixed=items, left=[])
    assert {alb: ingress(ec2, alb), app: ingress(ec2, app)} == created
    assert writes(recorder) == {"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"}
    assert allowed(recorder.actions)

    # Temporal runs it again (a lost reply): the same result, and nothing written.
    recorder.calls.clear()
    assert await repair(aws, spec, *items) == first
    assert writes(recorder) == set()
    assert {alb: ingress(ec2, alb), app: ingress(ec2, app)} == created

    # Again, with AWS's describe still showing the drift: each write is sent, and its answer
    # (InvalidPermission.Duplicate, InvalidPermission.NotFound) counts as done.
    lagging = stale("ec2", "DescribeSecurityGroups", "SecurityGroups", drifted)
    sent = ActionRecorder()
    sent.watch(lagging.session)
    assert await repair(lagging, spec, *items) == first
    assert writes(sent) == {"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"}
    assert {alb: ingress(ec2, alb), app: ingress(ec2, app)} == created


async def test_egress_is_put_back_exactly_and_a_second_run_changes_nothing(
    client: Client, worker: Worker, aws: AwsClients, ec2, recorder: ActionRecorder
):
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    alb, app = out.alb_security_group_id, out.app_security_group_id
    created = {alb: egress(ec2, alb), app: egress(ec2, app)}
    narrow_egress(ec2, out)
    items = [
        rule_item(out, naming.ALB_SECURITY_GROUP, Drift.EXTRA, "tcp/25 to 10.0.0.0/8", "egress"),
        rule_item(out, naming.APP_SECURITY_GROUP, Drift.MISSING, "all to 0.0.0.0/0", "egress"),
    ]
    assert {alb: egress(ec2, alb), app: egress(ec2, app)} != created

    recorder.calls.clear()  # the deploy's calls
    assert await repair(aws, spec, *items) == RepairResult(fixed=items, left=[])
    assert {alb: egress(ec2, alb), app: egress(ec2, app)} == created
    assert writes(recorder) == {"ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress"}
    assert allowed(recorder.actions)

    recorder.calls.clear()
    assert await repair(aws, spec, *items) == RepairResult(fixed=items, left=[])
    assert writes(recorder) == set()


def egress(ec2: Any, group_id: str) -> set[tuple]:
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
    return {
        (r["IpProtocol"], r.get("FromPort"), r.get("ToPort"), r.get("CidrIpv4") or r.get("CidrIpv6"))
        for r in rules["SecurityGroupRules"]
        if r["IsEgress"]
    }


async def test_tags_are_put_back_as_created_on_ec2_and_load_balancing_resources(
    client: Client, worker: Worker, aws: AwsClients, ec2, elbv2, recorder: ActionRecorder
):
    spec = fast_spec(tags={"team": "web"})
    out = await deploy(client, worker, spec)
    instance = out.instance_ids[naming.instance(0)]
    nat = out.nat_gateway_ids[spec.availability_zones[0]]
    ec2_ids = (instance, nat, out.app_security_group_id)
    elb_arns = (out.load_balancer_arn, out.target_group_arn, out.listener_arn)
    created = ec2_tags(ec2, *ec2_ids), elb_tags(elbv2, *elb_arns)
    assert (instance, naming.GROUP_TAG, naming.APP_GROUP) in created[0]

    # Someone strips and renames tags in the console.
    ec2.delete_tags(Resources=[instance], Tags=[{"Key": naming.GROUP_TAG}])
    ec2.create_tags(Resources=[instance], Tags=[{"Key": "Name", "Value": "renamed"}])
    ec2.delete_tags(Resources=[nat], Tags=[{"Key": "team"}])
    ec2.create_tags(Resources=[out.app_security_group_id], Tags=[{"Key": "team", "Value": "other"}])
    elbv2.add_tags(ResourceArns=[out.load_balancer_arn], Tags=[{"Key": "team", "Value": "other"}])
    elbv2.remove_tags(ResourceArns=[out.target_group_arn], TagKeys=[naming.RESOURCE_TAG])
    elbv2.add_tags(ResourceArns=[out.listener_arn], Tags=[{"Key": "Name", "Value": "renamed"}])
    assert (ec2_tags(ec2, *ec2_ids), elb_tags(elbv2, *elb_arns)) != created

    def tag(
        name: str, kind: Kind, resource_id: str, key: str, expected: str, actual: str | None
    ) -> DriftItem:
        drift = Drift.MISSING if actual is None else Drift.CHANGED
        return DriftItem(
            name=name,
            kind=kind,
            id=resource_id,
            drift=drift,
            field=f"tag:{key}",
            expected=expected,
            actual=actual,
        )

    named = f"{spec.deployment_id}-"
    items = [
        tag(naming.instance(0), Kind.INSTANCE, instance, naming.GROUP_TAG, naming.APP_GROUP, None),
        tag(naming.instance(0), Kind.INSTANCE, instance, "Name", named + naming.instance(0), "renamed"),
        tag(naming.nat_gateway(spec.availability_zones[0]), Kind.NAT_GATEWAY, nat, "team", "web", None),
        tag(
            naming.APP_SECURITY_GROUP, Kind.SECURITY_GROUP, out.app_security_group_id, "team", "web", "other"
        ),
        tag(naming.LOAD_BALANCER, Kind.LOAD_BALANCER, out.load_balancer_arn, "team", "web", "other"),
        tag(
            naming.TARGET_GROUP,
            Kind.TARGET_GROUP,
            out.target_group_arn,
            naming.RESOURCE_TAG,
            naming.TARGET_GROUP,
            None,
        ),
        tag(
            naming.listener(80),
            Kind.LISTENER,
            out.listener_arn,
            "Name",
            named + naming.listener(80),
            "renamed",
        ),
    ]
    recorder.calls.clear()  # the deploy's calls
    for _ in range(2):  # a second run (Temporal's retry after a lost reply) sets the same values
        assert await repair(aws, spec, *items) == RepairResult(fixed=items, left=[])
        assert (ec2_tags(ec2, *ec2_ids), elb_tags(elbv2, *elb_arns)) == created
    assert writes(recorder) == {"ec2:CreateTags", "elasticloadbalancing:AddTags"}
    assert allowed(recorder.actions)


async def test_a_listeners_action_is_set_again_once(
    client: Client, worker: Worker, aws: AwsClients, elbv2, recorder: ActionRecorder
):
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    made = elbv2.describe_listeners(ListenerArns=[out.listener_arn])["Listeners"][0]["DefaultActions"]
    maintenance = {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}
    elbv2.modify_listener(ListenerArn=out.listener_arn, DefaultActions=[maintenance])
    item = DriftItem(
        name=naming.listener(spec.load_balancer.listener_port),
        kind=Kind.LISTENER,
        id=out.listener_arn,
        drift=Drift.CHANGED,
        field="default_action",
        expected="forward to tg-app",
        actual="fixed-response 503",
    )

    recorder.calls.clear()  # the deploy's calls
    assert await repair(aws, spec, item) == RepairResult(fixed=[item], left=[])
    assert elbv2.describe_listeners(ListenerArns=[out.listener_arn])["Listeners"][0]["DefaultActions"] == made
    assert writes(recorder) == {"elasticloadbalancing:ModifyListener"}
    assert allowed(recorder.actions)

    # Temporal runs it again (a lost reply): the same result, and nothing written.
    recorder.calls.clear()
    assert await repair(aws, spec, item) == RepairResult(fixed=[item], left=[])
    assert writes(recorder) == set()


async def test_a_foreign_target_leaves_and_our_instance_is_registered_again(
    client: Client, worker: Worker, aws: AwsClients, ec2, elbv2, recorder: ActionRecorder
):
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    group, ours = out.target_group_arn, sorted(out.instance_ids.values())
    created = targets(elbv2, group)
    assert created == {(i, spec.app.port) for i in ours}

    # Someone registers their own instance, on another port, and takes one of ours out.
    subnet = next(iter(out.public_subnet_ids.values()))
    (foreign,) = ec2.run_instances(ImageId=out.ami_id, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"]
    foreign_id = foreign["InstanceId"]
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": foreign_id, "Port": 8080}])
    elbv2.deregister_targets(TargetGroupArn=group, Targets=[{"Id": ours[0], "Port": spec.app.port}])
    assert targets(elbv2, group) == {(ours[1], spec.app.port), (foreign_id, 8080)}
    drifted = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    items = [target_item(out, Drift.EXTRA, foreign_id), target_item(out, Drift.MISSING, ours[0])]

    # The foreign target is named with the port it is registered on, as AWS needs.
    strict = deregistering_by_port()
    sent = ActionRecorder()
    sent.watch(strict.session)
    first = await repair(strict, spec, *items)
    assert first == RepairResult(fixed=items, left=[])
    assert targets(elbv2, group) == created
    assert writes(sent) == {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}
    assert allowed(sent.actions)

    recorder.calls.clear()  # the deploy's calls
    assert await repair(aws, spec, *items) == first
    assert writes(recorder) == set()

    # Again, with the target group's health still showing the drift: a deregister of a target no
    # longer registered and a second registration are both done, not failures.
    lagging = stale("elastic-load-balancing-v2", "DescribeTargetHealth", "TargetHealthDescriptions", drifted)
    sent = ActionRecorder()
    sent.watch(lagging.session)
    assert await repair(lagging, spec, *items) == first
    assert writes(sent) == {"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}
    assert targets(elbv2, group) == created


async def test_what_must_be_made_or_replaced_is_left_untouched(
    client: Client, worker: Worker, aws: AwsClients, ec2, recorder: ActionRecorder
):
    spec = fast_spec()
    out = await deploy(client, worker, spec)
    zone = spec.availability_zones[0]
    nat, table = out.nat_gateway_ids[zone], out.route_table_ids[zone]
    gone, kept = out.instance_ids[naming.instance(0)], out.instance_ids[naming.instance(1)]
    subnet = out.private_subnet_ids[zone]
    # Someone deletes the NAT gateway, terminates an instance and strips a subnet of the deployment's
    # tag; a group is deleted after the check.
    ec2.delete_nat_gateway(NatGatewayId=nat)
    ec2.terminate_instances(InstanceIds=[gone])
    vanished = ec2.create_security_group(GroupName="vanished", Description="x", VpcId=out.vpc_id)["GroupId"]
    ec2.delete_security_group(GroupId=vanished)
    ec2.delete_tags(Resources=[subnet], Tags=[{"Key": naming.DEPLOYMENT_TAG}])
    ec2.create_tags(Resources=[subnet], Tags=[{"Key": "Name", "Value": "renamed"}])

    async def settled() -> tuple[str, str]:
        (gateway,) = ec2.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"]
        (reservation,) = ec2.describe_instances(InstanceIds=[gone])["Reservations"]
        return gateway["State"], reservation["Instances"][0]["State"]["Name"]

    await eventually(settled, lambda states: states == ("deleted", "terminated"))

    app, alb = naming.APP_SECURITY_GROUP, naming.ALB_SECURITY_GROUP
    items = [
        DriftItem(name=naming.nat_gateway(zone), kind=Kind.NAT_GATEWAY, id=nat, drift=Drift.MISSING),
        DriftItem(name=naming.instance(0), kind=Kind.INSTANCE, id=gone, drift=Drift.MISSING),
        DriftItem(name="i-stray", kind=Kind.INSTANCE, id="i-0123456789abcdef0", drift=Drift.EXTRA),
        DriftItem(
            name=naming.instance(1),
            kind=Kind.INSTANCE,
            id=kept,
            drift=Drift.CHANGED,
            field="instance_type",
            expected=spec.instances.instance_type,
            actual="t3.large",
        ),
        DriftItem(
            name=naming.route_table(None),
            kind=Kind.ROUTE_TABLE,
            id=table,
            drift=Drift.CHANGED,
            field="default_route",
            expected=naming.nat_gateway(zone),
            actual="none",
        ),
        # Our terminated instance cannot serve: the converge replaces it, then registers the new one.
        target_item(out, Drift.MISSING, gone),
        # Never opened or closed against the spec, whatever a report says.
        rule_item(out, app, Drift.MISSING, "tcp/22 from 0.0.0.0/0"),
        rule_item(out, alb, Drift.EXTRA, "tcp/80 from 0.0.0.0/0"),
        # A subnet without the deployment tag: the worker may not change it (a person re-tags it).
        DriftItem(
            name=naming.private_subnet(zone),
            kind=Kind.SUBNET,
            id=subnet,
            drift=Drift.MISSING,
            field=f"tag:{naming.DEPLOYMENT_TAG}",
            expected=spec.deployment_id,
        ),
        DriftItem(
            name=naming.private_subnet(zone),
            kind=Kind.SUBNET,
            id=subnet,
            drift=Drift.CHANGED,
            field="tag:Name",
            expected=f"{spec.deployment_id}-{naming.private_subnet(zone)}",
            actual="renamed",
        ),
        # Gone since the check.
        DriftItem(
            name=app,
            kind=Kind.SECURITY_GROUP,
            id=vanished,
            drift=Drift.CHANGED,
            field="tag:team",
            expected="web",
            actual="x",
        ),
    ]
    before = inventory(), ec2_tags(ec2, nat, gone, kept, table, subnet)

    recorder.calls.clear()  # the deploy's calls
    assert await repair(aws, spec, *items) == RepairResult(fixed=[], left=items)
    # The one write sent named the group deleted since the check, and AWS refused it.
    assert writes(recorder) == {"ec2:CreateTags"}
    assert [call.params["Resources"] for call in recorder.calls_of("ec2:CreateTags")] == [[vanished]]
    assert (inventory(), ec2_tags(ec2, nat, gone, kept, table, subnet)) == before
