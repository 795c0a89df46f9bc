"""The drift check (activities/drift.py) on a real deployment: each test deploys on moto, changes one
thing by hand with boto3 as a console click or a script would, and checks the exact report and its
words.

The check runs as an activity (tests/support/attempts.py: an ActivityEnvironment with the timeouts a
worker gives a quick step) with the deployment's spec and outputs, as the deployment's workflow passes
them; some checks run without outputs too (`starter.py check` on a deployment whose workflow has none).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import boto3
from temporalio.client import Client
from temporalio.worker import Worker

from activities import AwsClients
from activities.drift import DriftActivities
from activities.live import read_live
from models import naming
from models.diff import desired
from models.drift import CheckInput, Drift, DriftItem, DriftReport, find_drift, target_items
from models.live import LiveDeployment, LiveResource
from models.naming import DEPLOYMENT_TAG, RESOURCE_TAG
from models.resources import DeploymentOutputs, Kind, Scope
from models.spec import DeploymentSpec
from tests.support.attempts import attempt_environment
from tests.support.aws_calls import ActionRecorder
from tests.support.drift import narrow_egress
from tests.support.iam_policy import both_policies, granted_actions
from tests.support.specs import fast_spec
from tests.test_deploy_workflow import deploy

AZ_A, AZ_C = "ap-northeast-2a", "ap-northeast-2c"
NAT = naming.nat_gateway(AZ_A)
ROUTE_TABLE = naming.route_table(None)
READ_ONLY = ("Describe", "Get", "List")


def check(aws: AwsClients, spec: DeploymentSpec, outputs: DeploymentOutputs | None) -> DriftReport:
    scope = Scope(deployment_id=spec.deployment_id, region=spec.region, tags=spec.tags)
    request = CheckInput(scope=scope, spec=spec, outputs=outputs, timing=spec.timing)
    return attempt_environment(spec.timing).run(DriftActivities(aws).check_drift, request)


def words(report: DriftReport) -> list[str]:
    return [item.describe() for item in report.items]


async def test_a_deployment_checks_clean_right_after_its_deploy(client: Client, worker: Worker, aws):
    # The spec's own tags, an unpinned AMI, the address, the listener, the target group's attributes:
    # nothing the deploy made reads as a difference, with the outputs or without.
    spec = fast_spec(tags={"team": "web"})
    outputs = await deploy(client, worker, spec)

    report = check(aws, spec, outputs)
    assert (report.drifted, report.items, report.summary()) == (False, [], "no drift")
    assert (report.deployment_id, report.region) == (spec.deployment_id, spec.region)
    assert check(aws, spec, None).items == []


async def test_a_terminated_instance_is_missing(client: Client, worker: Worker, aws, ec2):
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    gone = outputs.instance_ids["app-0"]
    ec2.terminate_instances(InstanceIds=[gone])  # AWS (and moto) still lists it, `terminated`

    report = check(aws, spec, outputs)
    assert report.items == [DriftItem(name="app-0", kind=Kind.INSTANCE, id=gone, drift=Drift.MISSING)]
    assert words(report) == [f"app-0 ({gone}) missing: deleted outside the deployment"]
    assert report.summary() == f"1 difference(s): app-0 ({gone}) missing: deleted outside the deployment"
    # Without the outputs the check knows the slot, not the id it had; moto keeps the terminated
    # instance registered (AWS deregisters it), which is no foreign target.
    assert words(check(aws, spec, None)) == ["app-0 missing: deleted outside the deployment"]


async def test_a_stopped_instance_is_changed(client: Client, worker: Worker, aws, ec2):
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    instance = outputs.instance_ids["app-0"]
    ec2.stop_instances(InstanceIds=[instance])

    report = check(aws, spec, outputs)
    assert report.items == [
        DriftItem(
            name="app-0",
            kind=Kind.INSTANCE,
            id=instance,
            drift=Drift.CHANGED,
            field="state",
            expected="running",
            actual="stopped",
        )
    ]
    assert words(report) == [f"app-0 ({instance}) changed state: expected running, live stopped"]


async def test_an_added_and_a_removed_ingress_rule_are_one_item_each(
    client: Client, worker: Worker, aws, ec2
):
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    app, alb = outputs.app_security_group_id, outputs.alb_security_group_id
    ec2.authorize_security_group_ingress(
        GroupId=app, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="0.0.0.0/0"
    )
    ec2.revoke_security_group_ingress(
        GroupId=alb, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0"
    )

    report = check(aws, spec, outputs)
    assert report.items == [
        DriftItem(
            name=naming.ALB_SECURITY_GROUP,
            kind=Kind.SECURITY_GROUP,
            id=alb,
            drift=Drift.MISSING,
            field="ingress",
            expected="tcp/80 from 0.0.0.0/0",
        ),
        DriftItem(
            name=naming.APP_SECURITY_GROUP,
            kind=Kind.SECURITY_GROUP,
            id=app,
            drift=Drift.EXTRA,
            field="ingress",
            actual="tcp/22 from 0.0.0.0/0",
        ),
    ]
    assert words(report) == [
        f"sg-alb ({alb}) missing ingress: tcp/80 from 0.0.0.0/0",
        f"sg-app ({app}) extra ingress: tcp/22 from 0.0.0.0/0",
    ]


async def test_rules_the_deployment_never_makes_are_named_whole(client: Client, worker: Worker, aws, ec2):
    """IPv6 ranges, prefix lists, every protocol and port ranges: each is its own rule, and a range
    that holds the listener's port is not the listener's rule."""
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    app, alb = outputs.app_security_group_id, outputs.alb_security_group_id
    offices = ec2.create_managed_prefix_list(
        PrefixListName="offices", MaxEntries=2, AddressFamily="IPv4", Entries=[{"Cidr": "192.0.2.0/24"}]
    )["PrefixList"]["PrefixListId"]
    ec2.authorize_security_group_ingress(
        GroupId=app,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
            {"IpProtocol": "-1", "PrefixListIds": [{"PrefixListId": offices}]},
            {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=alb,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 90, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    ec2.revoke_security_group_ingress(
        GroupId=alb, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0"
    )

    assert words(check(aws, spec, outputs)) == [
        f"sg-alb ({alb}) extra ingress: tcp/80-90 from 0.0.0.0/0",
        f"sg-alb ({alb}) missing ingress: tcp/80 from 0.0.0.0/0",
        f"sg-app ({app}) extra ingress: all from {offices}",
        f"sg-app ({app}) extra ingress: icmp from 10.0.0.0/8",
        f"sg-app ({app}) extra ingress: tcp/22 from ::/0",
    ]


async def test_egress_taken_away_and_added_is_one_item_each(client: Client, worker: Worker, aws, ec2):
    """Without AWS's allow-all egress the instances cannot reach the NAT gateway, nor the ALB its
    targets: a removed one is missing, any other is extra."""
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    app, alb = outputs.app_security_group_id, outputs.alb_security_group_id
    narrow_egress(ec2, outputs)

    assert words(check(aws, spec, outputs)) == [
        f"sg-alb ({alb}) extra egress: tcp/25 to 10.0.0.0/8",
        f"sg-app ({app}) missing egress: all to 0.0.0.0/0",
    ]


async def test_a_deregistered_target_is_missing(client: Client, worker: Worker, aws, elbv2):
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    group, instance = outputs.target_group_arn, outputs.instance_ids["app-1"]
    elbv2.deregister_targets(TargetGroupArn=group, Targets=[{"Id": instance}])

    report = check(aws, spec, outputs)
    assert report.items == [
        DriftItem(
            name=naming.TARGET_GROUP,
            kind=Kind.TARGET_GROUP,
            id=group,
            drift=Drift.MISSING,
            field="target",
            expected=instance,
        )
    ]
    assert words(report) == [f"tg-app ({group}) missing target: {instance} (not registered)"]


def test_a_draining_target_counts_as_deregistered_and_a_foreign_draining_one_as_gone():
    """Real AWS reports a deregistered target `draining` for its deregistration delay (moto drops it
    at once): ours then is missing, and a foreign one on its way out is no drift."""
    group = LiveResource(kind=Kind.TARGET_GROUP, name=naming.TARGET_GROUP, id="arn:tg")
    states = {"i-ours0": "draining", "i-ours1": "unused", "i-ours2": "initial", "i-other": "draining"}
    items = target_items(group, ["i-ours0", "i-ours1", "i-ours2", "i-ours3"], set(), states)
    assert [(i.drift, i.expected or i.actual) for i in items] == [
        (Drift.MISSING, "i-ours0"),
        (Drift.MISSING, "i-ours3"),
    ]


def live_of(spec: DeploymentSpec, *replaced: str) -> LiveDeployment:
    """`spec`'s deployment as activities/live.py reads it; each `replaced` slot's instance is its first
    replacement (`app-1-g1`), as a converge names it."""
    resources = []
    for want in desired(spec):
        name = f"{want.name}-g1" if want.name in replaced else want.name
        resources.append(LiveResource(kind=want.kind, name=name, id=f"id-{name}", facts=want.facts))
    return LiveDeployment(deployment_id=spec.deployment_id, region=spec.region, resources=resources)


def test_an_instance_is_named_as_it_was_live():
    """A replaced slot's instance is `app-1-g1`: changed, it is named so; gone, it is named as the
    outputs knew it, with the id it had."""
    spec = fast_spec()
    live = live_of(spec, "app-1")
    changed = [
        r.model_copy(update={"facts": {**r.facts, "instance_type": "t3.large"}})
        if r.name == "app-1-g1"
        else r
        for r in live.resources
    ]
    assert find_drift(spec, live.model_copy(update={"resources": changed})) == [
        DriftItem(
            name="app-1-g1",
            kind=Kind.INSTANCE,
            id="id-app-1-g1",
            drift=Drift.CHANGED,
            field="instance_type",
            expected=spec.instances.instance_type,
            actual="t3.large",
        )
    ]
    without = live.model_copy(update={"resources": [r for r in live.resources if r.name != "app-1-g1"]})
    assert find_drift(spec, without, known={"i-old": "app-1-g1"}) == [
        DriftItem(name="app-1-g1", kind=Kind.INSTANCE, id="i-old", drift=Drift.MISSING)
    ]
    assert find_drift(spec, live) == []


async def test_a_foreign_target_is_extra(client: Client, worker: Worker, aws, ec2, elbv2):
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    # A stray instance in the deployment's VPC, without its tags, registered by hand.
    (stray,) = ec2.run_instances(
        ImageId=outputs.ami_id,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=outputs.private_subnet_ids[AZ_A],
    )["Instances"]
    stray_id = stray["InstanceId"]
    elbv2.register_targets(TargetGroupArn=outputs.target_group_arn, Targets=[{"Id": stray_id, "Port": 3000}])

    report = check(aws, spec, outputs)
    group = outputs.target_group_arn
    assert report.items == [
        DriftItem(
            name=naming.TARGET_GROUP,
            kind=Kind.TARGET_GROUP,
            id=group,
            drift=Drift.EXTRA,
            field="target",
            actual=stray_id,
        )
    ]
    assert words(report) == [f"tg-app ({group}) extra target: {stray_id} (not an instance of the deployment)"]


MAINTENANCE = {
    "Type": "fixed-response",
    "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/plain", "MessageBody": "back soon"},
}
"""A listener's default action set by hand: a maintenance page instead of the app."""


