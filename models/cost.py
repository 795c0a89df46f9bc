"""The standing cost of a deployment, from the spec and the price table in `models.prices`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from models import prices
from models.plan import nat_zones
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


def estimate(spec: DeploymentSpec) -> CostEstimate:
    instances = spec.instances
    nats = len(nat_zones(spec))
    zones = len(spec.availability_zones)
    instance_price = prices.INSTANCE_HOURLY_USD.get(instances.instance_type)
    volume_hourly = instances.root_volume_gib * prices.GP3_GIB_MONTH_USD / prices.HOURS_PER_MONTH
    lines = [
        CostLine(
            item=f"{instances.instance_type} instance",
            quantity=instances.count,
            hourly_usd=None if instance_price is None else instance_price * instances.count,
        ),
        CostLine(
            item=f"gp3 root volume {instances.root_volume_gib} GiB",
            quantity=instances.count,
            hourly_usd=volume_hourly * instances.count,
        ),
        CostLine(item="NAT gateway", quantity=nats, hourly_usd=prices.HOURLY_USD["nat_gateway"] * nats),
        CostLine(
            item="Application Load Balancer (1 LCU)",
            quantity=1,
            hourly_usd=prices.HOURLY_USD["load_balancer"] + prices.HOURLY_USD["load_balancer_lcu"],
        ),
        CostLine(
            item="public IPv4 addresses (NAT EIPs, ALB per AZ)",
            quantity=nats + zones,
            hourly_usd=prices.HOURLY_USD["public_ipv4_address"] * (nats + zones),
        ),
    ]
    hourly = sum(line.hourly_usd or 0.0 for line in lines)
    notes = ["traffic-based charges (NAT/ALB data processing, transfer) are not included"]
    if instance_price is None:
        notes.append(f"no price for {instances.instance_type} in the table; the total leaves it out")
    if spec.region != prices.REGION:
        notes.append(f"prices are {prices.REGION}'s; {spec.region} may differ")
    return CostEstimate(
        lines=lines,
        hourly_usd=round(hourly, 4),
        monthly_usd=round(hourly * prices.HOURS_PER_MONTH, 2),
        region=prices.REGION,
        prices_taken=prices.TAKEN,
        notes=notes,
    )
