"""`plan`: the preflight checks plus what already exists, without creating or changing anything."""

from __future__ import annotations

from temporalio import activity

from activities.aws_clients import AwsClients
from activities.errors import aws_errors
from activities.inventory import InventoryActivities
from activities.live import read_live
from activities.preflight import PreflightActivities
from models.live import LiveDeployment
from models.plan import PlanReport
from models.resources import PreflightInput, Scope


class PlanActivities:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws
        self._preflight = PreflightActivities(aws)
        self._inventory = InventoryActivities(aws)

    @activity.defn
    @aws_errors
    def plan(self, request: PreflightInput) -> PlanReport:
        spec = request.spec
        problems, facts = self._preflight.check(spec)
        scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
        return PlanReport(
            deployment_id=spec.deployment_id,
            region=spec.region,
            problems=problems,
            preflight=facts,
            existing=self._inventory.discover_resources(scope).resources,
        )

    @activity.defn
    @aws_errors
    def inspect(self, scope: Scope) -> LiveDeployment:
        """The deployment's live settings, for the diff `plan` prints and `up` checks first."""
        return read_live(self._aws, scope)
