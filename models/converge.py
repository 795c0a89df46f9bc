"""What converging a live deployment's instances to a spec takes: which instances to launch, which to
retire, and in which batches. Pure: ConvergeWorkflow (workflows/converge.py) runs what this decides.

Instances live in *slots*: slot `i` of `instances.count` sits in the AZ models/plan.py's
`instance_zones` gives it (round robin), so scaling keeps the spread. An instance's logical name says
its slot and generation (`app-1`, then `app-1-g1` for its first replacement; models/naming.py): every
instance a converge launches gets a generation above every live one, so a replacement never shares a
logical name (the find-or-create key) with the instance it replaces, and a converge run again after a
crash finds its own launches by name.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from pydantic import Field

from models import naming
from models.live import LiveDeployment, our_http_action
from models.nat_switch import LiveNetwork, NatSwitch, move_step, nat_switch, retire_step
from models.plan import PREFLIGHT, PlannedStep, alb_ports, instance_zones, nat_gateway_steps
from models.resources import DeleteInput, Frozen, Kind, ResourceKey, TargetGroupSettings
from models.spec import DeploymentSpec

RETIRE = "retire"
SCALE_OUT = "scale-out"
SCALE_IN = "scale-in"


class LiveInstance(Frozen):
    """One running instance of the deployment, as activities/live.py reads it."""

    name: str = Field(description="Logical name (`app-0`, `app-0-g1`, ...).")
    instance_id: str
    instance_type: str
    ami_id: str
    availability_zone: str
    app_version: str = Field(naming.DEFAULT_APP_VERSION, description="Its `scaleout:app-version` tag.")
    state: str = Field("running", description="`running` (or on its way), else stopped or stopping.")


class CidrRule(Frozen):
    """One ingress rule of the ALB's security group: a listener port open to a CIDR."""

    port: int
    cidr: str


def cidr_rules(ingress: str) -> list[CidrRule]:
    """The IPv4 CIDR rules on one TCP port of a security group's `ingress` fact (activities/live.py:
    `tcp/80 from 0.0.0.0/0, ...`), the only ones the deployment makes; any other (a source group, an
    IPv6 range, a prefix list, a port range) is drift for the check and the repair, never a listener's."""
    rules = []
    for rule in ingress.split(", "):
        protocol_port, _, source = rule.partition(" from ")
        protocol, _, port = protocol_port.partition("/")
        if protocol == "tcp" and port.isdigit() and _is_cidr(source):
            rules.append(CidrRule(port=int(port), cidr=source))
    return rules


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.IPv4Network(text)
    except ValueError:
        return False
    return True


class LiveListener(Frozen):
    arn: str
    redirect_to_port: int | None = Field(description="Answers 301 to HTTPS on this port; None: forwards.")


class LiveTls(Frozen):
    arn: str
    ssl_policy: str


