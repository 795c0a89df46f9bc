"""The long-lived deployment's state and messages (workflows/deployment.py): what it carries from one
run to the next through continue-as-new, what `up` and `down` answer, and which changes it applies.

Pure: the validator of `up` and the CLI use the same rules before anything changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from models import naming
from models.converge import ConvergeResult
from models.diff import REPLACE_THE_DEPLOYMENT, Action, ResourceAction, converges
from models.drift import DriftItem, DriftReport
from models.resources import DeploymentOutputs, Kind, Resource, TeardownResult
from models.spec import DeploymentSpec, TimingSpec


def workflow_id(deployment_id: str) -> str:
    return f"deployment-{deployment_id}"


class DeploymentPhase(StrEnum):
    """The deployment as a whole (the `DeploymentPhase` search attribute of its workflow)."""

    NEW = "new"
    """Nothing applied yet by this workflow."""
    CREATING = "creating"
    CONVERGING = "converging"
    PAUSED = "paused"
    """Its operation stopped at a failure (`on_failure: pause`) and waits for `retry` or `rollback`."""
    READY = "ready"
    """Live, on `spec`; the last operation may still have failed (and rolled back to it)."""
    FAILED = "failed"
    """The create failed: nothing of the spec is in service."""
    TEARING_DOWN = "tearing_down"
    DELETED = "deleted"


class Operation(StrEnum):
    CREATE = "create"
    """A new deployment: DeployWorkflow as the child `deploy-<id>`."""
    CONVERGE = "converge"
    """A live deployment changed: InspectWorkflow, then ConvergeWorkflow."""
    NONE = "none"
    """The spec asks for what is live: nothing ran."""
    REPAIR = "repair"
    """Drift found by a scheduled check, repaired (`drift.on_drift: repair`): the changes made outside
    the deployment undone in place, then what is missing made again by a converge or a create."""
    TEARDOWN = "teardown"


class Outcome(StrEnum):
    COMPLETED = "completed"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    """The operation's own rollback ran: the deployment is on its previous spec (or gone, for a create)."""
    REFUSED = "refused"
    """Nothing was changed: the change is one this workflow cannot apply (the message says why)."""
    CANCELLED = "cancelled"
    """Stopped by `down` (it rolled itself back first)."""


class OperationResult(BaseModel):
    """What `up` answers, and what the state remembers of the last operation."""

    operation: Operation
    outcome: Outcome
    workflow_id: str | None = Field(None, description="The child workflow that ran it.")
    message: str | None = None
    outputs: DeploymentOutputs | None = Field(None, description="The deployment's outputs afterwards.")
    converge: ConvergeResult | None = None
    refused: list[ResourceAction] = Field(default_factory=list)
    repaired: list[DriftItem] = Field(
        default_factory=list, description="A repair: the differences it found (and undid, if it completed)."
    )
    finished_at: datetime | None = None


class DeploymentState(BaseModel):
    """Everything a run needs to go on: the input of the first run and of every continued one."""

    deployment_id: str
    region: str = Field(description="Where its resources live (a spec that moves it is refused).")
    spec: DeploymentSpec | None = Field(None, description="The spec the deployment runs now, once applied.")
    outputs: DeploymentOutputs | None = None
    phase: DeploymentPhase = DeploymentPhase.NEW
    last: OperationResult | None = None
    operations: int = Field(0, description="Operations run so far, over the whole chain of runs.")
    adopted_from: str | None = Field(
        None, description="A standalone `deploy-<id>` workflow whose deployment this one took over."
    )
    requested: DeploymentSpec | None = Field(
        None,
        description="Only in a first run's input: a spec to apply at once, without an `up` update "
        "(`starter.py up --no-wait` starts the workflow so, which needs no worker to answer).",
    )
    drift: DriftReport | None = Field(None, description="The last drift check's report.")
    ttl: timedelta | None = Field(None, description="The time-to-live the deadline was last set from.")
    expires_at: datetime | None = Field(None, description="When the time-to-live tears it down.")
    expired: bool = Field(False, description="The deadline has passed: the teardown it started ran.")

    @property
    def timing(self) -> TimingSpec:
        return self.spec.timing if self.spec else TimingSpec()


class DownRequest(BaseModel):
    region: str | None = Field(None, description="Only when the state does not know it (adoption).")
    timing: TimingSpec | None = None
    reason: str | None = Field(None, description="Why, when it is not the user's `down` (the time-to-live).")


class ExtendRequest(BaseModel):
    by: timedelta = Field(description="How much later the time-to-live's deadline moves.")


class ExtendResult(BaseModel):
    deployment_id: str
    expires_at: datetime


