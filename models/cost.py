"""The standing cost of a deployment, from the spec and the price table in `models.prices`."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from models import prices
from models.live import LiveDeployment
from models.plan import nat_zones
from models.resources import Kind
from models.spec import DeploymentSpec


class CostLine(BaseModel):
    item: str
    quantity: float
    hourly_usd: float | None = Field(description="None when the table has no price for it.")


class CostEstimate(BaseModel):
    lines: list[CostLine]
    hourly_usd: float
    monthly_usd: float
    region: str
    prices_taken: str
    notes: list[str] = Field(default_factory=list)


class Standing(BaseModel):
    """What bills by the hour, whether asked for by a spec or found live."""

    instance_types: list[str]
    root_volume_gib: int
    nat_gateways: int
    elastic_ips: int
    load_balancers: int
    alb_zones: int


def estimate(spec: DeploymentSpec) -> CostEstimate:
    nats = len(nat_zones(spec))
    standing = Standing(
        instance_types=[spec.instances.instance_type] * spec.instances.count,
        root_volume_gib=spec.instances.root_volume_gib,
        nat_gateways=nats,
        elastic_ips=nats,
        load_balancers=1,
        alb_zones=len(spec.availability_zones),
    )
    estimate = estimate_standing(standing, spec.region)
    return with_https(estimate) if spec.https is not None else estimate


def with_https(estimate: CostEstimate) -> CostEstimate:
    """What `https` adds bills nothing by the hour: ACM's public certificates are free, an alias
    record to an ALB is free to query, and the hosted zone is the user's already."""
    lines = [
        CostLine(
            item="ACM public certificate", quantity=1, hourly_usd=prices.HOURLY_USD["acm_public_certificate"]
        ),
        CostLine(
            item="Route 53 alias record to the ALB", quantity=1, hourly_usd=prices.HOURLY_USD["alias_record"]
        ),
    ]
    notes = [
        f"the hosted zone is yours already (about ${prices.HOSTED_ZONE_MONTH_USD:.2f} a month), not counted; "
        "queries of the alias record are free"
    ]
    return estimate.model_copy(
        update={"lines": [*estimate.lines, *lines], "notes": [*estimate.notes, *notes]}
    )


def estimate_live(live: LiveDeployment, root_volume_gib: int) -> CostEstimate:
    """The live deployment's cost; root volumes are taken at `root_volume_gib` (their size is not
    read: the policy grants no DescribeVolumes)."""
    balancers = live.of_kind(Kind.LOAD_BALANCER)
    zones = balancers[0].facts.get("availability_zones", "").split(", ") if balancers else []
    standing = Standing(
        instance_types=[i.facts.get("instance_type", "unknown") for i in live.of_kind(Kind.INSTANCE)],
        root_volume_gib=root_volume_gib,
        nat_gateways=len(live.of_kind(Kind.NAT_GATEWAY)),
        elastic_ips=len(live.of_kind(Kind.ELASTIC_IP)),
        load_balancers=len(balancers),
        alb_zones=len([z for z in zones if z]),
    )
    return estimate_standing(standing, live.region)


def estimate_standing(standing: Standing, region: str) -> CostEstimate:
    types = Counter(standing.instance_types)
    unpriced = sorted(t for t in types if t not in prices.INSTANCE_HOURLY_USD)
    volume_hourly = standing.root_volume_gib * prices.GP3_GIB_MONTH_USD / prices.HOURS_PER_MONTH
    count = len(standing.instance_types)
    lines = [
        CostLine(
            item=f"{instance_type} instance",
            quantity=n,
            hourly_usd=None if instance_type in unpriced else prices.INSTANCE_HOURLY_USD[instance_type] * n,
        )
        for instance_type, n in types.items()
    ]
    addresses = standing.elastic_ips + standing.alb_zones
    lb_hourly = prices.HOURLY_USD["load_balancer"] + prices.HOURLY_USD["load_balancer_lcu"]
    lines += [
        CostLine(
            item=f"gp3 root volume {standing.root_volume_gib} GiB",
            quantity=count,
            hourly_usd=volume_hourly * count,
        ),
        CostLine(
            item="NAT gateway",
            quantity=standing.nat_gateways,
            hourly_usd=prices.HOURLY_USD["nat_gateway"] * standing.nat_gateways,
        ),
        CostLine(
            item="Application Load Balancer (1 LCU)",
            quantity=standing.load_balancers,
            hourly_usd=lb_hourly * standing.load_balancers,
        ),
        CostLine(
            item="public IPv4 addresses (NAT EIPs, ALB per AZ)",
            quantity=addresses,
            hourly_usd=prices.HOURLY_USD["public_ipv4_address"] * addresses,
        ),
    ]
    hourly = sum(line.hourly_usd or 0.0 for line in lines)
    notes = ["traffic-based charges (NAT/ALB data processing, transfer) are not included"]
    for instance_type in unpriced:
        notes.append(f"no price for {instance_type} in the table; the total leaves it out")
    if region != prices.REGION:
        notes.append(f"prices are {prices.REGION}'s; {region} may differ")
    return CostEstimate(
        lines=lines,
        hourly_usd=round(hourly, 4),
        monthly_usd=round(hourly * prices.HOURS_PER_MONTH, 2),
        region=prices.REGION,
        prices_taken=prices.TAKEN,
        notes=notes,
    )
