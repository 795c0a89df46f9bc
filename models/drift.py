"""Drift: how a live deployment differs from its spec because of changes made outside it (a console
click, a script), as `starter.py check` and the deployment's workflow report it.

A drift item is one difference: a resource (or a tag, rule or target of one) `missing`, `changed` (the
field with the value expected and the value live) or `extra` (there, but not asked for: an added
ingress rule, a foreign target in the target group, an instance the spec does not name).

How each difference is written (the check writes them, the repair reads them):
- a resource gone: MISSING, no field, `id` the id it had (when known);
- a resource not asked for (an extra instance carrying the deployment's tag): EXTRA, no field, its id;
- a fact (`instance_type`, `default_route`, `health_check_path`, ...): CHANGED, the field, both values;
- a security group's rule, one item per rule and peer, field `ingress` or `egress`, written as
  activities/live.py reads rules (`tcp/22 from 0.0.0.0/0`, `tcp/8000-8100 from ::/0`, `all from
  pl-0abc`, `all to 0.0.0.0/0`; a group of the deployment by logical name, another by id): EXTRA with
  `actual`, or MISSING with `expected`;
- a target of the target group (kind TARGET_GROUP, its id the group's ARN), field `target`: EXTRA with
  `actual` the foreign target's id, or MISSING with `expected` our instance's id (not registered, or
  draining);
- a tag, field `tag:<key>`: CHANGED (or MISSING when absent) with the value expected and the live one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models import naming
from models.diff import Action, ResourceAction, diff
from models.live import FORWARD, THEN, LiveDeployment, LiveResource, forward_action
from models.resources import DeploymentOutputs, Kind, Scope
from models.spec import DeploymentSpec, TimingSpec


class Drift(StrEnum):
    MISSING = "missing"
    CHANGED = "changed"
    EXTRA = "extra"


class DriftItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="The resource's logical name (models/naming.py), or its id if it has none.")
    kind: Kind
    id: str | None = Field(None, description="The live resource's id (None when it is missing).")
    drift: Drift
    field: str | None = Field(
        None,
        description="What differs: a fact (`ingress`, `instance_type`, ...), `tag:<key>`, or `target`.",
    )
    expected: str | None = None
    actual: str | None = None

    def describe(self) -> str:
        """One line, e.g. `sg-app (sg-1) extra ingress: tcp/22 from 0.0.0.0/0`, `tg-app (arn:...)
        missing target: i-1 (not registered)`, `app-0 (i-1) missing tag:Name: web-app-0`."""
        where = f"{self.name} ({self.id})" if self.id and self.id != self.name else self.name
        if self.drift is Drift.MISSING and self.field is None:
            return f"{where} missing: deleted outside the deployment"
        if self.drift is Drift.EXTRA:
            what = f" {self.field}" if self.field else ""
            why = " (not an instance of the deployment)" if self.field == "target" else ""
            return f"{where} extra{what}: {self.actual or 'not in the spec'}{why}"
        if self.drift is Drift.MISSING:
            why = " (not registered)" if self.field == "target" else ""
            return f"{where} missing {self.field}: {self.expected}{why}"
        expected, actual = self.expected or "none", self.actual or "none"
        return f"{where} changed {self.field}: expected {expected}, live {actual}"


class DriftReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_id: str
    region: str
    checked_at: datetime
    items: list[DriftItem] = Field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.items)

    def summary(self) -> str:
        if not self.items:
            return "no drift"
        return f"{len(self.items)} difference(s): " + "; ".join(item.describe() for item in self.items)


class CheckInput(BaseModel):
    """What a check compares: the spec the deployment runs and the ids its workflow knows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    spec: DeploymentSpec
    outputs: DeploymentOutputs | None = None
    timing: TimingSpec = Field(default_factory=TimingSpec)


