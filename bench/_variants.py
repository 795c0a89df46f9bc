"""Orderings measured by the benchmarks only; none of them is registered by worker.py.

The benchmarks register them on their own workers (`build_worker(extra_workflows=...)`, bench/_setup.py);
tests/test_latency.py runs the baseline in the default suite so that it keeps working. Workflow
classes must live in an importable module (not `__main__`) for the workflow sandbox.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import PreflightActivities
    from models.plan import PREFLIGHT
    from models.progress import Phase
    from models.resources import DeploymentOutputs, Instance, PreflightInput, PreflightResult
    from models.spec import DeploymentSpec
    from workflows.deploy import DeployWorkflow


@workflow.defn
class SequentialDeployWorkflow(DeployWorkflow):
    """The tutorial's console order, one step after the other: the baseline the DAG is measured
    against (bench/dag_vs_sequential.py).

    It reuses DeployWorkflow's steps, compensations and rollback unchanged, so the two differ only in
    order: the tutorial waits for the NAT gateway before anything else, launches the instances before
    it creates the target group, and creates the load balancer last but one. Registered under its own
    name (the class name); the `progress` query is inherited.
    """

    @workflow.run
    async def run(self, spec: DeploymentSpec) -> DeploymentOutputs:
        # The SDK requires @workflow.run on the registered class itself, not only on its base.
        return await super().run(spec)

    async def _deploy(self) -> DeploymentOutputs:
        spec = self._spec
        pre: PreflightResult = await self._step(
            PREFLIGHT, PreflightActivities.preflight, PreflightInput(spec=spec)
        )
        self._tracker.phase(Phase.CREATING)

        async def then(coroutine: Any) -> asyncio.Task[Any]:
            """Run one step to its end before the next starts; the steps take tasks as their inputs."""
            task = asyncio.ensure_future(coroutine)
            await task
            return task

        subnets = await then(self._private_subnets(pre))
        nats = await then(self._nat_gateways(pre))
        routes = await then(self._route_tables(pre, subnets, nats))
        alb_sg = await then(self._alb_security_group(pre))
        app_sg = await then(self._app_security_group(pre, alb_sg))
        instances = await then(self._instances(pre, subnets, app_sg, routes))
        target_group = await then(self._target_group(pre))
        registered = await then(self._register(instances, target_group))
        balancer = await then(self._load_balancer(pre, alb_sg))
        listener = await then(self._listener(balancer, target_group))
        await then(self._healthy(instances, target_group, registered, listener, routes))

        return self._outputs(
            pre, subnets, nats, routes, alb_sg, app_sg, target_group, balancer, listener, instances
        )


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
