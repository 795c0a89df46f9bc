"""Experimental orderings measured by the benchmarks only; none of them is registered by worker.py.

Workflow classes must live in an importable module (not `__main__`) for the workflow sandbox.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.resources import DeploymentOutputs, Instance, PreflightResult
    from models.spec import DeploymentSpec
    from workflows.deploy import DeployWorkflow


@workflow.defn
class EarlyInstancesDeployWorkflow(DeployWorkflow):
    """The DAG, except that instances launch while the NAT gateway is still pending.

    The chain gets shorter by the instances' `pending` time: the user data retries its Node.js install
    until the NAT route gives it egress, so the app's boot still waits for the route; the launch no
    longer does. The issue asks whether this helps; this class lets the benchmark measure it.
    """

    @workflow.run
    async def run(self, spec: DeploymentSpec) -> DeploymentOutputs:
        return await super().run(spec)

    async def _instances(
        self,
        pre: PreflightResult,
        subnets: asyncio.Task[dict[str, str]],
        app_sg: asyncio.Task[str],
        routes: asyncio.Task[dict[str, str]],
    ) -> dict[str, Instance]:
        launched_without_route: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        launched_without_route.set_result({})
        return await super()._instances(pre, subnets, app_sg, launched_without_route)  # type: ignore[arg-type]