class ConvergeInput(Frozen):
    """The desired spec and what is live: the facts InspectWorkflow reads (`from_live`)."""

    spec: DeploymentSpec = Field(description="The spec to converge to.")
    target_group_arn: str
    app_security_group_id: str
    private_subnet_ids: dict[str, str] = Field(description="AZ -> the deployment's private subnet there.")
    instances: list[LiveInstance] = Field(description="Every live instance of the deployment.")
    alb_security_group_id: str | None = Field(
        None, description="The ALB's security group; None: its rules are left as they are."
    )
    alb_ingress: list[CidrRule] = Field(
        default_factory=list, description="The CIDR rules of the ALB's security group, live."
    )
    target_group_settings: TargetGroupSettings | None = Field(
        None, description="The target group's health check and deregistration delay, live; None: left."
    )
    network: LiveNetwork | None = Field(
        None, description="NAT gateways, addresses and route tables, live; None: the NAT mode is left."
    )
    http_listener: LiveListener | None = Field(
        None, description="The HTTP listener, when its action is one the deployment gives; None: left."
    )
    https_listener: LiveTls | None = Field(None, description="The HTTPS listener's TLS policy; None: left.")

    @classmethod
    def from_live(cls, spec: DeploymentSpec, live: LiveDeployment) -> ConvergeInput:
        """From InspectWorkflow's answer; the deployment must have its target group, app security
        group and private subnets (a converge changes instances, nothing under them)."""
        by_name = {resource.name: resource for resource in live.resources}
        missing = [name for name in (naming.TARGET_GROUP, naming.APP_SECURITY_GROUP) if name not in by_name]
        if missing:
            raise ValueError(f"{live.deployment_id} has no {' and no '.join(missing)}: deploy it first")
        alb_group = by_name.get(naming.ALB_SECURITY_GROUP)
        http = by_name.get(naming.listener(spec.load_balancer.listener_port))
        ours, redirect = (
            our_http_action(http.facts.get("default_action", ""), naming.TARGET_GROUP)
            if http
            else (False, None)
        )
        tls = by_name.get(naming.listener(spec.https.port)) if spec.https else None
        policy = tls.facts.get("ssl_policy") if tls else None
        return cls(
            http_listener=LiveListener(arn=http.id, redirect_to_port=redirect) if http and ours else None,
            https_listener=LiveTls(arn=tls.id, ssl_policy=policy) if tls and policy else None,
            spec=spec,
            target_group_arn=by_name[naming.TARGET_GROUP].id,
            app_security_group_id=by_name[naming.APP_SECURITY_GROUP].id,
            alb_security_group_id=alb_group.id if alb_group else None,
            alb_ingress=cidr_rules(alb_group.facts.get("ingress", "")) if alb_group else [],
            target_group_settings=_settings(by_name[naming.TARGET_GROUP].facts),
            network=LiveNetwork.from_live(live),
            private_subnet_ids={s.facts["availability_zone"]: s.id for s in live.of_kind(Kind.SUBNET)},
            instances=[
                LiveInstance(
                    name=i.name,
                    instance_id=i.id,
                    instance_type=i.facts["instance_type"],
                    ami_id=i.facts["ami_id"],
                    availability_zone=i.facts["availability_zone"],
                    app_version=i.facts.get("app_version", naming.DEFAULT_APP_VERSION),
                    state=i.facts.get("state", "running"),
                )
                for i in live.of_kind(Kind.INSTANCE)
            ],
        )


def _settings(facts: dict[str, str]) -> TargetGroupSettings | None:
    """None unless the reader saw every setting (it reads them all, or none on an old worker)."""
    fields = TargetGroupSettings.model_fields
    if not all(field in facts for field in fields):
        return None
    return TargetGroupSettings(
        **{field: facts[field] if field == "health_check_path" else int(facts[field]) for field in fields}
    )


class IngressChangeInput(Frozen):
    """Open the ALB's group to `add`, then close `remove`: a client allowed before and after the change
    is never refused in between. Reversed, it is its own compensation."""

    key: ResourceKey
    group_id: str
    add: list[CidrRule]
    remove: list[CidrRule]
    settled_after: datetime | None = Field(
        None,
        description="Until then a rule of `remove` may be too new for AWS to show it (the forward "
        "step's): RevokeSecurityGroupIngress's InvalidPermission.NotFound proves nothing and is asked "
        "again. None: trusted at once.",
    )

    def reversed(self) -> IngressChangeInput:
        return self.model_copy(update={"add": self.remove, "remove": self.add})


class TargetGroupSettingsInput(Frozen):
    key: ResourceKey
    target_group_arn: str
    settings: TargetGroupSettings


class ListenerActionInput(Frozen):
    key: ResourceKey
    listener_arn: str
    target_group_arn: str
    redirect_to_port: int | None = Field(description="301 to HTTPS on this port; None: forward.")


class ListenerChange(Frozen):
    """The HTTP listener between forwarding and redirecting to HTTPS (`https.redirect_http`)."""

    arn: str
    before: int | None
    after: int | None


def listener_change(request: ConvergeInput) -> ListenerChange | None:
    live, wanted = request.http_listener, request.spec.http_redirect_port
    if live is None or live.redirect_to_port == wanted:
        return None
    return ListenerChange(arn=live.arn, before=live.redirect_to_port, after=wanted)


