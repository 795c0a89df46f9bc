"""Typed inputs and results of the activities: one model in, one model out, per activity."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.spec import DeploymentSpec, TimingSpec


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Scope(Frozen):
    """Who owns a resource: every lookup and every tag starts here."""

    deployment_id: str
    region: str
    tags: dict[str, str] = Field(default_factory=dict)


class ResourceKey(Frozen):
    """A resource by its logical name; enough to find it again by tags after any crash."""

    scope: Scope
    name: str
    known_new: bool = False
    """Set by the workflow in a create's request when nothing can have made this resource before:
    preflight saw none of the deployment's resources, the run is the first of its chain (not a
    reset) and the step runs for the first time. The create's first attempt then skips its lookup;
    a retry always looks, since the attempt before may have created it and lost the reply."""


def looking_again(request: Any) -> Any:
    """A create's request for its step's next run (after a pause): the run before may have made the
    resource, so the create must look for it (`ResourceKey.known_new` off)."""
    if isinstance(request, ResourceKey):
        return request.model_copy(update={"known_new": False})
    key = getattr(request, "key", None)
    if isinstance(key, ResourceKey) and key.known_new:
        return request.model_copy(update={"key": looking_again(key)})
    return request


POLL_AGE_FRACTION = 0.25
"""A wait polls at most every quarter of its age (never less often than its maximum interval)."""


class Waiting(Frozen):
    """How a wait polls: inside one activity attempt, heartbeating between polls (activities/waits.py)."""

    poll_interval_seconds: float
    timeout_seconds: float
    max_poll_interval_seconds: float | None = None
    """None (runs started before waits slowed down): every poll_interval_seconds."""

    @model_validator(mode="before")
    @classmethod
    def _without_shape(cls, data: Any) -> Any:
        """Requests scheduled before carry `shape: "poll"` (waits had a second, benchmark-only shape);
        an upgraded worker still runs them."""
        if isinstance(data, dict) and "shape" in data:
            return {name: value for name, value in data.items() if name != "shape"}
        return data

    def interval(self, age: float) -> float:
        """Seconds to the next poll of a wait `age` seconds old: short waits keep the poll interval;
        long ones (a NAT gateway's ~2 min, an ALB's ~3) poll less often, so a worker waiting for many
        of them makes fewer calls, and a resource is seen at most about a quarter of its wait late."""
        ceiling = self.max_poll_interval_seconds or self.poll_interval_seconds
        return min(max(age * POLL_AGE_FRACTION, self.poll_interval_seconds), ceiling)


class Kind(StrEnum):
    SUBNET = "subnet"
    ELASTIC_IP = "elastic_ip"
    NAT_GATEWAY = "nat_gateway"
    ROUTE_TABLE = "route_table"
    SECURITY_GROUP = "security_group"
    TARGET_GROUP = "target_group"
    LOAD_BALANCER = "load_balancer"
    LISTENER = "listener"
    INSTANCE = "instance"
    TARGET_REGISTRATION = "target_registration"
    CERTIFICATE = "certificate"
    DNS_RECORD = "dns_record"


class Resource(Frozen):
    """A resource that exists in AWS."""

    kind: Kind
    name: str
    id: str


class PreflightInput(Frozen):
    spec: DeploymentSpec


class PreflightResult(Frozen):
    vpc_id: str
    vpc_cidr: str
    public_subnet_ids: dict[str, str] = Field(description="Public subnet per AZ, for NAT and ALB.")
    ami_id: str
    root_device_name: str | None = Field(
        default=None, description="The AMI's root device, for the encrypted root volume's mapping."
    )
    existing: list[str] | None = Field(
        default=None,
        description="Ids of the deployment's resources that preflight saw (EC2 resources carrying its "
        "tag, its load balancer and target group); None in runs recorded before it looked.",
    )
    hosted_zone_id: str | None = Field(
        default=None,
        description="With `https`: the Route 53 zone that holds the domain (the spec's, or found).",
    )


class SubnetInput(Frozen):
    key: ResourceKey
    vpc_id: str
    cidr: str
    availability_zone: str


class ElasticIp(Frozen):
    allocation_id: str
    public_ip: str


class NatGatewayInput(Frozen):
    key: ResourceKey
    subnet_id: str
    allocation_id: str
    waiting: Waiting


class RouteTableInput(Frozen):
    key: ResourceKey
    vpc_id: str
    nat_gateway_id: str
    subnet_ids: list[str]


class IngressRule(Frozen):
    port: int
    cidr: str | None = None
    source_security_group_id: str | None = None
    description: str


class SecurityGroupInput(Frozen):
    key: ResourceKey
    vpc_id: str
    description: str
    ingress: list[IngressRule]


class TargetGroupSettings(Frozen):
    """What a target group's spec fields decide that can change in place (ModifyTargetGroup and
    ModifyTargetGroupAttributes): the health check and the deregistration delay."""

    health_check_path: str
    health_check_interval_seconds: int = 30
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    deregistration_delay_seconds: int = 30

    @classmethod
    def of(cls, spec: DeploymentSpec) -> TargetGroupSettings:
        app = spec.app
        return cls(
            health_check_path=app.health_check_path,
            health_check_interval_seconds=app.health_check_interval_seconds,
            healthy_threshold=app.healthy_threshold,
            unhealthy_threshold=app.unhealthy_threshold,
            deregistration_delay_seconds=spec.load_balancer.deregistration_delay_seconds,
        )


class TargetGroupInput(Frozen):
    key: ResourceKey
    vpc_id: str
    port: int
    health_check_path: str
    settings: TargetGroupSettings | None = None
    """None (runs recorded before): `health_check_path`, AWS's defaults, a deregistration delay of 30 s."""


