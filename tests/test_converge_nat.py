"""ConvergeWorkflow switching the NAT mode (single <-> per_az) of a live deployment on moto: new
gateways and tables first, subnets moved one call each, old ones deleted last; egress never cut
(checked after every call the worker makes that changes EC2), and rolled back exactly on failure.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import boto3
import pytest
from temporalio.client import WorkflowFailureError

from models.naming import DEPLOYMENT_TAG
from models.resources import DeploymentOutputs
from models.spec import DeploymentSpec
from tests.support.faults import InjectedFault
from tests.support.inventory import inventory
from tests.support.specs import fast_spec
from tests.test_converge import converge, plan_changes
from tests.test_deploy_workflow import deploy

REGION = "ap-northeast-2"
SEOUL_2A, SEOUL_2C = "ap-northeast-2a", "ap-northeast-2c"


class Egress:
    """After every EC2 call the worker makes that changes something, each private subnet of the
    deployment must be associated with a route table whose default route goes to an `available` NAT
    gateway. Hooked on the worker's session before its first client; armed once the deployment exists."""

    def __init__(self, session: boto3.Session, spec: DeploymentSpec) -> None:
        self._ec2 = boto3.client("ec2", region_name=REGION)
        self._deployment = spec.deployment_id
        self._lock = threading.Lock()
        self.armed = False
        self.checks = 0
        self.cut: list[str] = []
        session.events.register("after-call.ec2", self._after)

    def _after(self, model: Any, **_: Any) -> None:
        if self.armed and not model.name.startswith("Describe"):
            with self._lock:
                self.check(f"after {model.name}")

    def check(self, when: str) -> None:
        self.checks += 1
        owned = [{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [self._deployment]}]
        for subnet in self._ec2.describe_subnets(Filters=owned)["Subnets"]:
            nat = self.nat_of(subnet["SubnetId"])
            state = self._state(nat) if nat else None
            if state != "available":
                self.cut.append(f"{when}: {subnet['AvailabilityZone']} routes to {nat} ({state})")

    def nat_of(self, subnet_id: str) -> str | None:
        filters = [{"Name": "association.subnet-id", "Values": [subnet_id]}]
        for table in self._ec2.describe_route_tables(Filters=filters)["RouteTables"]:
            if not any(a.get("SubnetId") == subnet_id for a in table.get("Associations", [])):
                continue
            for route in table["Routes"]:
                if route.get("DestinationCidrBlock") == "0.0.0.0/0":
                    return route.get("NatGatewayId")
        return None

    def _state(self, nat_id: str) -> str:
        gateways = self._ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"]
        return gateways[0]["State"] if gateways else "missing"


