"""What one deployment costs: workflow history (events, bytes, largest event) and AWS API calls.

    .venv/bin/python bench/costs.py [--scale 0.01] [--poll SECONDS]

Two runs under the latency profile, each started as `starter.py up` starts it (search attributes,
memo, summary): a successful deployment, and a full rollback (a permanent error injected at the last
step, the health-check wait, after everything exists). Printed: history events and bytes, the largest
event; API calls by action (counted by a botocore hook); whether each create happened exactly
once; describe polls per wait; calls AWS's rate buckets would have refused (in unscaled time).
Targets: <= 200 events on success, <= 400 with a rollback, no event over 10 KB, each create once.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass

from _setup import SimulatedAws, bench_worker, scaled_spec, servers, simulated_aws
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from models.plan import instance_zones, nat_zones, route_table_zones
from models.progress import Phase
from models.spec import DeploymentSpec
from simulate.calls import CallCounter, throttled
from simulate.profile import LatencyProfile, load_profile
from tests.support.faults import InjectedFault
from workflows import search_attributes
from workflows.deploy import DeployWorkflow, workflow_id

EVENT_LIMIT_BYTES = 10 * 1024


def expected_creates(spec: DeploymentSpec) -> dict[str, int]:
    """Each resource of the spec once: the calls a fault-free deployment must make exactly so often."""
    subnets, nats = len(spec.private_subnets), len(nat_zones(spec))
    tables = len(route_table_zones(spec))
    return {
        "ec2.CreateSubnet": subnets,
        "ec2.AllocateAddress": nats,
        "ec2.CreateNatGateway": nats,
        "ec2.CreateRouteTable": tables,
        "ec2.CreateRoute": tables,
        "ec2.AssociateRouteTable": subnets,
        "ec2.CreateSecurityGroup": 2,
        "ec2.AuthorizeSecurityGroupIngress": 2,
        "ec2.RunInstances": len(instance_zones(spec)),
        "elbv2.CreateTargetGroup": 1,
        "elbv2.CreateLoadBalancer": 1,
        "elbv2.RegisterTargets": 1,
        "elbv2.CreateListener": 1,
    }


@dataclass
class HistoryCost:
    events: int
    bytes: int
    largest: tuple[str, int]
    by_type: Counter[str]


async def history_cost(handle: WorkflowHandle) -> HistoryCost:
    history = await handle.fetch_history()
    sizes = [(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_"), e.ByteSize()) for e in history.events]
    return HistoryCost(
        events=len(sizes),
        bytes=sum(size for _, size in sizes),
        largest=max(sizes, key=lambda pair: pair[1]),
        by_type=Counter(name for name, _ in sizes),
    )


async def start_like_the_starter(client: Client, spec: DeploymentSpec, queue: str) -> WorkflowHandle:
    """As cli/commands.py starts it: search attributes add an upsert event per phase change."""
    return await client.start_workflow(
        DeployWorkflow.run,
        spec,
        id=workflow_id(spec.deployment_id),
        task_queue=queue,
        memo={"deployment_id": spec.deployment_id, "region": spec.region},
        static_summary=f"Deploy {spec.deployment_id} to {spec.region}",
        static_details=f"Web tier: {spec.instances.count} x {spec.instances.instance_type} behind an ALB",
        search_attributes=search_attributes.at_start(spec.deployment_id, Phase.PREFLIGHT.value),
    )


async def deploy(
    client: Client, simulated: SimulatedAws, spec: DeploymentSpec, *, fails: bool
) -> HistoryCost:
    async with bench_worker(client, simulated.aws) as worker:
        handle = await start_like_the_starter(client, spec, worker.task_queue)
        try:
            await handle.result()
            if fails:
                raise SystemExit("the injected failure did not fail the deployment")
        except WorkflowFailureError as err:
            if not fails:
                raise
            print(f"  failed as injected: {err.cause}")
        return await history_cost(handle)


def print_history(name: str, cost: HistoryCost, limit: int) -> None:
    largest_type, largest_size = cost.largest
    events_ok = "met" if cost.events <= limit else "MISSED"
    size_ok = "met" if largest_size <= EVENT_LIMIT_BYTES else "MISSED"
    print(f"{name}: {cost.events} history events (target <= {limit}: {events_ok}), {cost.bytes} bytes")
    print(f"  largest event {largest_type} {largest_size} bytes (target <= {EVENT_LIMIT_BYTES}: {size_ok})")
    print("  by type: " + ", ".join(f"{t} {n}" for t, n in cost.by_type.most_common()))


def print_calls(counter: CallCounter, profile: LatencyProfile, spec: DeploymentSpec | None) -> None:
    calls = counter.by_action()
    print(f"  AWS API calls: {sum(calls.values())}")
    for action, count in sorted(calls.items()):
        print(f"    {action:40s} {count}")
    if spec is not None:
        wrong = {a: (calls.get(a, 0), n) for a, n in expected_creates(spec).items() if calls.get(a, 0) != n}
        verdict = "yes" if not wrong else f"NO: {wrong} (made, expected)"
        print(f"  every create exactly once: {verdict}")
    polls = counter.polls()
    per_action: dict[str, list[int]] = {}
    for (action, _), count in polls.items():
        per_action.setdefault(action, []).append(count)
    print("  describe polls per wait (each resource waited for):")
    for action, counts in sorted(per_action.items()):
        print(f"    {action:40s} {counts}")
    refused = throttled(counter.calls, profile)
    print(f"  calls AWS's rate buckets would refuse, in unscaled time: {refused}")


async def measure(args: argparse.Namespace, profile: LatencyProfile) -> None:
    poll = scaled_spec(profile, args.poll).timing.poll_interval_seconds
    print(f"profile scale {profile.scale:g}; poll interval {poll:g} s (= {poll / profile.scale:g} s on AWS)")
    async with servers() as running:
        running.reset_aws()
        success = simulated_aws(profile)
        spec = scaled_spec(profile, args.poll)
        cost = await deploy(running.client, success, spec, fails=False)
        print_history("successful deployment", cost, 200)
        print_calls(success.counter, profile, spec)
        print(f"  not-ready answers seen by the waits: {dict(success.model.held)}")

        running.reset_aws()
        rollback = simulated_aws(profile)
        # The first health poll is the last step; later DescribeTargetHealth calls (the deregistration's
        # own lookup during the rollback) go through.
        InjectedFault("elbv2", "DescribeTargetHealth", occurrences={1}).install(rollback.aws.session)
        cost = await deploy(running.client, rollback, scaled_spec(profile, args.poll), fails=True)
        print_history("full rollback (failure at the last step)", cost, 400)
        print_calls(rollback.counter, profile, None)
        print(f"  not-ready answers seen during the rollback: {dict(rollback.model.held)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=None, help="time scale (default: the profile's)")
    parser.add_argument("--poll", type=float, default=None, help="poll interval in scaled seconds")
    args = parser.parse_args()
    asyncio.run(measure(args, load_profile(scale=args.scale)))


if __name__ == "__main__":
    main()