class SslPolicyInput(Frozen):
    key: ResourceKey
    listener_arn: str
    ssl_policy: str


class SslPolicyChange(Frozen):
    arn: str
    before: str
    after: str


def ssl_policy_change(request: ConvergeInput) -> SslPolicyChange | None:
    https, live = request.spec.https, request.https_listener
    if https is None or live is None or live.ssl_policy == https.ssl_policy:
        return None
    return SslPolicyChange(arn=live.arn, before=live.ssl_policy, after=https.ssl_policy)


class SettingsChange(Frozen):
    before: TargetGroupSettings
    after: TargetGroupSettings

    @property
    def fields(self) -> list[str]:
        before, after = self.before.model_dump(), self.after.model_dump()
        return [field for field in after if before[field] != after[field]]


class IngressChange(Frozen):
    add: list[CidrRule]
    remove: list[CidrRule]


def ingress_change(request: ConvergeInput) -> IngressChange | None:
    """The spec's CIDR on every ALB port; a live CIDR rule on those ports that it does not name goes."""
    if request.alb_security_group_id is None:
        return None
    spec = request.spec
    ports = alb_ports(spec)
    wanted = [CidrRule(port=port, cidr=str(spec.load_balancer.allowed_cidr)) for port in ports]
    add = [rule for rule in wanted if rule not in request.alb_ingress]
    remove = [rule for rule in request.alb_ingress if rule.port in ports and rule not in wanted]
    return IngressChange(add=add, remove=remove) if add or remove else None


def settings_change(request: ConvergeInput) -> SettingsChange | None:
    before, after = request.target_group_settings, TargetGroupSettings.of(request.spec)
    if before is None or before == after:
        return None
    return SettingsChange(before=before, after=after)


class Launch(Frozen):
    name: str
    slot: int
    availability_zone: str


class Batch(Frozen):
    """New instances that go into service before the old ones they replace leave it."""

    key: str
    launch: list[Launch]
    retire: list[LiveInstance]


class ConvergePlan(Frozen):
    generation: int = Field(description="The generation of every instance this converge launches.")
    keep: list[LiveInstance] = Field(description="Live instances already as the spec wants them.")
    scale_in: list[LiveInstance] = Field(
        description="Drained, then terminated: the spec has no slot for them."
    )
    scale_out: list[Launch] = Field(description="Empty slots: launched, registered, healthy.")
    batches: list[Batch] = Field(description="Outdated instances, replaced batch by batch.")
    ingress: IngressChange | None = Field(None, description="The ALB group's CIDR rules, in place.")
    target_group: SettingsChange | None = Field(
        None, description="Health check and deregistration delay, in place."
    )
    nat: NatSwitch | None = Field(None, description="NAT mode switch (models/nat_switch.py).")
    listener: ListenerChange | None = Field(None, description="The HTTP listener's action, in place.")
    ssl_policy: SslPolicyChange | None = Field(None, description="The HTTPS listener's TLS policy, in place.")

    @property
    def changes_nothing(self) -> bool:
        return not (
            self.scale_in
            or self.scale_out
            or self.batches
            or self.ingress
            or self.target_group
            or self.nat
            or self.listener
            or self.ssl_policy
        )

    @property
    def needs_preflight(self) -> bool:
        """Launches need the AMI and the instance type checked; new NAT gateways, the public subnets."""
        return bool(self.scale_out or self.batches or (self.nat and self.nat.create_nats))

    @property
    def retiring(self) -> list[LiveInstance]:
        """Every instance that leaves service; terminated only once the whole change has succeeded."""
        return [*self.scale_in, *(old for batch in self.batches for old in batch.retire)]


def wanted(spec: DeploymentSpec, instance: LiveInstance, availability_zone: str) -> bool:
    """As the spec wants it, and running: an unpinned AMI accepts whatever AMI it was launched with
    (as models/diff.py); a stopped instance serves nothing and is replaced."""
    ami = spec.instances.ami_id
    return (
        instance.state == "running"
        and instance.instance_type == spec.instances.instance_type
        and (ami is None or instance.ami_id == ami)
        and instance.availability_zone == availability_zone
        and instance.app_version == spec.app.version
    )


