"""The latency model and the sequential baseline the benchmarks use, kept working by the default suite.

No timing thresholds here (speed figures belong to bench/); these check that under the model the
waits really wait (they see `pending`, `provisioning`, `initial`), that a deployment still completes,
and that the baseline really runs in the tutorial's order and builds exactly the tutorial's resources.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker

from activities import AwsClients
from bench._variants import SequentialDeployWorkflow
from simulate.calls import CallCounter
from simulate.latency import LatencyModel
from simulate.profile import load_profile
from tests.support.inventory import added, inventory
from tests.support.specs import fast_spec
from worker import build_worker
from workflows.deploy import DeployWorkflow

SCALE = 0.03
"""NAT 3.2 s, ALB 4.8 s: long enough that the first poll comes while they are held even when two test
processes share the cores (at 0.01 the NAT's 1.05 s was once over before its first poll), short
enough for the default suite."""

TUTORIAL_RESOURCES = {
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


@asynccontextmanager
async def baseline_worker(client: Client, aws: AwsClients) -> AsyncIterator[Worker]:
    """worker.py's workflows plus the baseline, which only benchmarks (and this test) register."""
    worker = build_worker(
        client, f"tq-{uuid.uuid4()}", aws, extra_workflows=[SequentialDeployWorkflow], sandboxed=True
    )
    async with worker:
        yield worker


def simulate(aws: AwsClients) -> tuple[LatencyModel, CallCounter]:
    """Hooks go on the session before the worker builds its first client (clients copy the hooks)."""
    model = LatencyModel(load_profile(scale=SCALE)).install(aws.session)
    return model, CallCounter().install(aws.session)


def position(counter: CallCounter, action: str) -> int:
    """Index of the first call of `action`: the order in which the workflow reached its steps."""
    return next(i for i, call in enumerate(counter.calls) if call.name == action)


async def test_dag_completes_under_the_latency_model_and_its_waits_wait(client, aws):
    model, counter = simulate(aws)
    spec = fast_spec()
    before = inventory()
    async with baseline_worker(client, aws) as worker:
        outputs = await client.execute_workflow(
            DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
        )
    assert outputs.load_balancer_arn and len(outputs.instance_ids) == 2
    # Each wait was answered "not yet" before it was answered "ready".
    assert model.held["nat_gateway"] >= 1
    assert model.held["load_balancer"] >= 1
    assert model.held["target"] >= 1
    # While the NAT gateway was pending, the ALB branch went ahead: the DAG, not the tutorial's line.
    assert position(counter, "elbv2.CreateLoadBalancer") < position(counter, "ec2.CreateRouteTable")
    creates = counter.by_action()
    assert creates["ec2.CreateNatGateway"] == 1 and creates["ec2.RunInstances"] == 2
    assert {k: len(v) for k, v in added(before, inventory()).items() if k != "security_group_rules"} == (
        TUTORIAL_RESOURCES
    )


async def test_sequential_baseline_runs_in_tutorial_order_with_exact_resources(client, aws, ec2):
    model, counter = simulate(aws)
    spec = fast_spec()
    before = inventory()
    async with baseline_worker(client, aws) as worker:
        outputs = await client.execute_workflow(
            SequentialDeployWorkflow.run,
            spec,
            id=f"deploy-{spec.deployment_id}",
            task_queue=worker.task_queue,
        )
    assert {k: len(v) for k, v in added(before, inventory()).items() if k != "security_group_rules"} == (
        TUTORIAL_RESOURCES
    )
    launched = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert set(outputs.instance_ids.values()) == launched
    order = [
        "ec2.CreateSubnet",
        "ec2.AllocateAddress",
        "ec2.CreateNatGateway",
        "ec2.CreateRouteTable",
        "ec2.CreateSecurityGroup",
        "ec2.RunInstances",
        "elbv2.CreateTargetGroup",
        "elbv2.RegisterTargets",
        "elbv2.CreateLoadBalancer",
        "elbv2.CreateListener",
        "elbv2.DescribeTargetHealth",
    ]
    positions = [position(counter, action) for action in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))
    assert model.held["nat_gateway"] >= 1 and model.held["load_balancer"] >= 1