class RepairInput(BaseModel):
    """The in-place part of a repair (tags, ingress rules, target registrations); what must be made or
    replaced (a terminated instance, a deleted NAT gateway) is left to the converge that follows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: Scope
    spec: DeploymentSpec
    report: DriftReport
    timing: TimingSpec = Field(default_factory=TimingSpec)


class RepairResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fixed: list[DriftItem] = Field(default_factory=list, description="Items repaired in place.")
    left: list[DriftItem] = Field(
        default_factory=list, description="Items the in-place repair does not handle (for the converge)."
    )


# The comparison itself: pure, over what activities/drift.py read.

EC2_KINDS = frozenset(
    {Kind.SUBNET, Kind.ELASTIC_IP, Kind.NAT_GATEWAY, Kind.ROUTE_TABLE, Kind.SECURITY_GROUP, Kind.INSTANCE}
)
ELB_KINDS = frozenset({Kind.TARGET_GROUP, Kind.LOAD_BALANCER, Kind.LISTENER})
ACM_KINDS = frozenset({Kind.CERTIFICATE})
"""Which API reads and writes a resource's tags (ec2 DescribeTags/CreateTags, elbv2 DescribeTags/AddTags,
acm ListTagsForCertificate/AddTagsToCertificate); a DNS record has none."""
OUT_OF_SCOPE = frozenset({Kind.TARGET_REGISTRATION})
"""Not compared as a resource: the registrations (each target is, below)."""
NOT_LOOKED_UP = frozenset({Kind.CERTIFICATE, Kind.DNS_RECORD, *OUT_OF_SCOPE})
"""Not described by id: the HTTPS resources are read by what activities/live.py finds (the certificate
by its tags, each record while it says what the deployment wrote), so a deleted record is missing, and
so is a certificate that lost the deployment tag; the certificate's other tags are compared."""
REGISTERED_STATES = frozenset({"initial", "healthy", "unhealthy", "unused", "unavailable"})
"""Target states of a registered target; `draining` is one on its way out (AWS reports a
deregistered target so for its deregistration delay), so it counts as not registered."""
RULE_FIELDS = ("ingress", "egress")
"""A security group's rules: one item per rule, each direction its own field."""
NONE = "none"
"""How activities/live.py writes an empty fact (no ingress rule, no default route)."""


def known_resources(outputs: DeploymentOutputs | None) -> dict[str, str]:
    """Id -> logical name of every resource the deployment's workflow knows (its outputs), the
    out-of-scope ones left out."""
    if outputs is None:
        return {}
    known = {r.id: r.name for r in outputs.resources if r.kind not in NOT_LOOKED_UP}
    return known | {instance_id: name for name, instance_id in outputs.instance_ids.items()}


def resolved(live: LiveDeployment, known: dict[str, str], gone: dict[str, str]) -> LiveDeployment:
    """The live deployment with every resource under the name the deployment knows it by, and every
    reference to one of them (a route table's subnets and NAT, an ingress rule's source group) by
    that name: activities/live.py names only what carries the deployment's tag, so a resource that
    lost it would otherwise count as missing, and its references as changed.

    `known`: id -> logical name (the outputs'); a resource's name there wins over its tag's (a changed
    `scaleout:resource` tag is tag drift, not a new resource). `gone`: id -> its state, for what was
    looked up by id and is gone (`terminated`, `deleted`, `not found`): a default route to a deleted
    NAT gateway reads `nat-0abc (deleted)` (a blackhole on AWS)."""
    names = {r.id: r.name for r in live.resources} | {i: n for i, n in known.items() if i not in gone}
    return live.model_copy(update={"resources": [_resolved(r, names, gone) for r in live.resources]})


def _resolved(resource: LiveResource, names: dict[str, str], gone: dict[str, str]) -> LiveResource:
    facts = dict(resource.facts)
    if facts.get("subnets"):
        facts["subnets"] = ", ".join(sorted(names.get(s, s) for s in _split(facts["subnets"])))
    route = facts.get("default_route")
    if route and route != NONE:
        facts["default_route"] = names.get(route) or (f"{route} ({gone[route]})" if route in gone else route)
    for direction in RULE_FIELDS:
        if facts.get(direction) and facts[direction] != NONE:
            facts[direction] = ", ".join(
                sorted(_rule_by_name(rule, names) for rule in _split(facts[direction]))
            )
    action = facts.get("default_action", "")
    if action.startswith(FORWARD) and THEN not in action:  # a listener read by id names groups by ARN
        facts["default_action"] = forward_action(
            ", ".join(sorted(names.get(g, g) for g in _split(action[len(FORWARD) :])))
        )
    return resource.model_copy(update={"name": names.get(resource.id, resource.name), "facts": facts})


def _split(value: str | None) -> list[str]:
    return [part for part in (value or "").split(", ") if part and part != NONE]


def _rule_by_name(rule: str, names: dict[str, str]) -> str:
    for word in (" from ", " to "):
        port, sep, peer = rule.partition(word)
        if sep:
            return f"{port}{sep}{names.get(peer, peer)}"
    return rule


