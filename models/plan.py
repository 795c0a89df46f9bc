"""The steps a spec turns into, in a stable order: the progress table, the UI and `status` use it.

Each step's key is the logical name of the resource it creates, so a step, its resource, its tag and
its compensation share one name.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from models import naming
from models.resources import Kind, PreflightResult, Resource
from models.spec import DeploymentSpec, NatMode

PREFLIGHT = "preflight"
TARGETS = "targets"
HEALTHY = "healthy"
CERTIFICATE_ISSUED = "certificate-issued"


class PlannedStep(BaseModel):
    key: str
    summary: str
    kind: Kind | None = None


def nat_zones(spec: DeploymentSpec) -> list[str]:
    """AZs that get a NAT gateway: the first only (`single`) or each (`per_az`)."""
    zones = spec.availability_zones
    return zones[:1] if spec.nat_mode is NatMode.SINGLE else zones


def route_table_zones(spec: DeploymentSpec) -> list[str | None]:
    """`None` stands for the one table that every private subnet shares in `single` mode."""
    return [None] if spec.nat_mode is NatMode.SINGLE else list(spec.availability_zones)


def instance_zones(spec: DeploymentSpec) -> list[str]:
    """Instances spread round-robin over the AZs, as the tutorial puts one in each."""
    zones = spec.availability_zones
    return [zones[i % len(zones)] for i in range(spec.instances.count)]


def alb_ports(spec: DeploymentSpec) -> list[int]:
    """The listener ports the ALB's security group opens: HTTP, and HTTPS when on."""
    ports = [spec.load_balancer.listener_port]
    return ports + [spec.https.port] if spec.https else ports


def nat_gateway_steps(availability_zone: str) -> list[PlannedStep]:
    """A NAT gateway's address, then the gateway: a deployment's steps and a converge's NAT switch."""
    return [
        PlannedStep(
            key=naming.elastic_ip(availability_zone),
            summary=f"Elastic IP for the NAT in {availability_zone}",
            kind=Kind.ELASTIC_IP,
        ),
        PlannedStep(
            key=naming.nat_gateway(availability_zone),
            summary=f"NAT gateway in {availability_zone}, until available",
            kind=Kind.NAT_GATEWAY,
        ),
    ]


def plan(spec: DeploymentSpec) -> list[PlannedStep]:
    steps = [PlannedStep(key=PREFLIGHT, summary="Check the account against the spec")]
    for subnet in spec.private_subnets:
        steps.append(
            PlannedStep(
                key=naming.private_subnet(subnet.availability_zone),
                summary=f"Private subnet {subnet.cidr} in {subnet.availability_zone}",
                kind=Kind.SUBNET,
            )
        )
    for az in nat_zones(spec):
        steps += nat_gateway_steps(az)
    for az in route_table_zones(spec):
        where = "every private subnet" if az is None else f"the private subnet in {az}"
        steps.append(
            PlannedStep(
                key=naming.route_table(az),
                summary=f"Route table 0.0.0.0/0 -> NAT for {where}",
                kind=Kind.ROUTE_TABLE,
            )
        )
    steps += [
        PlannedStep(
            key=naming.ALB_SECURITY_GROUP,
            summary="Security group of the ALB: "
            + ("port " if len(alb_ports(spec)) == 1 else "ports ")
            + " and ".join(map(str, alb_ports(spec)))
            + " open",
            kind=Kind.SECURITY_GROUP,
        ),
        PlannedStep(
            key=naming.APP_SECURITY_GROUP,
            summary=f"Security group of the app: port {spec.app.port} from the ALB only",
            kind=Kind.SECURITY_GROUP,
        ),
        PlannedStep(
            key=naming.TARGET_GROUP,
            summary=f"Target group HTTP {spec.app.port}, health check {spec.app.health_check_path}",
            kind=Kind.TARGET_GROUP,
        ),
        PlannedStep(
            key=naming.LOAD_BALANCER,
            summary="Internet-facing Application Load Balancer, until active",
            kind=Kind.LOAD_BALANCER,
        ),
    ]
    for index, az in enumerate(instance_zones(spec)):
        steps.append(
            PlannedStep(
                key=naming.instance(index),
                summary=f"{spec.instances.instance_type} instance in {az}, until running",
                kind=Kind.INSTANCE,
            )
        )
    http_port = spec.load_balancer.listener_port
    redirect = spec.http_redirect_port
    steps += [
        PlannedStep(
            key=TARGETS,
            summary="Register the instances with the target group",
            kind=Kind.TARGET_REGISTRATION,
        ),
        PlannedStep(
            key=naming.listener(http_port),
            summary=f"Listener on port {http_port} -> "
            + (f"301 to HTTPS {redirect}" if redirect is not None else "target group"),
            kind=Kind.LISTENER,
        ),
    ]
    steps += https_steps(spec)
    if spec.wait_for_healthy_targets:
        steps.append(PlannedStep(key=HEALTHY, summary="Wait until every target is healthy"))
    return steps


def https_steps(spec: DeploymentSpec) -> list[PlannedStep]:
    """The certificate (unless the spec brings one), the HTTPS listener and the alias record."""
    https = spec.https
    if https is None:
        return []
    steps = []
    if https.certificate_arn is None:
        steps += [
            PlannedStep(
                key=naming.CERTIFICATE,
                summary=f"ACM certificate for {https.domain}, validated by DNS",
                kind=Kind.CERTIFICATE,
            ),
            PlannedStep(
                key=naming.VALIDATION_RECORD,
                summary="The certificate's validation CNAME in the hosted zone",
                kind=Kind.DNS_RECORD,
            ),
            PlannedStep(key=CERTIFICATE_ISSUED, summary="Wait until ACM has issued the certificate"),
        ]
    return [
        *steps,
        PlannedStep(
            key=naming.listener(https.port),
            summary=f"HTTPS listener on port {https.port} ({https.ssl_policy}) -> target group",
            kind=Kind.LISTENER,
        ),
        PlannedStep(
            key=naming.ALIAS_RECORD,
            summary=f"Alias record {https.domain} (A) -> the load balancer",
            kind=Kind.DNS_RECORD,
        ),
    ]


class PlanReport(BaseModel):
    """What `plan` found in the account: problems (each with its fix) and what already exists."""

    deployment_id: str
    region: str
    problems: list[str]
    preflight: PreflightResult | None = Field(None, description="None when the VPC itself is missing.")
    existing: list[Resource] = Field(default_factory=list, description="Resources tagged as ours.")


class PlannedChange(BaseModel):
    key: str
    summary: str
    kind: Kind
    action: str = Field(description="`create`, or `exists` when a resource of this name is already ours.")
    id: str | None = None


def changes(spec: DeploymentSpec, existing: list[Resource]) -> list[PlannedChange]:
    """Each resource step of the spec, matched by logical name against what the account holds."""
    found = {resource.name: resource.id for resource in existing}
    return [
        PlannedChange(
            key=step.key,
            summary=step.summary,
            kind=step.kind,
            action="exists" if step.key in found else "create",
            id=found.get(step.key),
        )
        for step in plan(spec)
        if step.kind is not None
    ]
