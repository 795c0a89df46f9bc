"""The desired-vs-live diff: per resource (by logical name), what changing to the spec takes.

Pure functions over the spec and `LiveDeployment`, shared by `plan` (which prints them), `up` (which
applies them: the find-or-create makes what is missing, the converge changes the rest it can, and
what neither applies is refused before anything starts) and the drift check.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models import naming
from models.converge import cidr_rules
from models.live import (
    LiveDeployment,
    LiveResource,
    forward_action,
    https_redirect,
    our_http_action,
    redirect_action,
)
from models.plan import alb_ports, instance_zones, nat_zones, plan, route_table_zones
from models.resources import Kind, TargetGroupSettings
from models.spec import DeploymentSpec

DEPLOYMENT = "deployment"
"""The row name of a change to the whole deployment (its region or VPC)."""


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    """In place: the resource keeps its id."""
    REPLACE = "replace"
    """A new resource takes the place of the old one (new id)."""
    DELETE = "delete"
    UNCHANGED = "unchanged"
    REFUSED = "refused"
    """No change of this resource can reach the spec: replace the deployment."""


APPLIED_BY_UP = {Action.CREATE, Action.UNCHANGED}
"""What the find-or-create deployment applies; `applicable` adds what the converge changes."""


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    before: str | None
    after: str | None


class ResourceAction(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Logical name (models/naming.py), or `deployment`.")
    kind: Kind | None
    action: Action
    id: str | None = Field(None, description="The live resource's id, if it exists.")
    changes: list[FieldChange] = Field(default_factory=list)
    reason: str | None = None


class Desired(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Kind
    name: str
    facts: dict[str, str]


REPLACED_BY = {
    Kind.INSTANCE: "a running instance keeps its type, AMI, AZ, user data and app version, and a stopped "
    "one serves nothing: a new one replaces it",
    Kind.TARGET_GROUP: "a target group's port cannot change: a new group replaces it",
    Kind.CERTIFICATE: "a certificate's domain cannot change: a new one, validated by DNS, replaces it "
    "and the HTTPS listener moves to it",
    Kind.DNS_RECORD: "a record's name and zone are what it is: a new record replaces it, and the old "
    "name stops answering",
}
REPLACE_FIELDS = {
    Kind.INSTANCE: {"instance_type", "ami_id", "availability_zone", "app_port", "app_version", "state"},
    Kind.TARGET_GROUP: {"port"},
    Kind.CERTIFICATE: {"domain"},
    Kind.DNS_RECORD: {"domain", "hosted_zone_id"},
}
REFUSED_FIELDS = {
    Kind.SUBNET: (
        {"cidr"},
        "a subnet's CIDR cannot change, and its instances, route table and NAT depend on it",
    ),
}
REPLACE_THE_DEPLOYMENT = "replace the deployment (`down`, then `up` with the new spec)"
TWIN = "a second resource under this name (a twin)"


def desired(spec: DeploymentSpec) -> list[Desired]:
    """Every resource the spec asks for, in the order `plan` creates them, with the facts it decides."""
    facts = _facts(spec)
    return [
        Desired(kind=step.kind, name=step.key, facts=facts.get(step.key, {}))
        for step in plan(spec)
        if step.kind is not None and step.kind is not Kind.TARGET_REGISTRATION
    ]


def _facts(spec: DeploymentSpec) -> dict[str, dict[str, str]]:
    subnet_names = {
        s.availability_zone: naming.private_subnet(s.availability_zone) for s in spec.private_subnets
    }
    facts: dict[str, dict[str, str]] = {
        naming.private_subnet(s.availability_zone): {
            "cidr": str(s.cidr),
            "availability_zone": s.availability_zone,
        }
        for s in spec.private_subnets
    }
    first_nat = nat_zones(spec)[0]
    for az in route_table_zones(spec):
        served = sorted(subnet_names.values()) if az is None else [subnet_names[az]]
        facts[naming.route_table(az)] = {
            "subnets": ", ".join(served),
            "default_route": naming.nat_gateway(az or first_nat),
        }
    lb, app = spec.load_balancer, spec.app
    alb_rules = sorted(f"tcp/{port} from {lb.allowed_cidr}" for port in alb_ports(spec))
    # As activities/live.py reads them; egress is the rule AWS gives every new group, which the
    # instances need to reach the NAT gateway and the ALB to reach its targets.
    facts[naming.ALB_SECURITY_GROUP] = {"ingress": ", ".join(alb_rules), "egress": ALL_EGRESS}
    facts[naming.APP_SECURITY_GROUP] = {
        "ingress": f"tcp/{app.port} from {naming.ALB_SECURITY_GROUP}",
        "egress": ALL_EGRESS,
    }
    settings = TargetGroupSettings.of(spec).model_dump()
    facts[naming.TARGET_GROUP] = {"port": str(app.port), **{k: str(v) for k, v in settings.items()}}
    facts[naming.LOAD_BALANCER] = {"availability_zones": ", ".join(sorted(spec.availability_zones))}
    facts[naming.listener(lb.listener_port)] = {"default_action": http_listener_action(spec)}
    for index, az in enumerate(instance_zones(spec)):
        instance = {"instance_type": spec.instances.instance_type, "availability_zone": az}
        instance["app_port"] = str(app.port)
        instance["app_version"] = app.version
        instance["state"] = "running"
        if spec.instances.ami_id:  # unpinned, each launch takes the parameter's AMI of its day
            instance["ami_id"] = spec.instances.ami_id
        facts[naming.instance(index)] = instance
    return facts | _https_facts(spec)


ALL_EGRESS = "all to 0.0.0.0/0"
"""The egress rule AWS gives a new security group, which the deployment keeps."""


def http_listener_action(spec: DeploymentSpec) -> str:
    """Forward to the target group, or (HTTPS with `redirect_http`) 301 to HTTPS, as the deploy makes it."""
    port = spec.http_redirect_port
    return forward_action(naming.TARGET_GROUP) if port is None else redirect_action(https_redirect(port))


def _https_facts(spec: DeploymentSpec) -> dict[str, dict[str, str]]:
    """As activities/live_https.py reads them; the zone only when the spec names it (else preflight
    finds it, and the live zone is the one it found)."""
    https = spec.https
    if https is None:
        return {}
    domain = {"domain": https.domain}
    record = domain | ({"hosted_zone_id": https.hosted_zone_id} if https.hosted_zone_id else {})
    brought = {"certificate_arn": https.certificate_arn} if https.certificate_arn else {}
    facts = {
        naming.listener(https.port): {
            "default_action": forward_action(naming.TARGET_GROUP),
            "ssl_policy": https.ssl_policy,
            **brought,
        },
        naming.ALIAS_RECORD: record,
    }
    if not brought:
        facts |= {naming.CERTIFICATE: domain, naming.VALIDATION_RECORD: record}
    return facts


def diff(spec: DeploymentSpec, live: LiveDeployment) -> list[ResourceAction]:
    """Desired resources first (in creation order), then the live ones the spec no longer names."""
    refused = deployment_refusals(spec, live)
    if refused:
        return refused
    by_name: dict[str, list[LiveResource]] = {}
    for resource in live.resources:
        by_name.setdefault(_slot_name(resource), []).append(resource)
    actions: list[ResourceAction] = []
    for want in desired(spec):
        found = by_name.pop(want.name, [])
        if not found:
            actions.append(ResourceAction(name=want.name, kind=want.kind, action=Action.CREATE))
            continue
        if want.kind is Kind.INSTANCE:
            found = _serving_first(want, found)
        actions.append(compare(want, found[0]))
        actions += [_delete(twin, TWIN) for twin in found[1:]]
    for leftovers in by_name.values():
        actions += [_delete(resource, "the spec no longer asks for it") for resource in leftovers]
    return actions


def _slot_name(resource: LiveResource) -> str:
    """An instance counts for its slot whatever its generation (`app-1-g2` is slot 1's instance after
    two rolling replacements), as ConvergeWorkflow launches and keeps them (models/converge.py)."""
    slot = naming.instance_slot(resource.name) if resource.kind is Kind.INSTANCE else None
    return naming.instance(slot[0]) if slot is not None else resource.name


def _serving_first(want: Desired, found: list[LiveResource]) -> list[LiveResource]:
    """The slot's instance the converge keeps (one as wanted, else the newest generation) first; any
    other is a twin of the slot, which the converge drains and terminates."""

    def rank(live: LiveResource) -> tuple[bool, int]:
        generation = (naming.instance_slot(live.name) or (0, 0))[1]
        return compare(want, live).action is not Action.UNCHANGED, -generation

    return sorted(found, key=rank)


def compare(want: Desired, live: LiveResource) -> ResourceAction:
    """Only facts both sides know are compared: a fact the reader could not see is no change."""
    changes = [
        FieldChange(field=field, before=live.facts[field], after=value)
        for field, value in want.facts.items()
        if field in live.facts and live.facts[field] != value
    ]
    fields = {change.field for change in changes}
    refused_fields, why_refused = REFUSED_FIELDS.get(want.kind, (set(), ""))
    if fields & refused_fields:
        action, reason = Action.REFUSED, f"{why_refused}: {REPLACE_THE_DEPLOYMENT}"
    elif fields & REPLACE_FIELDS.get(want.kind, set()):
        action, reason = Action.REPLACE, REPLACED_BY[want.kind]
    elif changes:
        action, reason = Action.UPDATE, None
    else:
        action, reason = Action.UNCHANGED, None
    return ResourceAction(
        name=live.name if want.kind is Kind.INSTANCE else want.name,
        kind=want.kind,
        action=action,
        id=live.id,
        changes=changes,
        reason=reason,
    )


def _delete(resource: LiveResource, reason: str) -> ResourceAction:
    return ResourceAction(
        name=resource.name, kind=resource.kind, action=Action.DELETE, id=resource.id, reason=reason
    )


def deployment_refusals(spec: DeploymentSpec, live: LiveDeployment) -> list[ResourceAction]:
    """A region or VPC change moves every resource: nothing of the live deployment can be kept."""
    if not live.exists:
        return []
    changes: list[FieldChange] = []
    reasons: list[str] = []
    if live.region != spec.region:
        changes.append(FieldChange(field="region", before=live.region, after=spec.region))
        reasons.append(f"its {len(live.resources)} resources live in {live.region} and cannot move")
    elif live.vpc_id is not None:
        wanted = spec.vpc_id or "the default VPC"
        moved = spec.vpc_id != live.vpc_id if spec.vpc_id else live.vpc_is_default is False
        if moved:
            changes.append(FieldChange(field="vpc", before=live.vpc_id, after=wanted))
            reasons.append("subnets, groups, target group and ALB belong to their VPC for life")
    if not changes:
        return []
    reason = "; ".join(reasons) + f": {REPLACE_THE_DEPLOYMENT}"
    return [ResourceAction(name=DEPLOYMENT, kind=None, action=Action.REFUSED, changes=changes, reason=reason)]


CONVERGE_APPLIES: dict[Kind, set[Action]] = {
    Kind.INSTANCE: {Action.CREATE, Action.DELETE, Action.REPLACE},
    Kind.SECURITY_GROUP: {Action.UPDATE},
    Kind.TARGET_GROUP: {Action.UPDATE},
    Kind.ELASTIC_IP: {Action.CREATE, Action.DELETE},
    Kind.NAT_GATEWAY: {Action.CREATE, Action.DELETE},
    Kind.ROUTE_TABLE: {Action.CREATE, Action.DELETE},
    Kind.LISTENER: {Action.UPDATE},
}
"""What ConvergeWorkflow changes on a live deployment (workflows/converge.py): the instances (scale out
and in, rolling replacement), the ALB group's allowed CIDR, the target group's health check and
deregistration delay, the NAT mode (gateways, addresses and route tables made and retired), the HTTP
listener between forwarding and redirecting to HTTPS, the HTTPS listener's TLS policy."""


