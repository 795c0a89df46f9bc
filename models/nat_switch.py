"""What switching a live deployment's NAT mode (`single` <-> `per_az`) takes, without ever cutting egress.

Pure: ConvergeWorkflow (workflows/converge.py) runs what this decides. Every private subnet keeps a
default route to an available NAT gateway at every moment:
1. the NAT gateways (and their Elastic IPs) the new mode adds are created and `available` first;
2. the new route tables are created with their default route to them, serving no subnet yet;
3. each subnet moves to its new table in one call (ReplaceRouteTableAssociation: never unassociated);
4. only then, as the converge's last, irreversible steps: the old tables (serving nothing now), then
   the NAT gateways no table routes to, then their addresses.
Until step 4 a rollback moves each subnet back to its old table before deleting what steps 1-2 made.
"""

from __future__ import annotations

from pydantic import Field

from models import naming
from models.live import LiveDeployment
from models.plan import nat_zones, route_table_zones
from models.resources import Frozen, Kind, ResourceKey
from models.spec import DeploymentSpec, NatMode

SUBNET_PREFIX = naming.private_subnet("")
NAT_PREFIX = naming.nat_gateway("")
EIP_PREFIX = naming.elastic_ip("")


class LiveNetwork(Frozen):
    """The deployment's NAT gateways, addresses and private route tables, as InspectWorkflow reads them."""

    vpc_id: str
    nat_gateways: dict[str, str] = Field(description="AZ -> the NAT gateway there.")
    elastic_ips: dict[str, str] = Field(description="AZ -> allocation id of that NAT's address.")
    route_tables: dict[str, str] = Field(description="Logical name -> route table id.")
    subnet_tables: dict[str, str] = Field(
        description="AZ of a private subnet -> the logical name of the route table it is associated with."
    )

    @classmethod
    def from_live(cls, live: LiveDeployment) -> LiveNetwork | None:
        if live.vpc_id is None:
            return None
        subnet_tables = {}
        for table in live.of_kind(Kind.ROUTE_TABLE):
            for subnet in filter(None, table.facts.get("subnets", "").split(", ")):
                subnet_tables[subnet.removeprefix(SUBNET_PREFIX)] = table.name
        return cls(
            vpc_id=live.vpc_id,
            nat_gateways={
                n.name.removeprefix(NAT_PREFIX): n.id
                for n in live.of_kind(Kind.NAT_GATEWAY)
                if n.name.startswith(NAT_PREFIX)
            },
            elastic_ips={
                e.name.removeprefix(EIP_PREFIX): e.id
                for e in live.of_kind(Kind.ELASTIC_IP)
                if e.name.startswith(EIP_PREFIX)
            },
            route_tables={t.name: t.id for t in live.of_kind(Kind.ROUTE_TABLE)},
            subnet_tables=subnet_tables,
        )


class NewTable(Frozen):
    name: str
    nat_zone: str = Field(description="The AZ of the NAT gateway its default route goes to.")


class Move(Frozen):
    """A private subnet moving to another route table in one call."""

    availability_zone: str
    to_table: str
    from_table: str | None = Field(description="Its table before; None: it had none of ours.")


class NatSwitch(Frozen):
    mode: NatMode
    create_nats: list[str] = Field(description="AZs that get a NAT gateway (and its address).")
    create_tables: list[NewTable]
    moves: list[Move]
    delete_tables: list[str] = Field(description="Logical names of the tables no subnet uses afterwards.")
    delete_nats: list[str] = Field(description="AZs whose NAT gateway (and address) no table routes to.")

    @property
    def retires(self) -> bool:
        return bool(self.delete_tables or self.delete_nats)


def table_of(spec: DeploymentSpec, availability_zone: str) -> str:
    """The route table a private subnet uses under the spec's NAT mode."""
    return naming.route_table(None if spec.nat_mode is NatMode.SINGLE else availability_zone)


def nat_switch(spec: DeploymentSpec, network: LiveNetwork | None) -> NatSwitch | None:
    """None when the live NAT gateways and route tables are already as the spec's mode wants."""
    if network is None or not network.nat_gateways:
        return None
    zones = nat_zones(spec)
    tables = [naming.route_table(az) for az in route_table_zones(spec)]
    create_tables = [
        NewTable(name=naming.route_table(az), nat_zone=az or zones[0])
        for az in route_table_zones(spec)
        if naming.route_table(az) not in network.route_tables
    ]
    moves = [
        Move(availability_zone=az, to_table=table_of(spec, az), from_table=network.subnet_tables.get(az))
        for az in spec.availability_zones
        if network.subnet_tables.get(az) != table_of(spec, az)
    ]
    switch = NatSwitch(
        mode=spec.nat_mode,
        create_nats=[az for az in zones if az not in network.nat_gateways],
        create_tables=create_tables,
        moves=moves,
        delete_tables=sorted(name for name in network.route_tables if name not in tables),
        delete_nats=sorted(az for az in network.nat_gateways if az not in zones),
    )
    changes = (
        switch.create_nats,
        switch.create_tables,
        switch.moves,
        switch.delete_tables,
        switch.delete_nats,
    )
    return switch if any(changes) else None


def move_step(availability_zone: str) -> str:
    return f"route-{naming.private_subnet(availability_zone)}"


def retire_step(name: str) -> str:
    return f"retire-{name}"


class RouteTableSwitchInput(Frozen):
    """Associate the subnet with the table: ReplaceRouteTableAssociation if it has another, so it is
    never without one."""

    key: ResourceKey
    subnet_id: str
    route_table_id: str