class LoadBalancerInput(Frozen):
    key: ResourceKey
    subnet_ids: list[str]
    security_group_id: str
    waiting: Waiting


class LoadBalancer(Frozen):
    arn: str
    dns_name: str
    canonical_hosted_zone_id: str | None = None
    """Route 53 zone of the ALB's DNS name, for an alias record to it; None in runs recorded before."""


class InstanceInput(Frozen):
    key: ResourceKey
    subnet_id: str
    security_group_id: str
    ami_id: str
    instance_type: str
    root_volume_gib: int
    app_port: int
    waiting: Waiting
    root_device_name: str | None = None
    """From preflight; None (runs started before preflight reported it): looked up at launch."""
    app_version: str | None = None
    """Tagged on the instance (`scaleout:app-version`); None (runs started before): no tag."""


class Instance(Frozen):
    instance_id: str
    private_ip: str


class RegisterTargetsInput(Frozen):
    key: ResourceKey
    target_group_arn: str
    instance_ids: list[str]
    port: int


class ListenerInput(Frozen):
    key: ResourceKey
    load_balancer_arn: str
    target_group_arn: str
    port: int
    certificate_arn: str | None = None
    """Set: an HTTPS listener with this certificate and `ssl_policy`; None: HTTP."""
    ssl_policy: str | None = None
    redirect_to_port: int | None = None
    """Set: the listener answers 301 to https on this port instead of forwarding."""
    tags: dict[str, str] = Field(default_factory=dict)
    """Beside the key's own tags (the HTTPS listener names its alias record for `down`)."""


class DnsRecord(Frozen):
    """One Route 53 record, by everything that identifies it; `value` is an alias's target name."""

    zone_id: str
    name: str
    type: str
    value: str

    @property
    def id(self) -> str:
        """The record as one id (progress, rollback, inventory): no part holds a slash."""
        return "/".join((self.zone_id, self.name, self.type, self.value))

    @classmethod
    def parse(cls, record_id: str) -> DnsRecord:
        zone_id, name, type_, value = record_id.split("/")
        return cls(zone_id=zone_id, name=name, type=type_, value=value)


class CertificateInput(Frozen):
    key: ResourceKey
    domain: str
    hosted_zone_id: str


class Certificate(Frozen):
    arn: str
    validation: DnsRecord
    """The CNAME that proves the domain to ACM, in the hosted zone."""


class RecordInput(Frozen):
    key: ResourceKey
    record: DnsRecord
    alias_zone_id: str | None = None
    """Set: an alias record to `record.value` in this Route 53 zone (the ALB's canonical zone)."""


class CertificateIssuedInput(Frozen):
    key: ResourceKey
    certificate_arn: str
    waiting: Waiting


class TargetsHealthyInput(Frozen):
    key: ResourceKey
    target_group_arn: str
    instance_ids: list[str]
    port: int
    waiting: Waiting


