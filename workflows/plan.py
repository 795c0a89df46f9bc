"""A read-only plan, run by the worker so that AWS credentials stay where the worker runs."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.planning import PlanActivities
    from models.live import InspectInput, LiveDeployment
    from models.plan import PlanReport
    from models.resources import PreflightInput
    from models.spec import DeploymentSpec
    from workflows.options import activity_options


@workflow.defn
class PlanWorkflow:
    @workflow.run
    async def run(self, spec: DeploymentSpec) -> PlanReport:
        return await workflow.execute_activity_method(
            PlanActivities.plan,
            PreflightInput(spec=spec),
            summary=f"Check the account and list what {spec.deployment_id} would create",
            **activity_options(spec.timing),
        )


@workflow.defn
class InspectWorkflow:
    """Read-only: what a deployment has live, for `plan`'s diff and `up`'s check before it starts."""

    @workflow.run
    async def run(self, request: InspectInput) -> LiveDeployment:
        scope = request.scope
        return await workflow.execute_activity_method(
            PlanActivities.inspect,
            scope,
            summary=f"Read what {scope.deployment_id} has live in {scope.region}",
            **activity_options(request.timing),
        )