def converge_plan(request: ConvergeInput) -> ConvergePlan:
    spec = request.spec
    zones = instance_zones(spec)
    slotted = {i.name: naming.instance_slot(i.name) for i in request.instances}
    generation = 1 + max((s[1] for s in slotted.values() if s is not None), default=0)
    by_slot: dict[int, list[LiveInstance]] = {}
    strays = []  # not named by this tool's rule: no slot of the spec is theirs
    for instance in request.instances:
        slot = slotted[instance.name]
        if slot is None or slot[0] >= len(zones):
            strays.append(instance)
        else:
            by_slot.setdefault(slot[0], []).append(instance)
    keep: list[LiveInstance] = []
    scale_in: list[LiveInstance] = list(strays)
    scale_out: list[Launch] = []
    outdated: list[tuple[LiveInstance, Launch]] = []
    for slot, az in enumerate(zones):
        launch = Launch(name=naming.instance(slot, generation), slot=slot, availability_zone=az)
        newest_first = sorted(by_slot.get(slot, []), key=lambda i: -(slotted[i.name] or (0, 0))[1])
        current = [i for i in newest_first if wanted(spec, i, az)]
        serving = (current or newest_first)[:1]
        scale_in += [i for i in newest_first if i not in serving]  # twins of a slot
        if not serving:
            scale_out.append(launch)
        elif current:
            keep += serving
        else:
            outdated.append((serving[0], launch))
    size = spec.rollout.batch(len(zones))
    batches = [
        Batch(
            key=f"batch-{number}",
            launch=[launch for _, launch in outdated[start : start + size]],
            retire=[old for old, _ in outdated[start : start + size]],
        )
        for number, start in enumerate(range(0, len(outdated), size), 1)
    ]
    return ConvergePlan(
        generation=generation,
        keep=keep,
        scale_in=scale_in,
        scale_out=scale_out,
        batches=batches,
        ingress=ingress_change(request),
        target_group=settings_change(request),
        nat=nat_switch(spec, request.network),
        listener=listener_change(request),
        ssl_policy=ssl_policy_change(request),
    )


def register_step(phase: str) -> str:
    return f"register-{phase}"


def healthy_step(phase: str) -> str:
    return f"healthy-{phase}"


def drain_step(phase: str) -> str:
    return f"drain-{phase}"