def routing(ec2: Any, out: DeploymentOutputs) -> dict[str, tuple[str, str]]:
    """AZ of each private subnet -> (its route table's logical name, the AZ of the NAT it routes to)."""
    owned = [{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [out.deployment_id]}]
    nats = {
        n["NatGatewayId"]: n["SubnetId"]
        for n in ec2.describe_nat_gateways(Filters=owned)["NatGateways"]
        if n["State"] == "available"
    }
    public = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets()["Subnets"]}
    found = {}
    for az, subnet in out.private_subnet_ids.items():
        filters = [{"Name": "association.subnet-id", "Values": [subnet]}]
        (table,) = ec2.describe_route_tables(Filters=filters)["RouteTables"]
        name = next(t["Value"] for t in table["Tags"] if t["Key"] == "scaleout:resource")
        (nat,) = [r["NatGatewayId"] for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        found[az] = (name, public[nats[nat]])
    return found


def counts(found: dict[str, set[str]]) -> dict[str, int]:
    return {kind: len(ids) for kind, ids in found.items()}


SINGLE = {SEOUL_2A: ("rt-private", SEOUL_2A), SEOUL_2C: ("rt-private", SEOUL_2A)}
PER_AZ = {SEOUL_2A: (f"rt-private-{SEOUL_2A}", SEOUL_2A), SEOUL_2C: (f"rt-private-{SEOUL_2C}", SEOUL_2C)}


async def test_nat_mode_single_to_per_az_and_back_never_cuts_egress(client, worker, aws, ec2):
    spec = fast_spec()
    egress = Egress(aws.session, spec)
    out = await deploy(client, worker, spec)
    deployed = await asyncio.to_thread(inventory)
    assert routing(ec2, out) == SINGLE
    egress.armed = True
    per_az = spec.model_copy(update={"nat_mode": "per_az"})

    wider = await converge(client, worker, per_az)

    assert routing(ec2, out) == PER_AZ
    assert wider.launched == wider.terminated == [] and wider.instance_ids == out.instance_ids
    assert wider.nat_gateway_ids[SEOUL_2A] == out.nat_gateway_ids[SEOUL_2A]  # the first AZ's NAT stays
    assert set(wider.nat_gateway_ids) == set(wider.elastic_ip_allocation_ids) == {SEOUL_2A, SEOUL_2C}
    assert len(set(wider.route_table_ids.values())) == 2
    after = await asyncio.to_thread(inventory)
    assert counts(after) == {
        **counts(deployed),
        "addresses": counts(deployed)["addresses"] + 1,
        "nat_gateways": counts(deployed)["nat_gateways"] + 1,
        "route_tables": counts(deployed)["route_tables"] + 1,  # two per AZ instead of one shared
    }
    assert set(wider.route_table_ids.values()) <= after["route_tables"]
    assert out.route_table_ids[SEOUL_2A] not in after["route_tables"]  # the shared table is gone
    assert await plan_changes(client, worker, per_az) == {}

    back = await converge(client, worker, spec)

    assert routing(ec2, out) == SINGLE
    assert back.nat_gateway_ids == {SEOUL_2A: out.nat_gateway_ids[SEOUL_2A]}
    assert counts(await asyncio.to_thread(inventory)) == counts(deployed)
    assert await plan_changes(client, worker, spec) == {}
    assert egress.checks >= 10 and egress.cut == []
    # Negative control: the check does see a cut (a subnet left on the VPC's main table, no NAT route).
    filters = [{"Name": "association.subnet-id", "Values": [out.private_subnet_ids[SEOUL_2C]]}]
    (association,) = [
        a
        for table in ec2.describe_route_tables(Filters=filters)["RouteTables"]
        for a in table["Associations"]
        if a.get("SubnetId") == out.private_subnet_ids[SEOUL_2C]
    ]
    ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
    egress.check("control")
    assert egress.cut == [f"control: {SEOUL_2C} routes to None (None)"]


async def test_a_failure_mid_switch_moves_the_subnets_back_and_removes_what_it_made(client, worker, aws, ec2):
    spec = fast_spec()
    egress = Egress(aws.session, spec)
    fault = InjectedFault("ec2", "ReplaceRouteTableAssociation", occurrences={2}).install(aws.session)
    out = await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    egress.armed = True

    with pytest.raises(WorkflowFailureError) as failure:
        await converge(client, worker, spec.model_copy(update={"nat_mode": "per_az"}))

    message = failure.value.cause.message
    assert f"route-subnet-private-{SEOUL_2C}" in message and "back on its previous spec" in message, message
    assert fault.failed == 1 and fault.calls == 3  # the first subnet moved, then moved back
    assert routing(ec2, out) == SINGLE
    assert await asyncio.to_thread(inventory) == before
    assert egress.cut == []


@pytest.mark.soak
@pytest.mark.parametrize(
    ("operation", "occurrence"),
    [
        ("AllocateAddress", 1),  # the new NAT's address
        ("CreateNatGateway", 1),
        ("CreateRouteTable", 2),  # the second new table, the first made
        ("ReplaceRouteTableAssociation", 1),  # the first move
    ],
)
async def test_a_permanent_failure_at_each_kind_of_switch_step_restores_everything(
    client, worker, aws, ec2, operation, occurrence
):
    spec = fast_spec()
    egress = Egress(aws.session, spec)
    fault = InjectedFault("ec2", operation, occurrences=set()).install(aws.session)
    out = await deploy(client, worker, spec)
    before = await asyncio.to_thread(inventory)
    fault.occurrences = {fault.calls + occurrence}
    egress.armed = True

    with pytest.raises(WorkflowFailureError) as failure:
        await converge(client, worker, spec.model_copy(update={"nat_mode": "per_az"}))

    assert fault.failed == 1 and "back on its previous spec" in failure.value.cause.message
    assert routing(ec2, out) == SINGLE
    assert await asyncio.to_thread(inventory) == before
    assert egress.cut == []