def find_drift(
    spec: DeploymentSpec,
    live: LiveDeployment,
    *,
    known: dict[str, str] | None = None,
    tags: dict[str, tuple[dict[str, str], dict[str, str]]] | None = None,
    targets: dict[str, str] | None = None,
) -> list[DriftItem]:
    """Every difference between the spec and the live deployment (as `resolved` returns it), written
    as the module docstring says, per resource in the order the deployment makes them: the resource
    or its facts (models/diff.py's diff), then its tags, then (the target group's) targets.

    `known`: id -> logical name of what the deployment made (`known_resources`), for the id a missing
    resource had. `tags`: resource id -> (the tags it was made with, its live tags); only the tags it
    was made with are compared (AWS and people may add others). `targets`: registered target id ->
    its state in the deployment's target group; None when it was not read (no target group)."""
    known = known or {}
    # The check compares resources, not where the deployment lives: a region or VPC change is a spec
    # change (plan's and up's refusal), never drift.
    actions = [
        action
        for action in diff(spec, live.model_copy(update={"region": spec.region, "vpc_id": None}))
        if action.kind is not None and action.kind not in OUT_OF_SCOPE
    ]
    extra = {action.id for action in actions if action.action is Action.DELETE}
    # Per resource, in the order the deployment makes them: its facts, then its tags, then targets.
    order = {action.name: index for index, action in enumerate(actions)}
    ranked = [(index, item) for index, a in enumerate(actions) for item in _action_items(a, known)]
    for resource in live.resources:
        if resource.id in extra or resource.kind in OUT_OF_SCOPE or resource.id not in (tags or {}):
            continue
        expected, actual = (tags or {})[resource.id]
        rank = order.get(resource.name, len(order))
        ranked += [(rank, item) for item in tag_items(resource, expected, actual)]
    group = next(iter(live.of_kind(Kind.TARGET_GROUP)), None)
    if group is not None and targets is not None:
        ours = [r.id for r in live.of_kind(Kind.INSTANCE) if r.id not in extra]
        everyone = {r.id for r in live.of_kind(Kind.INSTANCE)} | set(known)
        rank = order.get(group.name, len(order))
        ranked += [(rank, item) for item in target_items(group, ours, everyone, targets)]
    return [item for _, item in sorted(ranked, key=lambda pair: pair[0])]


def _action_items(action: ResourceAction, known: dict[str, str]) -> list[DriftItem]:
    assert action.kind is not None
    if action.action is Action.UNCHANGED:
        return []
    if action.action is Action.CREATE:
        name, resource_id = _last_known(action.name, action.kind, known)
        return [DriftItem(name=name, kind=action.kind, id=resource_id, drift=Drift.MISSING)]
    if action.action is Action.DELETE:
        return [DriftItem(name=action.name, kind=action.kind, id=action.id, drift=Drift.EXTRA)]
    items = []
    for change in action.changes:
        base = {"name": action.name, "kind": action.kind, "id": action.id, "field": change.field}
        if change.field in RULE_FIELDS:
            live_rules, wanted = set(_split(change.before)), set(_split(change.after))
            items += [DriftItem(**base, drift=Drift.EXTRA, actual=r) for r in sorted(live_rules - wanted)]
            items += [DriftItem(**base, drift=Drift.MISSING, expected=r) for r in sorted(wanted - live_rules)]
        else:
            items.append(DriftItem(**base, drift=Drift.CHANGED, expected=change.after, actual=change.before))
    return items


def _last_known(name: str, kind: Kind, known: dict[str, str]) -> tuple[str, str | None]:
    """The name and id a missing resource last had: an instance's slot (`app-1`) may have been filled
    by a later generation (`app-1-g1`)."""
    for resource_id, known_name in known.items():
        if known_name == name:
            return name, resource_id
    if kind is Kind.INSTANCE:
        slot = naming.instance_slot(name)
        for resource_id, known_name in known.items():
            known_slot = naming.instance_slot(known_name)
            if slot is not None and known_slot is not None and known_slot[0] == slot[0]:
                return known_name, resource_id
    return name, None


def tag_items(resource: LiveResource, expected: dict[str, str], actual: dict[str, str]) -> list[DriftItem]:
    """A tag the resource was made with and no longer carries as made: CHANGED, or MISSING if absent."""
    return [
        DriftItem(
            name=resource.name,
            kind=resource.kind,
            id=resource.id,
            drift=Drift.MISSING if key not in actual else Drift.CHANGED,
            field=f"tag:{key}",
            expected=value,
            actual=actual.get(key),
        )
        for key, value in expected.items()
        if actual.get(key) != value
    ]


def target_items(
    group: LiveResource, ours: list[str], everyone: set[str], targets: dict[str, str]
) -> list[DriftItem]:
    """`ours`: the instances that should be registered; `everyone`: every other instance id of the
    deployment, live or gone (a gone one's registration is its missing instance's, not a foreign
    target); `targets`: registered id -> state."""
    base = {"name": group.name, "kind": Kind.TARGET_GROUP, "id": group.id, "field": "target"}
    missing = [i for i in ours if targets.get(i) not in REGISTERED_STATES]
    everyone = everyone | set(ours)
    foreign = sorted(i for i, state in targets.items() if i not in everyone and state in REGISTERED_STATES)
    return [DriftItem(**base, drift=Drift.MISSING, expected=i) for i in missing] + [
        DriftItem(**base, drift=Drift.EXTRA, actual=i) for i in foreign
    ]
