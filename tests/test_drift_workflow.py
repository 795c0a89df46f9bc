"""Drift watched by the deployment's own workflow: a check on a durable timer (`drift.check_every`),
then `report` (status, UI details, the DeploymentDrift search attribute, `starter.py check`) or
`repair` (undone in place, missing resources made again by a converge or a create, checked again).

The deployment's workflow on the Temporal dev server, real boto3 calls on moto; the terminated
instance's repair runs behind the local data plane with a load loop through its ALB.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import boto3
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowUpdateStage

from activities.drift_repair import ALL_TRAFFIC
from models import naming
from models.deployment import Operation, Outcome
from models.drift import Drift
from models.naming import ALIAS_RECORD, APP_SECURITY_GROUP, DEPLOYMENT_TAG
from models.resources import Kind
from models.spec import DriftSpec
from tests.support.drift import SMTP_OUT, SSH, app_group, repaired, status_of, watched
from tests.support.faults import InjectedFault
from tests.support.https import hosted_zone, https_spec
from tests.support.inventory import inventory
from tests.support.processes import Cli
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from tests.support.workers import running_worker
from tests.test_cli_operations import run
from tests.test_converge import changed, fleet
from tests.test_dataplane import LoadLoop
from tests.test_deployment_workflow import entity, up
from workflows import search_attributes
from workflows.deployment import DeploymentWorkflow

EXIT_OK, EXIT_DRIFTED = 0, 5


async def drift_attribute(client: Client, deployment_id: str) -> bool | None:
    description = await entity(client, deployment_id).describe()
    return description.typed_search_attributes.get(search_attributes.DEPLOYMENT_DRIFT)


async def test_report_marks_the_deployment_and_changes_nothing(client: Client, worker, ec2):
    spec = watched("report")
    created = await up(client, worker, spec, attributes=True)
    assert created.outputs is not None, created.message
    group = app_group(created.outputs)
    await asyncio.to_thread(ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[SSH])

    status = await eventually(
        lambda: status_of(client, spec.deployment_id),
        lambda s: s.state.drift is not None and s.state.drift.drifted,
    )

    items = status.state.drift.items
    assert [(i.name, i.id, i.drift, i.field, i.actual) for i in items] == [
        (APP_SECURITY_GROUP, group, Drift.EXTRA, "ingress", "tcp/22 from 0.0.0.0/0")
    ]
    assert await eventually(lambda: drift_attribute(client, spec.deployment_id), lambda v: v is True)
    metadata = await entity(client, spec.deployment_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    details = metadata.current_details
    assert "drift (checked" in details and "extra ingress: tcp/22" in details
    cli = Cli(client.service_client.config.target_host, worker.task_queue)
    checked = await run(cli, "check", spec.deployment_id, "--json")
    assert checked.code == EXIT_DRIFTED, checked.stderr
    assert checked.json()["drifted"] is True
    assert [i["actual"] for i in checked.json()["items"]] == ["tcp/22 from 0.0.0.0/0"]
    shown = await run(cli, "status", spec.deployment_id)
    assert "drift: drifted" in shown.stdout and "extra" in shown.stdout
    rules = await asyncio.to_thread(ec2.describe_security_groups, GroupIds=[group])
    assert SSH["FromPort"] in [p.get("FromPort") for p in rules["SecurityGroups"][0]["IpPermissions"]]
    assert status.state.last is not None and status.state.last.operation is Operation.CREATE  # no repair

    await asyncio.to_thread(ec2.revoke_security_group_ingress, GroupId=group, IpPermissions=[SSH])
    await eventually(
        lambda: status_of(client, spec.deployment_id),
        lambda s: s.state.drift is not None and not s.state.drift.drifted,
    )
    await eventually(lambda: drift_attribute(client, spec.deployment_id), lambda v: v is False)
    clean = await run(cli, "check", spec.deployment_id, "--json")
    assert clean.code == EXIT_OK and clean.json()["items"] == []


async def test_repair_undoes_a_rule_a_deregistered_target_a_removed_tag_and_a_deleted_nat(
    client: Client, worker, ec2, elbv2
):
    spec = watched("repair")
    created = await up(client, worker, spec)
    out = created.outputs
    assert out is not None, created.message
    before = await asyncio.to_thread(inventory)
    [nat] = out.nat_gateway_ids.values()
    instance = out.instance_ids["app-1"]

    def drift() -> None:
        ec2.authorize_security_group_ingress(GroupId=app_group(out), IpPermissions=[SSH])
        elbv2.deregister_targets(TargetGroupArn=out.target_group_arn, Targets=[{"Id": instance}])
        ec2.delete_tags(Resources=[instance], Tags=[{"Key": "Name"}])
        ec2.delete_nat_gateway(NatGatewayId=nat)
        # AWS frees the gateway's address once it is deleted; moto keeps it associated forever.
        [address] = ec2.describe_addresses(AllocationIds=list(out.elastic_ip_allocation_ids.values()))[
            "Addresses"
        ]
        ec2.disassociate_address(AssociationId=address["AssociationId"])

    await asyncio.to_thread(drift)
    status = await repaired(client, spec.deployment_id)

    assert status.state.last is not None and status.state.last.outcome is Outcome.COMPLETED
    found = {(i.name, i.drift, i.field) for i in status.state.last.repaired}
    made = {
        (APP_SECURITY_GROUP, Drift.EXTRA, "ingress"),
        ("tg-app", Drift.MISSING, "target"),
        ("app-1", Drift.MISSING, "tag:Name"),
        ("nat-ap-northeast-2a", Drift.MISSING, None),
        ("rt-private", Drift.CHANGED, "default_route"),
    }
    assert found and found <= made  # a check may have caught part of it: then two repairs ran
    after = await asyncio.to_thread(inventory)
    [new_nat] = after["nat_gateways"]
    assert new_nat != nat
    assert after == {**before, "nat_gateways": {new_nat}}  # the rule added by hand is gone again
    assert set(fleet(elbv2, ec2, out)) == set(out.instance_ids.values())  # both registered
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance]}])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}["Name"].endswith("app-1")
    table = ec2.describe_route_tables(RouteTableIds=list(out.route_table_ids.values())[:1])["RouteTables"][0]
    default = next(r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0")
    assert default["NatGatewayId"] == new_nat and default["State"] == "active"
    assert status.state.outputs is not None and set(status.state.outputs.nat_gateway_ids.values()) == {
        new_nat
    }


async def test_a_terminated_instance_is_replaced_and_no_request_after_it_fails(
    client: Client, dataplane, plane_aws
):
    """As on AWS, the terminated instance's app dies with it: a request it was answering (or was
    picked for as it went) can fail. From the moment TerminateInstances has answered, none does: the
    other instance serves alone until the repair's replacement is healthy."""
    spec = watched("repair")
    async with running_worker(client, plane_aws) as worker:
        created = await up(client, worker, spec)
        out = created.outputs
        assert out is not None, created.message
        url = (await asyncio.to_thread(dataplane.listener, out.alb_dns_name))["url"]
        ec2 = plane_aws.ec2(spec.region)  # through the data plane: it sees the termination at once
        with LoadLoop(url, limit=20000) as load:
            terminating_at = time.monotonic()
            await asyncio.to_thread(ec2.terminate_instances, InstanceIds=[out.instance_ids["app-1"]])
            terminated_at = time.monotonic()
            status = await repaired(client, spec.deployment_id, timeout=90)

    assert status.state.last is not None and status.state.last.outcome is Outcome.COMPLETED
    assert [(i.name, i.drift) for i in status.state.last.repaired] == [("app-1", Drift.MISSING)]
    fleet_now = status.state.outputs.instance_ids if status.state.outputs else {}
    assert fleet_now["app-0"] == out.instance_ids["app-0"] and fleet_now.keys() == {"app-0", "app-1-g1"}
    failed = [s for s in load.sent if s.answer.status != 200]
    assert len(failed) <= 1  # one client, one request at a time
    assert all(s.answer.status == 502 for s in failed)
    assert all(s.answered_at >= terminating_at and s.sent_at < terminated_at for s in failed)
    assert len([s for s in load.sent if s.sent_at >= terminated_at]) > 100  # the repair took a while
    assert {s.answer.instance_id for s in load.sent[-5:]} <= set(fleet_now.values())


