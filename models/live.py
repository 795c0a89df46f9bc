"""What a deployment has in AWS right now, as facts `plan` and `up` compare with the spec.

Read by tags (activities/live.py), with references between the deployment's own resources given by
logical name (a route's NAT, a rule's source group), so a diff compares names, not ids that change
with every create.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.resources import Kind, Scope
from models.spec import TimingSpec


class LiveResource(BaseModel):
    """One resource carrying the deployment's tag; `facts` holds the settings a spec decides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    name: str
    id: str
    facts: dict[str, str] = Field(default_factory=dict)


class LiveDeployment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_id: str
    region: str = Field(description="Where the resources were looked for (and found, if any).")
    vpc_id: str | None = Field(None, description="The VPC of its subnets or groups; None if none exist.")
    vpc_is_default: bool | None = None
    resources: list[LiveResource] = Field(default_factory=list)

    @property
    def exists(self) -> bool:
        return bool(self.resources)

    def of_kind(self, kind: Kind) -> list[LiveResource]:
        return [resource for resource in self.resources if resource.kind is kind]


class InspectInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    timing: TimingSpec = Field(default_factory=TimingSpec)