def converges(action: ResourceAction) -> bool:
    """ConvergeWorkflow applies this action."""
    if action.kind is None or action.action not in CONVERGE_APPLIES.get(action.kind, set()):
        return False
    if action.kind is not Kind.INSTANCE and action.reason == TWIN:
        return False
    if action.kind is Kind.SECURITY_GROUP:  # the ALB's CIDR, on the ports it has: not a port move
        return action.name == naming.ALB_SECURITY_GROUP and all(
            change.field == "ingress" and _ports(change.before) == _ports(change.after)
            for change in action.changes
        )
    if action.kind is Kind.LISTENER:  # forward <-> redirect, and the TLS policy
        return all(_listener_converges(change) for change in action.changes)
    return True


def _listener_converges(change: FieldChange) -> bool:
    """The HTTP listener between the actions the deployment gives it, or the HTTPS listener's TLS
    policy; not its certificate, whose own resource would change too."""
    if change.field == "ssl_policy":
        return bool(change.before and change.after)
    return (
        change.field == "default_action"
        and our_http_action(change.before or "", naming.TARGET_GROUP)[0]
        and our_http_action(change.after or "", naming.TARGET_GROUP)[0]
    )


def _ports(ingress: str | None) -> set[int]:
    return {rule.port for rule in cidr_rules(ingress or "")}