async def test_a_repair_failing_mid_way_leaves_the_deployment_no_worse(client: Client, aws, ec2, elbv2):
    spec = watched("repair")
    fault = InjectedFault("elbv2", "RegisterTargets", occurrences=set()).install(aws.session)
    async with running_worker(client, aws) as worker:
        created = await up(client, worker, spec)
        out = created.outputs
        assert out is not None, created.message
        deployed = await asyncio.to_thread(inventory)
        fault.occurrences = set(range(fault.calls + 1, fault.calls + 100))  # every later registration
        lost = out.instance_ids["app-1"]
        await asyncio.to_thread(ec2.terminate_instances, InstanceIds=[lost])
        status = await eventually(
            lambda: status_of(client, spec.deployment_id),
            lambda s: (
                s.running is None
                and s.state.last is not None
                and (s.state.last.operation, s.state.last.outcome) == (Operation.REPAIR, Outcome.FAILED)
            ),
            timeout=60,
        )
        after = await asyncio.to_thread(inventory)
        failures = fault.failed
        again = await eventually(  # later checks report the same drift and do not retry the repair
            lambda: status_of(client, spec.deployment_id),
            lambda s: s.state.drift is not None and s.state.drift.checked_at > status.state.last.finished_at,
        )

    assert failures >= 1 and fault.failed == failures
    assert "UnauthorizedOperation" in (status.state.last.message or "")
    assert after == {**deployed, "instances": deployed["instances"] - {lost}}  # its launch rolled back
    assert set(fleet(elbv2, ec2, out)) == {out.instance_ids["app-0"]}  # still serving
    assert status.state.spec is not None
    assert again.state.drift is not None and again.state.drift.drifted
    assert again.state.last == status.state.last