class DownResult(BaseModel):
    deployment_id: str
    outcome: Outcome
    message: str | None = None
    teardown: TeardownResult | None = None
    cancelled: str | None = Field(None, description="The operation `down` stopped first, if any.")


class DeploymentStatus(BaseModel):
    """The `status` query: the state, and the operation running now (its child workflow's id)."""

    state: DeploymentState
    running: Operation | None = None
    running_spec: DeploymentSpec | None = Field(None, description="The spec the running operation applies.")
    child_workflow_id: str | None = None


def needs_create(actions: list[ResourceAction]) -> bool:
    """A resource the converge does not make is missing (models/diff.py `converges`: it makes instances,
    and NAT gateways, addresses and route tables in a NAT mode switch): the create completes it."""
    return any(a.action is Action.CREATE and not converges(a) for a in actions) or lost_nat(actions)


def lost_nat(actions: list[ResourceAction]) -> bool:
    """A NAT gateway to make while no route table comes or goes and no gateway retires: not a NAT mode
    switch but a gateway deleted outside the deployment, which the create makes again and points its
    route tables at."""
    made = any(a.kind is Kind.NAT_GATEWAY and a.action is Action.CREATE for a in actions)
    switching = any(
        (a.kind is Kind.NAT_GATEWAY and a.action is Action.DELETE)
        or (a.kind is Kind.ROUTE_TABLE and a.action in (Action.CREATE, Action.DELETE))
        for a in actions
    )
    return made and not switching


def completed_by_create(action: ResourceAction, actions: list[ResourceAction]) -> bool:
    """A route table whose default route names a NAT gateway that is gone (deleted outside the
    deployment) and is made again: the find-or-create points the route at the new one."""
    made = {a.name for a in actions if a.action is Action.CREATE and a.kind is Kind.NAT_GATEWAY}
    return (
        action.kind is Kind.ROUTE_TABLE
        and action.action is Action.UPDATE
        and all(c.field == "default_route" and c.after in made for c in action.changes)
    )


def moved(current: DeploymentSpec, desired: DeploymentSpec) -> list[str]:
    """What the spec changes that no operation can: checked offline by `up`'s validator."""
    found = []
    if desired.region != current.region:
        found.append(f"region {current.region} -> {desired.region}")
    if desired.vpc_id != current.vpc_id:
        found.append(f"vpc_id {current.vpc_id or 'default'} -> {desired.vpc_id or 'default'}")
    before = {s.availability_zone: str(s.cidr) for s in current.private_subnets}
    after = {s.availability_zone: str(s.cidr) for s in desired.private_subnets}
    found += [
        f"private subnet CIDR in {az} {before[az]} -> {cidr}"
        for az, cidr in after.items()
        if az in before and before[az] != cidr
    ]
    return found


def refused_move(deployment_id: str, changes: list[str]) -> str:
    return (
        f"{deployment_id} cannot change {'; '.join(changes)}: its resources belong there for life; "
        f"{REPLACE_THE_DEPLOYMENT}. Nothing was changed."
    )


def with_fleet(outputs: DeploymentOutputs, result: ConvergeResult) -> DeploymentOutputs:
    """The outputs after a converge: its fleet instead of the instances before it, and after a NAT mode
    switch its NAT gateways, addresses and route tables (an empty map in the result: unchanged)."""
    update: dict[str, object] = {"instance_ids": dict(result.instance_ids)}
    made = [Resource(kind=Kind.INSTANCE, name=n, id=i) for n, i in result.instance_ids.items()]
    if result.nat_gateway_ids:
        update["nat_gateway_ids"] = dict(result.nat_gateway_ids)
        made += [
            Resource(kind=Kind.NAT_GATEWAY, name=naming.nat_gateway(az), id=i)
            for az, i in result.nat_gateway_ids.items()
        ]
    if result.elastic_ip_allocation_ids:
        update["elastic_ip_allocation_ids"] = dict(result.elastic_ip_allocation_ids)
        made += [
            Resource(kind=Kind.ELASTIC_IP, name=naming.elastic_ip(az), id=i)
            for az, i in result.elastic_ip_allocation_ids.items()
        ]
    if result.route_table_ids:
        update["route_table_ids"] = dict(result.route_table_ids)
        shared = len(set(result.route_table_ids.values())) == 1
        tables = {naming.route_table(None if shared else az): i for az, i in result.route_table_ids.items()}
        made += [Resource(kind=Kind.ROUTE_TABLE, name=n, id=i) for n, i in tables.items()]
    replaced = {resource.kind for resource in made}
    update["resources"] = [r for r in outputs.resources if r.kind not in replaced] + made
    return outputs.model_copy(update=update)
