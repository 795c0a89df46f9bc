"""`plan` and `up` on a live HTTPS deployment: its certificate, DNS records and HTTPS listener read back.

Deployed on moto (a hosted zone of the user's; moto issues the certificate 1 s after its request) and
read with InspectWorkflow, as `plan` and `up` read it; then diffed against the same and changed specs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import boto3
from temporalio.client import Client
from temporalio.worker import Worker

from activities import AwsClients
from activities.live import read_live
from models.deployment import Outcome
from models.diff import Action, ResourceAction, describe, diff, inapplicable
from models.live import InspectInput, LiveDeployment
from models.naming import ALIAS_RECORD, CERTIFICATE, VALIDATION_RECORD, listener
from models.resources import Kind, Scope
from models.spec import DeploymentSpec
from tests.support.faults import InjectedFault
from tests.support.https import DOMAIN, REGION, hosted_zone, https_spec
from tests.support.inventory import inventory
from tests.support.processes import Cli
from tests.support.specs import FAST_TIMING, fast_spec
from tests.test_cli_operations import run
from tests.test_deployment_workflow import up
from workflows.plan import InspectWorkflow

HTTPS_ROWS = {CERTIFICATE, VALIDATION_RECORD, listener(443), ALIAS_RECORD}
NEWER_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
EXIT_OK, EXIT_NOT_APPLICABLE = 0, 5


async def plan(client: Client, worker: Worker, spec: DeploymentSpec, tmp_path, *assignments: str):
    """`starter.py plan --json` of `spec` (with `--set` assignments), as an operator runs it."""
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(spec.model_dump(mode="json", exclude_defaults=True)))
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    sets = [arg for assignment in assignments for arg in ("--set", assignment)]
    return await run(cli, "plan", "--spec", str(path), *sets, "--json")


async def inspect(client: Client, worker: Worker, spec: DeploymentSpec) -> LiveDeployment:
    return await client.execute_workflow(
        InspectWorkflow.run,
        InspectInput(scope=Scope(deployment_id=spec.deployment_id, region=spec.region), timing=FAST_TIMING),
        id=f"inspect-{spec.deployment_id}-{uuid.uuid4().hex[:8]}",
        task_queue=worker.task_queue,
    )


def by_name(actions: list[ResourceAction]) -> dict[str, ResourceAction]:
    return {a.name: a for a in actions}


def with_https(spec: DeploymentSpec, **https: object) -> DeploymentSpec:
    assert spec.https is not None
    return spec.model_copy(update={"https": spec.https.model_copy(update=https)})


async def deployed(client: Client, worker: Worker) -> tuple[str, DeploymentSpec]:
    zone_id = hosted_zone()
    spec = https_spec()
    first = await up(client, worker, spec)
    assert first.outcome is Outcome.COMPLETED, first.message
    return zone_id, spec


async def test_a_live_https_deployment_reads_back_unchanged_and_a_new_domain_replaces(client, worker):
    zone_id, spec = await deployed(client, worker)
    live = await inspect(client, worker, spec)

    found = {r.name: r for r in live.resources if r.name in HTTPS_ROWS}
    assert set(found) == HTTPS_ROWS
    assert found[CERTIFICATE].facts == {"domain": DOMAIN}
    assert found[ALIAS_RECORD].facts == {"domain": DOMAIN, "hosted_zone_id": zone_id}
    assert found[VALIDATION_RECORD].facts == {"domain": DOMAIN, "hosted_zone_id": zone_id}
    assert found[listener(443)].facts["ssl_policy"] == spec.https.ssl_policy
    actions = diff(spec, live)
    assert {a.name: a.action for a in actions if a.action is not Action.UNCHANGED} == {}
    assert {a.name for a in actions} >= HTTPS_ROWS

    moved = by_name(diff(with_https(spec, domain="www.example.com"), live))
    for name in (CERTIFICATE, VALIDATION_RECORD, ALIAS_RECORD):
        assert moved[name].action is Action.REPLACE, moved[name]
        assert [(c.field, c.before, c.after) for c in moved[name].changes] == [
            ("domain", DOMAIN, "www.example.com")
        ]
    assert moved[listener(443)].action is Action.UNCHANGED
    refused = {a.name for a in inapplicable(list(moved.values()))}
    assert refused == {CERTIFICATE, VALIDATION_RECORD, ALIAS_RECORD}
    assert "a certificate's domain cannot change" in describe(moved[CERTIFICATE])

    zone = by_name(diff(with_https(spec, hosted_zone_id="Z0THERZONE"), live))
    assert zone[ALIAS_RECORD].action is Action.REPLACE and zone[CERTIFICATE].action is Action.UNCHANGED

    policy = by_name(diff(with_https(spec, ssl_policy=NEWER_POLICY), live))
    assert policy[listener(443)].action is Action.UPDATE
    assert inapplicable(list(policy.values())) == []  # ModifyListener, in place
    brought = by_name(
        diff(with_https(spec, certificate_arn="arn:aws:acm:ap-northeast-2:1:certificate/x"), live)
    )
    assert brought[listener(443)] in inapplicable(list(brought.values()))  # and the certificate's delete


async def test_a_record_changed_outside_reads_as_missing(client, worker):
    """The read checks the record says what the deployment wrote, not only that a name exists."""
    zone_id, spec = await deployed(client, worker)
    route53 = boto3.client("route53", region_name=REGION)
    (alias,) = [
        item
        for item in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        if item["Type"] == "A" and item["Name"] == f"{DOMAIN}."
    ]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": alias}]}
    )

    actions = by_name(diff(spec, await inspect(client, worker, spec)))

    assert actions[ALIAS_RECORD].action is Action.CREATE
    assert actions[CERTIFICATE].action is Action.UNCHANGED


async def test_up_scales_out_a_live_https_deployment_and_refuses_a_new_domain_saying_why(
    client, worker, tmp_path
):
    """Read as missing, the HTTPS rows made every change a create, and a create with instances to
    change was refused: a scale-out of an HTTPS deployment converges now."""
    _, spec = await deployed(client, worker)
    unchanged = await plan(client, worker, spec, tmp_path)
    assert unchanged.code == EXIT_OK, unchanged.stderr
    assert {a["action"] for a in unchanged.json()["actions"]} == {"unchanged"}
    assert {a["name"] for a in unchanged.json()["actions"]} >= HTTPS_ROWS
    before = inventory()

    renamed = await up(client, worker, with_https(spec, domain="www.example.com"))

    assert renamed.outcome is Outcome.REFUSED, renamed.message
    assert f"certificate replace (domain {DOMAIN} -> www.example.com)" in renamed.message
    assert "a certificate's domain cannot change" in renamed.message
    assert {a.kind for a in renamed.refused} == {Kind.CERTIFICATE, Kind.DNS_RECORD}
    assert inventory() == before
    changed_by_plan = await plan(client, worker, spec, tmp_path, "https.domain=www.example.com")
    assert changed_by_plan.code == EXIT_NOT_APPLICABLE, changed_by_plan.stderr
    assert "`up` would refuse this" in changed_by_plan.stderr
    assert "a certificate's domain cannot change" in changed_by_plan.stderr
    assert {
        a["name"]: a["action"] for a in changed_by_plan.json()["actions"] if a["action"] != "unchanged"
    } == {
        CERTIFICATE: "replace",
        VALIDATION_RECORD: "replace",
        ALIAS_RECORD: "replace",
    }

    grown = await up(
        client, worker, spec.model_copy(update={"instances": spec.instances.model_copy(update={"count": 3})})
    )

    assert grown.outcome is Outcome.COMPLETED, grown.message
    after = inventory()
    assert len(after["instances"]) == 3 and before["instances"] < after["instances"]
    assert {k: v for k, v in after.items() if k != "instances"} == {
        k: v for k, v in before.items() if k != "instances"
    }


async def test_an_identity_without_acm_permissions_reads_an_http_deployment(client, worker):
    """A policy from before HTTPS (docs/iam-policy.json alone) denies ACM: such an identity requested
    no certificate with this tool, so the read goes on without one instead of failing `plan`."""
    spec = fast_spec()
    created = await up(client, worker, spec)
    assert created.outcome is Outcome.COMPLETED, created.message
    denied = InjectedFault("acm", "ListCertificates", code="AccessDeniedException")
    session = boto3.Session()
    denied.install(session)  # before its first client: clients copy the session's hooks

    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
    live = await asyncio.to_thread(read_live, AwsClients(session), scope)

    assert denied.failed >= 1
    assert {a.action for a in diff(spec, live)} == {Action.UNCHANGED}


async def test_http_stops_and_starts_redirecting_in_place(client, worker, tmp_path, elbv2):
    """`https.redirect_http` changes the HTTP listener's default action (ModifyListener), nothing else;
    before, `plan` read no action and `up` reported a changed setting unchanged."""
    _, spec = await deployed(client, worker)
    before = inventory()
    arn = next(r.id for r in (await inspect(client, worker, spec)).resources if r.name == listener(80))

    planned = await plan(client, worker, spec, tmp_path, "https.redirect_http=false")
    assert planned.code == EXIT_OK, planned.stderr
    (changed,) = [a for a in planned.json()["actions"] if a["action"] != "unchanged"]
    assert (changed["name"], changed["action"]) == (listener(80), "update")
    assert [(c["field"], c["before"], c["after"]) for c in changed["changes"]] == [
        ("default_action", "redirect 301 to HTTPS:443", "forward to tg-app")
    ]

    forwarding = await up(client, worker, with_https(spec, redirect_http=False))

    assert forwarding.outcome is Outcome.COMPLETED, forwarding.message
    (action,) = elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]["DefaultActions"]
    assert (action["Type"], action["TargetGroupArn"]) == ("forward", forwarding.outputs.target_group_arn)
    assert inventory() == before

    # Back to redirecting, with a newer TLS policy on the HTTPS listener: both in place.
    redirecting = await up(client, worker, with_https(spec, ssl_policy=NEWER_POLICY))

    assert redirecting.outcome is Outcome.COMPLETED, redirecting.message
    (action,) = elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]["DefaultActions"]
    assert action["Type"] == "redirect" and action["RedirectConfig"]["Port"] == "443"
    assert https_listener(elbv2, arn)["SslPolicy"] == NEWER_POLICY
    spec = with_https(spec, ssl_policy=NEWER_POLICY)
    assert {a.action for a in diff(spec, await inspect(client, worker, spec))} == {Action.UNCHANGED}
    assert inventory() == before


async def test_a_change_that_fails_later_redirects_again(client, worker, aws, elbv2):
    """The listener changes before the instances do; a launch that fails rolls the change back, and
    the listener's compensation sets the redirect it found."""
    fault = InjectedFault("ec2", "RunInstances", occurrences=set()).install(aws.session)
    _, spec = await deployed(client, worker)
    arn = next(r.id for r in (await inspect(client, worker, spec)).resources if r.name == listener(80))
    made = elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]["DefaultActions"]
    before = inventory()
    fault.occurrences = {fault.calls + 1}  # the replacement's first launch
    tls_before = https_listener(elbv2, arn)["SslPolicy"]
    change = with_https(spec, redirect_http=False, ssl_policy=NEWER_POLICY)
    change = change.model_copy(
        update={"instances": change.instances.model_copy(update={"instance_type": "t3.micro"})}
    )

    failed = await up(client, worker, change)

    assert failed.outcome is Outcome.FAILED, failed.message
    assert fault.failed == 1
    assert elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]["DefaultActions"] == made
    assert https_listener(elbv2, arn)["SslPolicy"] == tls_before != NEWER_POLICY
    assert inventory() == before