async def test_a_resource_that_lost_the_deployment_tag_is_reported_not_twinned(client: Client, worker, ec2):
    spec = watched("repair")
    created = await up(client, worker, spec)
    out = created.outputs
    assert out is not None, created.message
    subnet = out.private_subnet_ids["ap-northeast-2a"]
    await asyncio.to_thread(ec2.delete_tags, Resources=[subnet], Tags=[{"Key": DEPLOYMENT_TAG}])
    before = await asyncio.to_thread(inventory)

    status = await eventually(
        lambda: status_of(client, spec.deployment_id),
        lambda s: (
            s.running is None and s.state.last is not None and s.state.last.operation is Operation.REPAIR
        ),
    )

    assert status.state.last.outcome is Outcome.FAILED
    assert f"{subnet} lost the {DEPLOYMENT_TAG} tag" in (status.state.last.message or "")
    assert await asyncio.to_thread(inventory) == before  # no second subnet, nothing else touched
    tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [subnet]}])["Tags"]
    assert DEPLOYMENT_TAG not in {t["Key"] for t in tags}


class HeldCheck:
    """Once armed, the next DescribeTargetHealth (a drift check's last read) waits until released."""

    def __init__(self, session: Any) -> None:
        self.armed, self.entered, self.release = False, threading.Event(), threading.Event()
        session.events.register("before-call.elbv2.DescribeTargetHealth", self._hold)

    def _hold(self, **_: Any) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(timeout=30)


