"""What a deployment has in AWS right now, as facts `plan` and `up` compare with the spec.

Read by tags (activities/live.py), with references between the deployment's own resources given by
logical name (a route's NAT, a rule's source group), so a diff compares names, not ids that change
with every create.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.resources import Kind, Scope
from models.spec import TimingSpec

FORWARD = "forward to "
THEN = " then "
"""Between the actions of a listener that has more than one (an authentication, then a forward)."""
DEFAULT_REDIRECT = {"Host": "#{host}", "Path": "/#{path}", "Query": "#{query}"}
"""The redirect the deployment makes (activities/load_balancing.py): same host, path and query."""


def https_redirect(port: int) -> dict[str, str]:
    """The RedirectConfig of an HTTP listener that sends every request to HTTPS on `port`."""
    return {"Protocol": "HTTPS", "Port": str(port), **DEFAULT_REDIRECT, "StatusCode": "HTTP_301"}


def forward_action(target_groups: str) -> str:
    """A listener's default action as activities/live.py reads it and models/diff.py wants it."""
    return FORWARD + target_groups


def redirect_action(config: dict[str, str]) -> str:
    """`redirect 301 to HTTPS:443`; a host, path or query other than the request's own is shown too."""
    status = config.get("StatusCode", "").removeprefix("HTTP_")
    text = f"redirect {status} to {config.get('Protocol', '#{protocol}')}:{config.get('Port', '#{port}')}"
    moved = {key: config.get(key, value) for key, value in DEFAULT_REDIRECT.items()}
    if moved != DEFAULT_REDIRECT:
        text += f" at {moved['Host']}{moved['Path']}?{moved['Query']}"
    return text


def our_http_action(text: str, target_group: str) -> tuple[bool, int | None]:
    """Whether `text` is an action the deployment gives its HTTP listener (forward to `target_group`,
    or 301 to HTTPS on some port), and that port (None: it forwards)."""
    if text == forward_action(target_group):
        return True, None
    prefix = redirect_action(https_redirect(0)).removesuffix("0")
    port = text.removeprefix(prefix)
    if text.startswith(prefix) and port.isdigit() and text == redirect_action(https_redirect(int(port))):
        return True, int(port)
    return False, None


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