def listener_arn(outputs: DeploymentOutputs, port: int = 80) -> str:
    return next(
        r.id for r in outputs.resources if r.kind is Kind.LISTENER and r.name == naming.listener(port)
    )


async def test_a_listener_sent_elsewhere_is_changed(client: Client, worker: Worker, aws, elbv2):
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    arn = listener_arn(outputs)
    elbv2.modify_listener(ListenerArn=arn, DefaultActions=[MAINTENANCE])
    assert words(check(aws, spec, outputs)) == [
        f"listener-80 ({arn}) changed default_action: expected forward to tg-app, live fixed-response 503"
    ]

    # To someone else's target group: named by its ARN, with or without the deployment's outputs.
    other = elbv2.create_target_group(
        Name="someone-else", Protocol="HTTP", Port=8080, VpcId=outputs.vpc_id, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_listener(ListenerArn=arn, DefaultActions=[{"Type": "forward", "TargetGroupArn": other}])
    expected = [
        f"listener-80 ({arn}) changed default_action: expected forward to tg-app, live forward to {other}"
    ]
    assert words(check(aws, spec, outputs)) == expected
    assert words(check(aws, spec, None)) == expected


async def test_a_deleted_nat_gateway_is_missing_and_its_route_leads_nowhere(
    client: Client, worker: Worker, aws, ec2
):
    """The NAT gateway is missing, and the route table that sends the private subnets' traffic to it
    is changed: its default route names the deleted gateway (a blackhole on AWS). Both are reported,
    as both must be made right (a new gateway, and the route moved to it); the address stays."""
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    nat, table = outputs.nat_gateway_ids[AZ_A], outputs.route_table_ids[AZ_A]
    ec2.delete_nat_gateway(NatGatewayId=nat)  # listed `deleted` afterwards, on AWS and on moto

    report = check(aws, spec, outputs)
    assert report.items == [
        DriftItem(name=NAT, kind=Kind.NAT_GATEWAY, id=nat, drift=Drift.MISSING),
        DriftItem(
            name=ROUTE_TABLE,
            kind=Kind.ROUTE_TABLE,
            id=table,
            drift=Drift.CHANGED,
            field="default_route",
            expected=NAT,
            actual=f"{nat} (deleted)",
        ),
    ]
    assert words(report) == [
        f"{NAT} ({nat}) missing: deleted outside the deployment",
        f"rt-private ({table}) changed default_route: expected {NAT}, live {nat} (deleted)",
    ]
    # Without the outputs: the gateway's id is unknown, but the route's gateway is looked up.
    assert words(check(aws, spec, None)) == [
        f"{NAT} missing: deleted outside the deployment",
        f"rt-private ({table}) changed default_route: expected {NAT}, live {nat} (deleted)",
    ]


async def test_removed_and_changed_tags(client: Client, worker: Worker, aws, ec2, elbv2):
    """A tag the deployment made, removed or changed, is drift: the instance's `Name`, the subnet's
    deployment tag (it is found by the id the outputs name, and its route table still reads as it
    should), a tag of the spec's `tags` on the target group. A tag someone added is not."""
    spec = fast_spec(tags={"team": "web"})
    outputs = await deploy(client, worker, spec)
    instance, subnet = outputs.instance_ids["app-0"], outputs.private_subnet_ids[AZ_A]
    group = outputs.target_group_arn
    ec2.delete_tags(Resources=[instance], Tags=[{"Key": "Name"}])
    ec2.delete_tags(Resources=[subnet], Tags=[{"Key": DEPLOYMENT_TAG}])
    ec2.create_tags(Resources=[instance], Tags=[{"Key": "owner", "Value": "someone"}])
    elbv2.add_tags(ResourceArns=[group], Tags=[{"Key": "team", "Value": "ops"}])

    report = check(aws, spec, outputs)
    subnet_name = naming.private_subnet(AZ_A)
    assert report.items == [
        DriftItem(
            name=subnet_name,
            kind=Kind.SUBNET,
            id=subnet,
            drift=Drift.MISSING,
            field=f"tag:{DEPLOYMENT_TAG}",
            expected=spec.deployment_id,
        ),
        DriftItem(
            name=naming.TARGET_GROUP,
            kind=Kind.TARGET_GROUP,
            id=group,
            drift=Drift.CHANGED,
            field="tag:team",
            expected="web",
            actual="ops",
        ),
        DriftItem(
            name="app-0",
            kind=Kind.INSTANCE,
            id=instance,
            drift=Drift.MISSING,
            field="tag:Name",
            expected=f"{spec.deployment_id}-app-0",
        ),
    ]
    assert words(report) == [
        f"{subnet_name} ({subnet}) missing tag:{DEPLOYMENT_TAG}: {spec.deployment_id}",
        f"tg-app ({group}) changed tag:team: expected web, live ops",
        f"app-0 ({instance}) missing tag:Name: {spec.deployment_id}-app-0",
    ]
    # Without the outputs, a subnet without the deployment's tag cannot be told from a deleted one,
    # and its route table reads it by id.
    other = naming.private_subnet(AZ_C)
    assert words(check(aws, spec, None)) == [
        f"{subnet_name} missing: deleted outside the deployment",
        f"rt-private ({outputs.route_table_ids[AZ_A]}) changed subnets: expected {subnet_name}, {other}, "
        f"live {', '.join(sorted([subnet, other]))}",
        f"tg-app ({group}) changed tag:team: expected web, live ops",
        f"app-0 ({instance}) missing tag:Name: {spec.deployment_id}-app-0",
    ]


async def test_an_instance_carrying_the_deployments_tags_is_extra(client: Client, worker: Worker, aws, ec2):
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    tags = [{"Key": DEPLOYMENT_TAG, "Value": spec.deployment_id}, {"Key": RESOURCE_TAG, "Value": "app-2"}]
    (extra,) = ec2.run_instances(
        ImageId=outputs.ami_id,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=outputs.private_subnet_ids[AZ_A],
        SecurityGroupIds=[outputs.app_security_group_id],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    extra_id = extra["InstanceId"]

    report = check(aws, spec, outputs)
    assert report.items == [DriftItem(name="app-2", kind=Kind.INSTANCE, id=extra_id, drift=Drift.EXTRA)]
    assert words(report) == [f"app-2 ({extra_id}) extra: not in the spec"]


async def test_a_check_only_reads(client: Client, worker: Worker, ec2):
    """Every AWS call of a check is a Describe, Get or List that docs/iam-policy.json (or the HTTPS
    policy, for the certificates the read looks for) grants: on a clean deployment, and on one whose
    resources must be looked up by id (a terminated instance, a deleted NAT gateway). On a clean
    deployment the check adds three calls to the read `plan` makes (activities/live.py): the EC2 tags,
    the load balancing tags, the target health."""
    spec = fast_spec()
    outputs = await deploy(client, worker, spec)
    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)

    def recorded(run: Callable[[AwsClients], object]) -> ActionRecorder:
        recorder = ActionRecorder()
        assert run(AwsClients(recorder.watch(boto3.Session())))
        assert recorder.unknown_services == set()
        return recorder

    read = recorded(lambda aws: attempt_environment(spec.timing).run(read_live, aws, scope))
    clean = recorded(lambda aws: not check(aws, spec, outputs).drifted)
    added = Counter(call.action for call in clean.calls) - Counter(call.action for call in read.calls)
    assert added == Counter(
        {
            "ec2:DescribeTags": 1,
            "elasticloadbalancing:DescribeTags": 1,
            "elasticloadbalancing:DescribeTargetHealth": 1,
        }
    )
    print(f"one check of a {len(outputs.instance_ids)}-instance deployment: {len(clean.calls)} AWS calls")

    ec2.terminate_instances(InstanceIds=[outputs.instance_ids["app-0"]])
    ec2.delete_nat_gateway(NatGatewayId=outputs.nat_gateway_ids[AZ_A])
    drifted = recorded(lambda aws: len(check(aws, spec, outputs).items) == 3)
    print(
        f"one check of it, an instance terminated and the NAT gateway deleted: {len(drifted.calls)} AWS calls"
    )
    actions = clean.actions | drifted.actions
    assert all(action.split(":")[1].startswith(READ_ONLY) for action in actions), sorted(actions)
    assert actions <= granted_actions(both_policies()), sorted(actions - granted_actions(both_policies()))