def https_listener(elbv2: Any, http_arn: str) -> dict[str, Any]:
    """The HTTPS listener of the load balancer whose HTTP listener is `http_arn`."""
    (http,) = elbv2.describe_listeners(ListenerArns=[http_arn])["Listeners"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=http["LoadBalancerArn"])["Listeners"]
    return next(lsn for lsn in listeners if lsn["Protocol"] == "HTTPS")


async def test_a_tls_policy_aws_does_not_know_fails_the_change_saying_how_to_fix_it(
    client, worker, aws, elbv2
):
    """moto takes any policy name; AWS answers SSLPolicyNotFound (emulated here). Nothing else had
    changed yet: the deployment stays as it was."""
    _, spec = await deployed(client, worker)
    arn = next(r.id for r in (await inspect(client, worker, spec)).resources if r.name == listener(80))
    policy = https_listener(elbv2, arn)["SslPolicy"]
    before = inventory()
    InjectedFault(
        "elbv2",
        "ModifyListener",
        code="SSLPolicyNotFound",
        message="SSL policy 'ELBSecurityPolicy-Nope' not found",
    ).install(aws.session)

    failed = await up(client, worker, with_https(spec, ssl_policy="ELBSecurityPolicy-Nope"))

    assert failed.outcome is Outcome.FAILED, failed.message
    assert "SSLPolicyNotFound" in failed.message
    assert (
        "To fix: set https.ssl_policy to a policy `aws elbv2 describe-ssl-policies` lists" in failed.message
    )
    assert https_listener(elbv2, arn)["SslPolicy"] == policy
    assert inventory() == before
