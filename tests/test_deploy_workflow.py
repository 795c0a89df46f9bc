"""The deployment workflow on a real Temporal server, with real boto3 calls against moto."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities import AwsClients
from models import naming
from models.resources import DeploymentOutputs
from models.spec import DeploymentSpec
from tests.support.faults import hold_nat_gateways
from tests.support.inventory import added, inventory
from tests.support.specs import fast_spec
from tests.support.waiting import eventually
from workflows import WORKFLOWS
from workflows.deploy import DeployWorkflow


async def deploy(client: Client, worker: Worker, spec: DeploymentSpec) -> DeploymentOutputs:
    return await client.execute_workflow(
        DeployWorkflow.run,
        spec,
        id=f"deploy-{spec.deployment_id}-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def test_happy_path_builds_the_tutorial_topology(client, worker, ec2, elbv2):
    spec = fast_spec()
    before = inventory()
    out = await deploy(client, worker, spec)

    # Everything checked with describe calls, not with the workflow's own claims.
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    subnets = {
        s["SubnetId"]: s
        for s in ec2.describe_subnets(SubnetIds=list(out.private_subnet_ids.values()))["Subnets"]
    }
    assert {(s["CidrBlock"], s["AvailabilityZone"]) for s in subnets.values()} == {
        ("172.31.112.0/20", "ap-northeast-2a"),
        ("172.31.144.0/20", "ap-northeast-2c"),
    }
    assert all(s["VpcId"] == vpc["VpcId"] and not s["MapPublicIpOnLaunch"] for s in subnets.values())

    nats = ec2.describe_nat_gateways(Filters=[{"Name": "state", "Values": ["available"]}])["NatGateways"]
    assert len(nats) == 1
    nat = nats[0]
    public = ec2.describe_subnets(SubnetIds=[nat["SubnetId"]])["Subnets"][0]
    assert public["MapPublicIpOnLaunch"] and public["AvailabilityZone"] == "ap-northeast-2a"
    addresses = ec2.describe_addresses()["Addresses"]
    assert len(addresses) == 1 and addresses[0]["Domain"] == "vpc"
    assert nat["NatGatewayAddresses"][0]["AllocationId"] == addresses[0]["AllocationId"]

    tables = [
        t
        for t in ec2.describe_route_tables()["RouteTables"]
        if any(r.get("NatGatewayId") == nat["NatGatewayId"] for r in t["Routes"])
    ]
    assert len(tables) == 1
    default = [r for r in tables[0]["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
    assert default[0]["NatGatewayId"] == nat["NatGatewayId"]
    assert {a["SubnetId"] for a in tables[0]["Associations"] if not a.get("Main")} == set(subnets)
    # Outputs are keyed by AZ: with one NAT gateway, both private subnets' AZs name the one table.
    assert out.route_table_ids == {az: tables[0]["RouteTableId"] for az in out.private_subnet_ids}

    reservations = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])[
        "Reservations"
    ]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 2
    assert {i["SubnetId"] for i in instances} == set(subnets)
    assert all("PublicIpAddress" not in i for i in instances)
    assert all(i["MetadataOptions"]["HttpTokens"] == "required" for i in instances)
    volume_ids = [m["Ebs"]["VolumeId"] for i in instances for m in i["BlockDeviceMappings"]]
    volumes = ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"]
    assert len(volumes) == 2 and all(v["Encrypted"] and v["VolumeType"] == "gp3" for v in volumes)

    balancers = elbv2.describe_load_balancers()["LoadBalancers"]
    assert len(balancers) == 1
    alb = balancers[0]
    assert alb["Scheme"] == "internet-facing" and alb["Type"] == "application"
    assert len({z["ZoneName"] for z in alb["AvailabilityZones"]}) >= 2
    assert out.alb_dns_name == alb["DNSName"]

    (alb_sg_id,) = alb["SecurityGroups"]
    app_sg_ids = {g["GroupId"] for i in instances for eni in i["NetworkInterfaces"] for g in eni["Groups"]}
    assert len(app_sg_ids) == 1
    app_sg = ec2.describe_security_groups(GroupIds=list(app_sg_ids))["SecurityGroups"][0]
    (rule,) = app_sg["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (3000, 3000)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [alb_sg_id]
    assert rule["IpRanges"] == []

    groups = elbv2.describe_target_groups()["TargetGroups"]
    assert len(groups) == 1
    group = groups[0]
    assert (group["Protocol"], group["Port"]) == ("HTTP", 3000)
    targets = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
    assert {t["Target"]["Id"] for t in targets["TargetHealthDescriptions"]} == {
        i["InstanceId"] for i in instances
    }
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    assert listener["Port"] == 80 and listener["Protocol"] == "HTTP"
    assert listener["DefaultActions"][0]["Type"] == "forward"
    assert listener["DefaultActions"][0]["TargetGroupArn"] == group["TargetGroupArn"]

    new = added(before, inventory())
    assert {k: len(v) for k, v in new.items() if k != "security_group_rules"} == {
        "subnets": 2,
        "addresses": 1,
        "nat_gateways": 1,
        "route_tables": 1,
        "security_groups": 2,
        "instances": 2,
        "load_balancers": 1,
        "target_groups": 1,
        "listeners": 1,
    }


async def test_per_az_nat_mode_gives_each_az_its_nat_and_route_table(client, worker, ec2):
    out = await deploy(client, worker, fast_spec(nat_mode="per_az"))
    assert set(out.nat_gateway_ids) == {"ap-northeast-2a", "ap-northeast-2c"}
    assert len(out.elastic_ip_allocation_ids) == 2 and len(out.route_table_ids) == 2
    for az, subnet_id in out.private_subnet_ids.items():
        (table,) = ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
        )["RouteTables"]
        assert table["RouteTableId"] == out.route_table_ids[az]
        nat_routes = [r["NatGatewayId"] for r in table["Routes"] if r.get("NatGatewayId")]
        assert nat_routes == [out.nat_gateway_ids[az]]
        nat = ec2.describe_nat_gateways(NatGatewayIds=[out.nat_gateway_ids[az]])["NatGateways"][0]
        assert ec2.describe_subnets(SubnetIds=[nat["SubnetId"]])["Subnets"][0]["AvailabilityZone"] == az


async def test_branches_run_concurrently(client, aws, worker):
    """While the NAT gateway is still pending, the ALB branch finishes and the instances launch (their
    user data waits for egress): the steps form a DAG. What needs the route waits for it."""
    held = hold_nat_gateways(aws.session)
    spec = fast_spec()
    handle = await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )
    launched = ("alb", "tg-app", "app-0", "app-1", "targets")
    progress = await eventually(
        lambda: handle.query(DeployWorkflow.progress),
        lambda p: all(p.step(key).state == "done" for key in launched),
    )
    assert progress.step("nat-ap-northeast-2a").state == "running"
    assert progress.step(naming.route_table(None)).state == "pending"  # it needs the NAT gateway
    assert progress.step("healthy").state == "pending"  # the app boots only once it has egress
    held.released.set()
    outputs = await handle.result()
    final = await handle.query(DeployWorkflow.progress)
    assert final.phase == "completed" and final.outputs == outputs
    assert all(step.state == "done" for step in final.steps)
    assert {r.name for r in outputs.resources} >= {"alb", "tg-app", "sg-app", "app-0", "app-1"}


async def test_histories_replay_deterministically(client, worker):
    """The recorded history of a finished run replays against the workflow code without divergence."""
    spec = fast_spec()
    handle = await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )
    await handle.result()
    history = await handle.fetch_history()
    assert len(history.events) < 400
    scheduled = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    summaries = [
        pydantic_data_converter.payload_converter.from_payload(e.user_metadata.summary) for e in scheduled
    ]
    assert len(summaries) == len(scheduled) and all(summaries)  # every activity is labelled in the UI
    assert "NAT gateway in ap-northeast-2a, until available" in summaries
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None


class Lookups:
    """The calls that look for an existing resource: EC2 describes by the deployment's tag, ELBv2
    describes by name or on a load balancer."""

    def __init__(self, aws: AwsClients) -> None:
        self.calls: Counter[str] = Counter()
        aws.session.events.register("before-parameter-build", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        by_tag = any(f.get("Name", "").startswith("tag:") for f in params.get("Filters", []))
        if by_tag or "Names" in params or model.name == "DescribeListeners":
            self.calls[model.name] += 1


async def test_a_new_deployment_skips_its_lookups_and_a_reset_run_adopts_what_exists(client, aws, worker):
    """Preflight saw nothing of the deployment, so its creates do not look for earlier ones. A reset
    run replays that preflight answer while everything exists: it must look, and make nothing twice."""
    lookups, spec, before = Lookups(aws), fast_spec(), inventory()
    handle = await client.start_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )
    first = await handle.result()
    # Only preflight's own name checks; no create looked for an earlier resource.
    assert lookups.calls == Counter({"DescribeLoadBalancers": 1, "DescribeTargetGroups": 1})
    made = added(before, inventory())

    history = await handle.fetch_history()
    preflight_done = next(
        e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    )
    reset_to = next(
        e.event_id
        for e in history.events
        if e.event_id > preflight_done and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    lookups.calls.clear()
    reset = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=handle.result_run_id),
            reason="test: replay the creates after preflight",
            workflow_task_finish_event_id=reset_to,
            request_id=str(uuid.uuid4()),
        )
    )
    again = await client.get_workflow_handle_for(DeployWorkflow.run, handle.id, run_id=reset.run_id).result()
    assert lookups.calls["DescribeSubnets"] >= 2 and lookups.calls["DescribeInstances"] >= 2
    assert again.instance_ids == first.instance_ids and again.nat_gateway_ids == first.nat_gateway_ids
    assert again.elastic_ip_allocation_ids == first.elastic_ip_allocation_ids
    assert again.route_table_ids == first.route_table_ids
    assert added(before, inventory()) == made