class DeleteInput(Frozen):
    """Delete every resource under one logical name, and wait until AWS has let each go."""

    key: ResourceKey
    waiting: Waiting
    ids: list[str] = Field(
        default_factory=list,
        description="Ids the caller knows (a create's result, an inventory): deleted by id, even "
        "while a tag lookup cannot see them yet. Resources found by tag are deleted too.",
    )
    settled_after: datetime | None = Field(
        None,
        description="Until then the resource may be too new for AWS to show it everywhere (eventual "
        "consistency): a lookup that finds nothing, or a NotFound, proves nothing and is asked again. "
        "None: trusted at once.",
    )


class Deleted(Frozen):
    """What a delete removed; `id` is None when there was nothing to remove."""

    kind: Kind
    name: str
    id: str | None = None
    """Comma-separated when there were several (a twin)."""

    @classmethod
    def of(cls, kind: Kind, name: str, ids: list[str]) -> Deleted:
        return cls(kind=kind, name=name, id=",".join(ids) or None)


class Inventory(Frozen):
    """Every resource tagged with a deployment id, as teardown finds it."""

    resources: list[Resource]


class DeploymentOutputs(Frozen):
    """What a finished deployment hands its user: the address and every resource id.

    A contract, like a Terraform module's outputs (`starter.py outputs`, `up --json`): every field is
    described (README's outputs reference is generated from these descriptions), and every per-AZ map
    is keyed by availability zone.
    """

    deployment_id: str = Field(description="The spec's `deployment_id`; every resource carries it as a tag.")
    region: str = Field(description="AWS region of every resource.")
    alb_dns_name: str = Field(description="DNS name of the Application Load Balancer.")
    url: str = Field(
        description="Where the app answers: `http://<alb_dns_name>`, with the listener port if not 80; "
        "with `https`: `https://<domain>`, with the HTTPS port if not 443."
    )
    vpc_id: str = Field(description="VPC of the deployment (the default VPC unless the spec names one).")
    ami_id: str = Field(description="AMI the instances run (the spec's, or the one its SSM parameter named).")
    private_subnet_ids: dict[str, str] = Field(
        description="AZ -> the private subnet created there for the instances."
    )
    public_subnet_ids: dict[str, str] = Field(
        description="AZ -> the VPC's existing public subnet that the ALB (and the NAT gateway) use; not "
        "created by the deployment."
    )
    elastic_ip_allocation_ids: dict[str, str] = Field(
        description="AZ -> allocation id of the NAT gateway's Elastic IP there (only the first AZ with "
        "`nat_mode: single`)."
    )
    nat_gateway_ids: dict[str, str] = Field(
        description="AZ -> the NAT gateway in that AZ's public subnet (only the first AZ with "
        "`nat_mode: single`)."
    )
    route_table_ids: dict[str, str] = Field(
        description="AZ -> the route table its private subnet uses (default route to a NAT gateway); with "
        "`nat_mode: single` every AZ maps to the one shared table."
    )
    alb_security_group_id: str = Field(
        description="Security group of the ALB: the listener port from `allowed_cidr`."
    )
    app_security_group_id: str = Field(
        description="Security group of the instances: the app port from the ALB's group only."
    )
    target_group_arn: str = Field(
        description="Target group of the instances (HTTP, the app port, the health check path)."
    )
    load_balancer_arn: str = Field(description="ARN of the Application Load Balancer.")
    listener_arn: str = Field(
        description="ARN of the ALB's HTTP listener, forwarding to the target group (with `https`: "
        "redirecting to HTTPS, unless `https.redirect_http` is false)."
    )
    domain: str | None = Field(None, description="With `https`: the name the app is served at.")
    certificate_arn: str | None = Field(
        None,
        description="With `https`: the ACM certificate of the HTTPS listener (requested, or the spec's).",
    )
    https_listener_arn: str | None = Field(
        None, description="With `https`: ARN of the HTTPS listener, forwarding to the target group."
    )
    instance_ids: dict[str, str] = Field(
        description="Instance logical name (`app-0`, `app-1`, ..., spread round-robin over the AZs) -> "
        "instance id."
    )
    resources: list[Resource] = Field(
        description="Every resource the run created, in creation order: kind, logical name (the "
        "`scaleout:resource` tag) and id."
    )


class TeardownInput(Frozen):
    scope: Scope
    timing: TimingSpec = Field(default_factory=TimingSpec)


class RemainingInput(Frozen):
    scope: Scope
    timing: TimingSpec = Field(default_factory=TimingSpec)


class TeardownResult(Frozen):
    deployment_id: str
    deleted: list[Deleted]