async def test_an_up_accepted_during_a_scheduled_check_runs_once_the_check_ends(client: Client, aws):
    spec = watched("report")
    held = HeldCheck(aws.session)
    async with running_worker(client, aws) as worker:
        created = await up(client, worker, spec)
        assert created.outcome is Outcome.COMPLETED, created.message
        held.armed = True
        assert await asyncio.to_thread(held.entered.wait, 30)
        handle = entity(client, spec.deployment_id)
        update = await handle.start_update(
            DeploymentWorkflow.up, changed(spec, count=3), wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        held.release.set()
        grown = await update.result()

    assert (grown.operation, grown.outcome) == (Operation.CONVERGE, Outcome.COMPLETED), grown.message
    assert grown.outputs is not None and len(grown.outputs.instance_ids) == 3


async def idle_timers(client: Client, deployment_id: str) -> list[str]:
    """The timers the deployment's current run started while it waits (their summaries)."""
    handle = entity(client, deployment_id)
    await handle.query(DeploymentWorkflow.status)  # the run has taken its first task
    history = await handle.fetch_history()
    return [
        event.user_metadata.summary.data.decode()
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


async def test_checks_wait_on_a_durable_timer_and_check_every_0_turns_them_off(client: Client, worker):
    other_ranges = [
        {"cidr": "172.31.160.0/20", "availability_zone": "ap-northeast-2a"},
        {"cidr": "172.31.176.0/20", "availability_zone": "ap-northeast-2c"},
    ]
    watched_spec = fast_spec()
    unwatched = fast_spec(drift={"check_every": 0}, private_subnets=other_ranges)
    for spec in (watched_spec, unwatched):
        created = await up(client, worker, spec)
        assert created.outcome is Outcome.COMPLETED, created.message

    assert await idle_timers(client, watched_spec.deployment_id) == ['"next drift check"']
    assert await idle_timers(client, unwatched.deployment_id) == []


async def test_a_failing_create_that_completes_a_live_deployment_removes_nothing(client: Client, aws, ec2):
    spec = fast_spec(drift={"check_every": 0})
    fault = InjectedFault("ec2", "CreateNatGateway", occurrences=set()).install(aws.session)
    async with running_worker(client, aws) as worker:
        created = await up(client, worker, spec)
        out = created.outputs
        assert out is not None, created.message
        [nat] = out.nat_gateway_ids.values()
        await asyncio.to_thread(ec2.delete_nat_gateway, NatGatewayId=nat)
        [address] = ec2.describe_addresses(AllocationIds=list(out.elastic_ip_allocation_ids.values()))[
            "Addresses"
        ]
        await asyncio.to_thread(ec2.disassociate_address, AssociationId=address["AssociationId"])  # as AWS
        before = await asyncio.to_thread(inventory)
        fault.occurrences = set(range(fault.calls + 1, fault.calls + 100))

        again = await up(client, worker, spec)  # the NAT gateway is made again: it fails for good
        status = await status_of(client, spec.deployment_id)

    assert (again.operation, again.outcome) == (Operation.CREATE, Outcome.FAILED), again.message
    assert fault.failed >= 1
    assert await asyncio.to_thread(inventory) == before  # its rollback did not take the deployment
    assert status.state.spec is not None and status.state.phase.value == "ready"


async def test_an_https_deployment_checks_clean_and_its_deleted_alias_record_is_made_again(
    client: Client, worker
):
    zone_id = hosted_zone()
    spec = https_spec().model_copy(update={"drift": DriftSpec(check_every="1s", on_drift="repair")})
    created = await up(client, worker, spec)
    out = created.outputs
    assert out is not None and out.domain is not None, created.message
    clean = await eventually(
        lambda: status_of(client, spec.deployment_id), lambda s: s.state.drift is not None
    )
    assert clean.state.drift.items == []  # the certificate, its records and the HTTPS listener match
    before = await asyncio.to_thread(inventory)
    route53 = boto3.client("route53", region_name=spec.region)
    [alias] = [
        r
        for r in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        if r["Type"] == "A" and r["Name"] == f"{out.domain}."
    ]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": alias}]}
    )

    status = await repaired(client, spec.deployment_id)

    assert [(i.name, i.drift) for i in status.state.last.repaired] == [(ALIAS_RECORD, Drift.MISSING)]
    assert await asyncio.to_thread(inventory) == before  # the same record again, nothing else


async def test_listeners_sent_elsewhere_and_a_certificates_tag_are_put_back_as_made(
    client: Client, worker, elbv2
):
    """The HTTP listener of an HTTPS deployment redirects, its HTTPS listener forwards: someone
    points both at a maintenance page, and renames the certificate; the repair sets each listener's
    own action and the certificate's Name tag again."""
    hosted_zone()
    spec = https_spec().model_copy(update={"drift": DriftSpec(check_every="1s", on_drift="repair")})
    created = await up(client, worker, spec)
    out = created.outputs
    assert out is not None, created.message
    arns = [r.id for r in out.resources if r.kind is Kind.LISTENER]
    made = await asyncio.to_thread(default_actions, elbv2, arns)
    assert sorted(a[0]["Type"] for a in made.values()) == ["forward", "redirect"]
    maintenance = {
        "Type": "fixed-response",
        "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/plain", "MessageBody": "back soon"},
    }
    for arn in arns:
        await asyncio.to_thread(elbv2.modify_listener, ListenerArn=arn, DefaultActions=[maintenance])
    acm = boto3.client("acm", region_name=spec.region)
    (certificate,) = [r.id for r in out.resources if r.kind is Kind.CERTIFICATE]
    tagged = (await asyncio.to_thread(acm.list_tags_for_certificate, CertificateArn=certificate))["Tags"]
    await asyncio.to_thread(
        acm.add_tags_to_certificate, CertificateArn=certificate, Tags=[{"Key": "Name", "Value": "renamed"}]
    )

    status = await repaired(client, spec.deployment_id)

    assert sorted((i.name, i.field, i.actual) for i in status.state.last.repaired) == [
        (naming.CERTIFICATE, "tag:Name", "renamed"),
        (naming.listener(443), "default_action", "fixed-response 503"),
        (naming.listener(80), "default_action", "fixed-response 503"),
    ]
    assert await asyncio.to_thread(default_actions, elbv2, arns) == made
    after = (await asyncio.to_thread(acm.list_tags_for_certificate, CertificateArn=certificate))["Tags"]
    assert sorted(after, key=str) == sorted(tagged, key=str)


