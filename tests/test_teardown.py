"""Teardown by tags: it removes one deployment completely and touches nothing of another."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from models.resources import DeploymentOutputs, Scope, TeardownInput
from models.spec import DeploymentSpec
from tests.support.inventory import inventory
from tests.support.specs import FAST_TIMING, fast_spec
from workflows.deploy import DeployWorkflow
from workflows.teardown import TeardownWorkflow


async def deploy(client: Client, worker: Worker, spec: DeploymentSpec) -> DeploymentOutputs:
    return await client.execute_workflow(
        DeployWorkflow.run, spec, id=f"deploy-{spec.deployment_id}", task_queue=worker.task_queue
    )


async def teardown(client: Client, worker: Worker, spec: DeploymentSpec):
    request = TeardownInput(
        scope=Scope(deployment_id=spec.deployment_id, region=spec.region), timing=FAST_TIMING
    )
    return await client.execute_workflow(
        TeardownWorkflow.run, request, id=f"teardown-{spec.deployment_id}", task_queue=worker.task_queue
    )


def ids_of(outputs: DeploymentOutputs) -> set[str]:
    return {resource.id for resource in outputs.resources if resource.kind != "target_registration"}


def existing_ids() -> set[str]:
    return set().union(*inventory().values())


async def test_teardown_removes_one_deployment_and_spares_its_neighbour(client, worker):
    before = inventory()
    first = fast_spec()
    second = fast_spec(
        private_subnets=[
            {"cidr": "172.31.160.0/24", "availability_zone": "ap-northeast-2a"},
            {"cidr": "172.31.161.0/24", "availability_zone": "ap-northeast-2c"},
        ]
    )
    out_first = await deploy(client, worker, first)
    out_second = await deploy(client, worker, second)
    assert ids_of(out_first).isdisjoint(ids_of(out_second))  # no adoption of a neighbour's resource

    result = await teardown(client, worker, first)

    assert {d.id for d in result.deleted if d.id} >= ids_of(out_first)
    remaining = existing_ids()
    assert remaining.isdisjoint(ids_of(out_first))
    assert ids_of(out_second) <= remaining

    await teardown(client, worker, second)
    assert inventory() == before
    again = await teardown(client, worker, second)
    assert [d for d in again.deleted if d.id] == []