def applicable(actions: list[ResourceAction]) -> list[ResourceAction]:
    """The actions a live deployment's change applies: creates and what stays (the find-or-create
    deployment), and what the converge changes (`converges`)."""
    return [action for action in actions if action.action in APPLIED_BY_UP or converges(action)]


def inapplicable(actions: list[ResourceAction]) -> list[ResourceAction]:
    """The actions nothing applies yet: `up` refuses the change (exit 5) while any is left."""
    kept = applicable(actions)
    return [action for action in actions if action not in kept]


def describe(action: ResourceAction) -> str:
    """One action in words, e.g. `app-0 replace (instance_type t2.micro -> t3.micro)`; a replacement
    or refusal with its reason, so a refused `up` says why."""
    fields = ", ".join(f"{c.field} {c.before} -> {c.after}" for c in action.changes)
    why = action.reason if action.action in (Action.REPLACE, Action.REFUSED) and action.reason else ""
    return (
        f"{action.name} {action.action.value}"
        + (f" ({fields})" if fields else "")
        + (f": {why}" if why else "")
    )


def refusal(deployment_id: str, live_region: str, refused: list[ResourceAction]) -> str:
    """`plan`'s one paragraph on what `up` would refuse (`refused`, as `inapplicable` names it), and
    what the user can do now."""
    listed = "; ".join(describe(action) for action in refused)
    rebuild = f"'starter.py down {deployment_id}" + (
        f" --region {live_region}'" if any(c.field == "region" for a in refused for c in a.changes) else "'"
    )
    return (
        f"up cannot apply this change to the live deployment {deployment_id} yet: neither a create nor "
        f"the converge applies, and the spec also asks for: {listed}. Nothing was changed. Either keep "
        f"the current values ('starter.py plan' shows what differs), or run {rebuild} and then "
        "'starter.py up' with the new spec, which rebuilds the deployment (a new ALB DNS name, and no "
        "service in between)."
    )
