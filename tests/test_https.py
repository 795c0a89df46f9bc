"""The `https` section on moto: the topology by describe calls, `down`, a brought certificate, bad specs.

AWS's refusals moto lacks are on (tests/support/strict_aws.py): an HTTPS listener needs an ISSUED
certificate, and a certificate a listener uses cannot be deleted, so the order of the steps and of
their undoing is checked, not assumed. moto issues a certificate 1 s after its request (tests/conftest.py).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import boto3
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from activities import AwsClients
from activities.planning import PlanActivities
from activities.preflight import FACTS
from models.cost import estimate
from models.deployment import Outcome
from models.diff import Action, diff
from models.live import InspectInput
from models.naming import ALB_SECURITY_GROUP, ALIAS_RECORD, CERTIFICATE, DEPLOYMENT_TAG, VALIDATION_RECORD
from models.plan import CERTIFICATE_ISSUED, plan
from models.resources import DeploymentOutputs, Kind, PreflightInput, Scope, TeardownInput
from models.spec import DEFAULT_SSL_POLICY, DeploymentSpec
from tests.support.attempts import attempt_environment
from tests.support.faults import OperationFaults
from tests.support.https import DOMAIN, REGION, hosted_zone, https_spec, user_record
from tests.support.inventory import added, inventory
from tests.support.specs import FAST_TIMING
from tests.support.strict_aws import StrictAws
from tests.test_deployment_workflow import up as up_through_the_deployment
from workflows.deploy import DeployWorkflow
from workflows.plan import InspectWorkflow
from workflows.teardown import TeardownWorkflow


@pytest.fixture
def strict(aws: AwsClients) -> StrictAws:
    return StrictAws(aws.session)


async def deploy(client: Client, worker: Worker, spec: DeploymentSpec) -> DeploymentOutputs:
    return await client.execute_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )


async def down(client: Client, worker: Worker, spec: DeploymentSpec) -> None:
    request = TeardownInput(
        scope=Scope(deployment_id=spec.deployment_id, region=spec.region), timing=FAST_TIMING
    )
    await client.execute_workflow(
        TeardownWorkflow.run, request, id=f"teardown-{spec.deployment_id}", task_queue=worker.task_queue
    )


def records(zone_id: str) -> dict[tuple[str, str], dict]:
    route53 = boto3.client("route53", region_name=REGION)
    items = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {(item["Name"], item["Type"]): item for item in items}


def issued_certificate(domain: str = DOMAIN) -> str:
    """A certificate the user requested and validated themselves (moto issues it after 1 s)."""
    acm = boto3.client("acm", region_name=REGION)
    arn = acm.request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]
    deadline = time.monotonic() + 10
    while acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] != "ISSUED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return arn


async def test_https_deployment_topology(client, worker, strict: StrictAws, elbv2, ec2):
    zone_id = hosted_zone()
    spec = https_spec()
    outputs = await deploy(client, worker, spec)

    assert outputs.url == f"https://{DOMAIN}" and outputs.domain == DOMAIN
    balancer = elbv2.describe_load_balancers(LoadBalancerArns=[outputs.load_balancer_arn])["LoadBalancers"][0]
    listeners = {
        lsn["Port"]: lsn
        for lsn in elbv2.describe_listeners(LoadBalancerArn=outputs.load_balancer_arn)["Listeners"]
    }
    assert set(listeners) == {80, 443}
    http, https = listeners[80], listeners[443]
    assert http["ListenerArn"] == outputs.listener_arn and http["Protocol"] == "HTTP"
    (redirect,) = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS" and redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    assert https["ListenerArn"] == outputs.https_listener_arn and https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == DEFAULT_SSL_POLICY
    assert [c["CertificateArn"] for c in https["Certificates"]] == [outputs.certificate_arn]
    (forward,) = https["DefaultActions"]
    assert forward["Type"] == "forward" and forward["TargetGroupArn"] == outputs.target_group_arn

    acm = boto3.client("acm", region_name=REGION)
    certificate = acm.describe_certificate(CertificateArn=outputs.certificate_arn)["Certificate"]
    assert certificate["Status"] == "ISSUED" and certificate["DomainName"] == DOMAIN
    tags = acm.list_tags_for_certificate(CertificateArn=outputs.certificate_arn)["Tags"]
    assert {"Key": DEPLOYMENT_TAG, "Value": spec.deployment_id} in tags
    validation = certificate["DomainValidationOptions"][0]["ResourceRecord"]

    found = records(zone_id)
    cname = found[validation["Name"], "CNAME"]
    assert [r["Value"] for r in cname["ResourceRecords"]] == [validation["Value"]]
    alias = found[f"{DOMAIN}.", "A"]["AliasTarget"]
    assert alias["DNSName"].rstrip(".") == balancer["DNSName"]
    assert alias["HostedZoneId"] == balancer["CanonicalHostedZoneId"]
    assert (f"{DOMAIN}.", "AAAA") not in found  # the ALB is IPv4 only

    (group,) = ec2.describe_security_groups(GroupIds=[outputs.alb_security_group_id])["SecurityGroups"]
    opened = {(p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p.get("IpRanges", [])}
    assert opened == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    assert strict.refused == {}  # nothing was tried before its time

    report = attempt_environment().run(
        PlanActivities(AwsClients(boto3.Session())).plan, PreflightInput(spec=spec)
    )
    assert report.problems == []  # the alias record at the domain is there, and it is ours
    found = {(r.kind, r.name) for r in report.existing}
    assert {
        (Kind.CERTIFICATE, CERTIFICATE),
        (Kind.DNS_RECORD, VALIDATION_RECORD),
        (Kind.DNS_RECORD, ALIAS_RECORD),
    } <= found


def test_plan_prices_what_https_adds():
    plain, https = estimate(DeploymentSpec()), estimate(https_spec())
    added_lines = {line.item: line.hourly_usd for line in https.lines[len(plain.lines) :]}
    assert added_lines == {"ACM public certificate": 0.0, "Route 53 alias record to the ALB": 0.0}
    assert https.hourly_usd == plain.hourly_usd and any("hosted zone" in note for note in https.notes)


async def test_down_removes_everything_of_ours_and_nothing_the_user_brought(
    client, worker, strict: StrictAws
):
    """The user's zone, their own record, their own certificate for the same name and its validation
    record (ACM gives both certificates the same one) all stay; ours all go."""
    zone_id = hosted_zone()
    user_record(zone_id, f"www.{DOMAIN}.")
    theirs = issued_certificate()
    acm = boto3.client("acm", region_name=REGION)
    their_validation = acm.describe_certificate(CertificateArn=theirs)["Certificate"][
        "DomainValidationOptions"
    ][0]
    user_record(
        zone_id,
        their_validation["ResourceRecord"]["Name"],
        their_validation["ResourceRecord"]["Value"],
        "CNAME",
    )
    before = inventory()
    spec = https_spec()
    outputs = await deploy(client, worker, spec)
    assert outputs.certificate_arn != theirs
    assert set(added(before, inventory())) >= {"certificates", "dns_records", "listeners"}

    await down(client, worker, spec)

    assert inventory() == before  # their certificate and their validation record included
    assert strict.refused[("DeleteCertificate", "ResourceInUseException")] == 0


async def test_a_brought_certificate_is_used_and_never_deleted(client, worker, strict: StrictAws, elbv2):
    hosted_zone()
    theirs = issued_certificate()
    before = inventory()
    spec = https_spec(certificate_arn=theirs)
    assert CERTIFICATE_ISSUED not in {step.key for step in plan(spec)}

    outputs = await deploy(client, worker, spec)

    assert outputs.certificate_arn == theirs
    (https,) = [
        lsn
        for lsn in elbv2.describe_listeners(LoadBalancerArn=outputs.load_balancer_arn)["Listeners"]
        if lsn["Port"] == 443
    ]
    assert https["Certificates"][0]["CertificateArn"] == theirs
    assert added(before, inventory()).get("certificates") is None
    await down(client, worker, spec)
    assert inventory() == before


BAD_HTTPS = {
    "domain outside the zone": (
        lambda zone_id: {"domain": "api.example.org", "hosted_zone_id": zone_id},
        "is outside hosted zone",
    ),
    "unknown zone": (
        lambda zone_id: {"domain": DOMAIN, "hosted_zone_id": "Z0000000000000NOSUCH"},
        "does not exist",
    ),
    "no zone holds the domain": (
        lambda zone_id: {"domain": "api.example.net"},
        "no public Route 53 hosted zone",
    ),
    "a record of someone else": (
        lambda zone_id: {"domain": f"www.{DOMAIN}"},
        "already has a record not made by",
    ),
    "certificate unknown": (
        lambda zone_id: {
            "domain": DOMAIN,
            "certificate_arn": f"arn:aws:acm:{REGION}:123456789012:certificate/{uuid.uuid4()}",
        },
        "does not exist in",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_HTTPS))
async def test_bad_https_spec_is_answered_before_anything_is_created(client, worker, case: str):
    zone_id = hosted_zone()
    user_record(zone_id, f"www.{DOMAIN}.")
    https, expected = BAD_HTTPS[case]
    before = inventory()
    spec = https_spec(**https(zone_id))

    with pytest.raises(WorkflowFailureError) as failure:
        await deploy(client, worker, spec)

    message = failure.value.cause.message
    assert "preflight found problems, nothing was created" in message and expected in message, message
    assert inventory() == before


def test_certificate_of_another_region_is_refused_with_the_spec():
    arn = f"arn:aws:acm:us-east-1:123456789012:certificate/{uuid.uuid4()}"
    with pytest.raises(ValueError, match="an ALB uses certificates of its own region only"):
        https_spec(certificate_arn=arn)


def https_points(recorded: Counter[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """The calls HTTPS adds: every ACM and Route 53 operation at its first call and, for a write, its
    last (how often a read polls depends on timing: its last call in the recorded run may never come in
    another), the HTTPS listener (the last CreateListener) and the ALB group's 443 rule (its second
    ingress rule)."""
    points = [
        (service, operation, n)
        for (service, operation), last in sorted(recorded.items())
        if service in ("acm", "route53")
        for n in sorted({1, 1 if operation.startswith(("Describe", "Get", "List")) else last})
    ]
    return points + [
        ("elbv2", "CreateListener", recorded["elbv2", "CreateListener"]),
        ("ec2", "AuthorizeSecurityGroupIngress", 2),
    ]


@pytest.mark.parametrize(
    "strictly", [False, pytest.param(True, marks=pytest.mark.soak)], ids=["moto", "strict"]
)
async def test_a_failure_at_each_https_call_rolls_back_to_the_account_before(
    client, aws: AwsClients, worker, strictly: bool
):
    """Each call HTTPS adds, failed for good: the run ends FAILED, rolled back, and the account (its
    certificates and every record of the zone included) is as it was. The points come from a recorded
    run, so a call added to the HTTPS steps is covered without editing this test."""
    if strictly:  # the undoing order checked too (a minute: slow deletions and lingers)
        StrictAws(aws.session)
    faults = OperationFaults(aws.session)
    hosted_zone()
    faults.arm(None)
    recorded_spec = https_spec()
    await deploy(client, worker, recorded_spec)
    recorded = Counter(faults.counts)
    await down(client, worker, recorded_spec)
    points = https_points(recorded)
    problems: dict[tuple[str, str, int], str] = {}
    for point in points:
        FACTS.forget()
        before = inventory()
        faults.arm(point)
        with pytest.raises(WorkflowFailureError) as failure:
            await deploy(client, worker, https_spec())
        message = failure.value.cause.message
        if faults.hit is None or "everything created was rolled back" not in message:
            problems[point] = f"hit {faults.hit}: {message}"
        elif inventory() != before:
            problems[point] = f"left {added(before, inventory())}, removed {added(inventory(), before)}"
    print(f"HTTPS fault matrix: {len(points)} injection points")
    assert {service for service, _, _ in points} >= {"acm", "route53", "elbv2", "ec2"}
    assert not problems, "\n".join(f"{p}: {text}" for p, text in problems.items())


async def test_up_again_on_a_live_https_deployment_changes_nothing(client, worker):
    """The ALB group opens 80 and 443: the diff must expect both, or a second `up` reads the 443 rule
    as a port move and refuses (exit 5)."""
    hosted_zone()
    spec = https_spec()
    first = await up_through_the_deployment(client, worker, spec)
    assert first.outcome is Outcome.COMPLETED, first.message
    before = inventory()

    again = await up_through_the_deployment(client, worker, spec)

    assert again.outcome is not Outcome.REFUSED, again.message
    assert inventory() == before
    live = await client.execute_workflow(
        InspectWorkflow.run,
        InspectInput(scope=Scope(deployment_id=spec.deployment_id, region=spec.region), timing=FAST_TIMING),
        id=f"inspect-{spec.deployment_id}",
        task_queue=worker.task_queue,
    )
    group = next(a for a in diff(spec, live) if a.name == ALB_SECURITY_GROUP)
    assert group.action is Action.UNCHANGED, group
