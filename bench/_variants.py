"""Experimental orderings measured by the benchmarks only; none of them is registered by worker.py.

Workflow classes must live in an importable module (not `__main__`) for the workflow sandbox.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.resources import DeploymentOutputs, Instance, PreflightResult
    from models.spec import DeploymentSpec
    from workflows.deploy import DeployWorkflow


@workflow.defn
class InstancesAfterRouteDeployWorkflow(DeployWorkflow):
    """The DAG as it was before instances launched while the NAT gateway is pending: each instance
    waits for the NAT route as well as its subnet and security group.

    The app's boot needs the route either way (the user data retries its install until egress works);
    this ordering also makes the launch wait for it, so the instances' `pending` time lands on the
    critical path. The benchmark keeps it to show what the current order saves.
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
        await routes
        return await super()._instances(pre, subnets, app_sg, routes)