def default_actions(elbv2: Any, arns: list[str]) -> dict[str, list[dict[str, Any]]]:
    listeners = elbv2.describe_listeners(ListenerArns=arns)["Listeners"]
    return {lsn["ListenerArn"]: lsn["DefaultActions"] for lsn in listeners}


async def test_a_stopped_instance_is_replaced(client: Client, worker, ec2, elbv2):
    spec = watched("repair")
    created = await up(client, worker, spec)
    out = created.outputs
    assert out is not None, created.message
    deployed = await asyncio.to_thread(inventory)
    stopped = out.instance_ids["app-1"]
    await asyncio.to_thread(ec2.stop_instances, InstanceIds=[stopped])

    status = await repaired(client, spec.deployment_id)

    assert [(i.name, i.field, i.actual) for i in status.state.last.repaired] == [
        ("app-1", "state", "stopped")
    ]
    fleet_now = status.state.outputs.instance_ids if status.state.outputs else {}
    assert fleet_now.keys() == {"app-0", "app-1-g1"} and fleet_now["app-0"] == out.instance_ids["app-0"]
    instances = (deployed["instances"] - {stopped}) | {fleet_now["app-1-g1"]}
    assert await asyncio.to_thread(inventory) == {**deployed, "instances": instances}
    assert set(fleet(elbv2, ec2, out)) == set(fleet_now.values())


async def test_up_puts_back_a_rule_added_by_hand_then_applies_its_change(client: Client, worker, ec2):
    spec = fast_spec()  # drift reported only: `up` itself puts the deployment back to its spec
    created = await up(client, worker, spec)
    out = created.outputs
    assert out is not None, created.message
    group = app_group(out)
    await asyncio.to_thread(ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[SSH])

    grown = await up(client, worker, changed(spec, count=3))

    assert (grown.operation, grown.outcome) == (Operation.CONVERGE, Outcome.COMPLETED), grown.message
    rules = (await asyncio.to_thread(ec2.describe_security_groups, GroupIds=[group]))["SecurityGroups"][0]
    assert [p.get("FromPort") for p in rules["IpPermissions"]] == [spec.app.port]

    # The ALB's egress narrowed to SMTP: on the ALB's group, an egress change is no CIDR change for
    # the converge to apply, but drift `up` puts back.
    alb = out.alb_security_group_id
    await asyncio.to_thread(ec2.revoke_security_group_egress, GroupId=alb, IpPermissions=[ALL_TRAFFIC])
    await asyncio.to_thread(ec2.authorize_security_group_egress, GroupId=alb, IpPermissions=[SMTP_OUT])

    shrunk = await up(client, worker, changed(spec, count=2))

    assert (shrunk.operation, shrunk.outcome) == (Operation.CONVERGE, Outcome.COMPLETED), shrunk.message
    alb_rules = (await asyncio.to_thread(ec2.describe_security_groups, GroupIds=[alb]))["SecurityGroups"][0]
    assert [(p["IpProtocol"], p["IpRanges"]) for p in alb_rules["IpPermissionsEgress"]] == [
        ("-1", [{"CidrIp": "0.0.0.0/0"}])
    ]
    status = await status_of(client, spec.deployment_id)
    assert status.state.drift is not None and not status.state.drift.drifted