def steps(spec: DeploymentSpec, plan: ConvergePlan) -> list[PlannedStep]:
    """The converge's steps in order, for its progress (query, UI, `status`)."""
    found = []
    if plan.ingress:
        opened = ", ".join(sorted({f"{r.cidr} on {r.port}" for r in plan.ingress.add})) or "nothing new"
        closed = ", ".join(sorted({f"{r.cidr} on {r.port}" for r in plan.ingress.remove})) or "nothing"
        found.append(
            PlannedStep(
                key=naming.ALB_SECURITY_GROUP,
                summary=f"ALB security group: allow {opened}, then revoke {closed}",
                kind=Kind.SECURITY_GROUP,
            )
        )
    if plan.target_group:
        after = plan.target_group.after.model_dump()
        changed = ", ".join(f"{field} {after[field]}" for field in plan.target_group.fields)
        found.append(
            PlannedStep(key=naming.TARGET_GROUP, summary=f"Target group: {changed}", kind=Kind.TARGET_GROUP)
        )
    if plan.listener:
        port = plan.listener.after
        action = f"301 to HTTPS {port}" if port is not None else "forward to the target group"
        found.append(
            PlannedStep(
                key=naming.listener(spec.load_balancer.listener_port),
                summary=f"HTTP listener: {action}",
                kind=Kind.LISTENER,
            )
        )
    if plan.ssl_policy and spec.https:
        found.append(
            PlannedStep(
                key=naming.listener(spec.https.port),
                summary=f"HTTPS listener: TLS policy {plan.ssl_policy.after}",
                kind=Kind.LISTENER,
            )
        )
    if plan.needs_preflight:
        found.append(PlannedStep(key=PREFLIGHT, summary="Check the account against the spec"))
    if plan.nat:
        found += nat_steps(plan.nat)
    itype = spec.instances.instance_type
    if plan.scale_in:
        names = ", ".join(i.name for i in plan.scale_in)
        found.append(PlannedStep(key=drain_step(SCALE_IN), summary=f"Deregister and drain {names}"))

    def phase(key: str, launches: list[Launch], retire: list[LiveInstance]) -> None:
        found.extend(
            PlannedStep(
                key=launch.name,
                summary=f"{itype} instance in {launch.availability_zone}, until running",
                kind=Kind.INSTANCE,
            )
            for launch in launches
        )
        found.append(
            PlannedStep(
                key=register_step(key), summary=f"Register the {key} instances", kind=Kind.TARGET_REGISTRATION
            )
        )
        found.append(
            PlannedStep(key=healthy_step(key), summary=f"Wait until the {key} instances are healthy")
        )
        if retire:
            names = ", ".join(i.name for i in retire)
            found.append(PlannedStep(key=drain_step(key), summary=f"Deregister and drain {names}"))

    if plan.scale_out:
        phase(SCALE_OUT, plan.scale_out, [])
    for batch in plan.batches:
        phase(batch.key, batch.launch, batch.retire)
    if plan.retiring:
        names = ", ".join(i.name for i in plan.retiring)
        found.append(PlannedStep(key=RETIRE, summary=f"Terminate the drained {names}"))
    if plan.nat:
        found += nat_retire_steps(plan.nat)
    return found


def nat_steps(switch: NatSwitch) -> list[PlannedStep]:
    found = [step for az in switch.create_nats for step in nat_gateway_steps(az)]
    found += [
        PlannedStep(
            key=table.name,
            summary=f"Route table 0.0.0.0/0 -> the NAT in {table.nat_zone}, serving no subnet yet",
            kind=Kind.ROUTE_TABLE,
        )
        for table in switch.create_tables
    ]
    found += [
        PlannedStep(
            key=move_step(move.availability_zone),
            summary=f"Move the private subnet in {move.availability_zone} to {move.to_table}",
        )
        for move in switch.moves
    ]
    return found


def nat_retire_steps(switch: NatSwitch) -> list[PlannedStep]:
    found = [
        PlannedStep(key=retire_step(name), summary=f"Delete the route table {name}, serving no subnet now")
        for name in switch.delete_tables
    ]
    for az in switch.delete_nats:
        found += [
            PlannedStep(
                key=retire_step(naming.nat_gateway(az)),
                summary=f"Delete the NAT gateway in {az}, no table routes to it now",
            ),
            PlannedStep(key=retire_step(naming.elastic_ip(az)), summary=f"Release the NAT address in {az}"),
        ]
    return found


class ConvergeResult(Frozen):
    instance_ids: dict[str, str] = Field(description="The fleet now: logical name -> instance id.")
    launched: list[str] = Field(description="Logical names this converge launched.")
    terminated: list[str] = Field(description="Instance ids it drained and terminated.")
    updated: list[str] = Field(
        default_factory=list, description="Logical names of the resources it changed in place."
    )
    nat_gateway_ids: dict[str, str] = Field(
        default_factory=dict, description="After a NAT mode switch: AZ -> NAT gateway; empty: unchanged."
    )
    elastic_ip_allocation_ids: dict[str, str] = Field(
        default_factory=dict,
        description="After a NAT mode switch: AZ -> its NAT's address; empty: unchanged.",
    )
    route_table_ids: dict[str, str] = Field(
        default_factory=dict,
        description="After a NAT mode switch: AZ -> the route table its private subnet uses; empty: "
        "unchanged.",
    )


class DrainInput(DeleteInput):
    """Take exactly these instances (`ids`) out of the target group and wait until they are drained."""

    target_group_arn: str
    port: int
