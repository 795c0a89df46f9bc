"""What one deployment costs: workflow history (events, bytes, largest event) and AWS API calls.

    .venv/bin/python bench/costs.py [--scale 0.01] [--poll SECONDS]

Two runs under the latency profile, each started as `starter.py up` starts it (search attributes,
memo, summary): a successful deployment, and a full rollback (a permanent error injected at the last
step, the health-check wait, after everything exists). Printed: history events and bytes, the largest
event; API calls by action (counted by a botocore hook); whether each create (and, in the rollback,
each delete) happened exactly once; describe polls per wait (each poll assigned to the wait activity
whose time window and resource it matches), against the most a fixed poll interval allows; the
busiest second per rate bucket and the calls AWS's rate buckets (DESIGN.md section 4) would have
refused, in unscaled time.
Targets: <= 200 events on success, <= 400 with a rollback, no event over 10 KB, each create once,
polls no denser than the poll interval, no call over a rate bucket.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, replace

from _setup import SimulatedAws, bench_worker, scaled_spec, servers, simulated_aws
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory

from models.plan import instance_zones, nat_zones, route_table_zones
from models.progress import Phase
from models.spec import DeploymentSpec
from simulate.calls import Call, throttled
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


def expected_deletes(spec: DeploymentSpec) -> dict[str, int]:
    """Each resource of the spec undone once: the calls a fault-free full rollback must make."""
    subnets, nats = len(spec.private_subnets), len(nat_zones(spec))
    return {
        "ec2.DeleteSubnet": subnets,
        "ec2.ReleaseAddress": nats,
        "ec2.DeleteNatGateway": nats,
        "ec2.DeleteRouteTable": len(route_table_zones(spec)),
        "ec2.DisassociateRouteTable": subnets,
        "ec2.DeleteSecurityGroup": 2,
        "ec2.TerminateInstances": len(instance_zones(spec)),
        "elbv2.DeleteTargetGroup": 1,
        "elbv2.DeleteLoadBalancer": 1,
        "elbv2.DeregisterTargets": 1,
        "elbv2.DeleteListener": 1,
    }


WAITS = {
    "create_nat_gateway": ("ec2.DescribeNatGateways",),
    "delete_nat_gateway": ("ec2.DescribeNatGateways",),
    "launch_instance": ("ec2.DescribeInstanceStatus", "ec2.DescribeInstances"),
    "terminate_instance": ("ec2.DescribeInstances",),
    "create_load_balancer": ("elbv2.DescribeLoadBalancers",),
    "delete_load_balancer": ("elbv2.DescribeLoadBalancers",),
    "wait_targets_healthy": ("elbv2.DescribeTargetHealth",),
}
"""The activities that wait, and the describe calls they poll with (an instance's wait polls with
the shared DescribeInstanceStatus, and with DescribeInstances when it must ask alone)."""


@dataclass
class Window:
    activity: str
    opened: float
    """Scheduled (so every attempt is inside), wall-clock seconds."""
    closed: float


def wait_windows(history: WorkflowHistory) -> list[Window]:
    """When each waiting activity was scheduled and when it completed or failed (server's clock)."""
    opened: dict[int, tuple[str, float]] = {}
    windows = []
    for event in history.events:
        at = event.event_time.seconds + event.event_time.nanos / 1e9
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            opened[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, at)
            continue
        for kind in ("completed", "failed", "timed_out", "canceled"):
            if event.HasField(f"activity_task_{kind}_event_attributes"):
                attributes = getattr(event, f"activity_task_{kind}_event_attributes")
                name, when = opened[attributes.scheduled_event_id]
                if name in WAITS:
                    windows.append(Window(name, when, at))
    return windows


@dataclass
class Wait:
    activity: str
    polls: list[float]


def polls_per_wait(calls: list[Call], windows: list[Window]) -> tuple[list[Wait], int]:
    """Each poll (a describe naming its resource) assigned to a wait: the activity of its describe
    action whose window holds it, and the resources it names (parallel waits of one activity, e.g. two
    instances, poll different ids). Also returns the polls no wait's window holds (should be 0)."""
    waits: dict[tuple[str, tuple[str, ...]], Wait] = {}
    stray = 0
    for call in calls:
        ids = call.polled()
        if ids is None:
            continue
        holding = [w for w in windows if call.name in WAITS[w.activity] and w.opened <= call.at <= w.closed]
        if not holding:
            stray += 1
            continue
        activity = min(holding, key=lambda w: w.closed - w.opened).activity
        waits.setdefault((activity, ids), Wait(activity, [])).polls.append(call.at)
    return list(waits.values()), stray


def busiest_second(calls: list[Call], profile: LatencyProfile) -> dict[str, int]:
    """Most calls of each bucket in any one second of unscaled time."""
    peaks: dict[str, int] = {}
    for bucket in profile.buckets:
        times = sorted(
            c.at / profile.scale
            for c in calls
            if bucket in (c.name, "describe" if profile.is_read(c.action) else "mutating")
        )
        first, peak = 0, 0
        for last, at in enumerate(times):
            while times[first] <= at - 1.0:
                first += 1
            peak = max(peak, last - first + 1)
        peaks[bucket] = peak
    return peaks


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


@dataclass
class Deployment:
    cost: HistoryCost
    history: WorkflowHistory
    calls: list[Call]
    """Dated on the wall clock, like the history's events."""


async def deploy(client: Client, simulated: SimulatedAws, spec: DeploymentSpec, *, fails: bool) -> Deployment:
    to_wall = time.time() - time.monotonic()
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
        calls = [replace(c, at=c.at + to_wall) for c in simulated.counter.calls]
        return Deployment(await history_cost(handle), await handle.fetch_history(), calls)


def print_history(name: str, cost: HistoryCost, limit: int) -> None:
    largest_type, largest_size = cost.largest
    events_ok = "met" if cost.events <= limit else "MISSED"
    size_ok = "met" if largest_size <= EVENT_LIMIT_BYTES else "MISSED"
    print(f"{name}: {cost.events} history events (target <= {limit}: {events_ok}), {cost.bytes} bytes")
    print(f"  largest event {largest_type} {largest_size} bytes (target <= {EVENT_LIMIT_BYTES}: {size_ok})")
    print("  by type: " + ", ".join(f"{t} {n}" for t, n in cost.by_type.most_common()))


def print_calls(
    run: Deployment, profile: LatencyProfile, poll: float, expected: dict[str, int], what: str
) -> None:
    calls = Counter(call.name for call in run.calls)
    print(f"  AWS API calls: {sum(calls.values())}")
    for action, count in sorted(calls.items()):
        print(f"    {action:40s} {count}")
    wrong = {a: (calls.get(a, 0), n) for a, n in expected.items() if calls.get(a, 0) != n}
    verdict = "yes" if not wrong else f"NO: {wrong} (made, expected)"
    print(f"  every {what} exactly once: {verdict}")
    print_polls(run, profile, poll)
    print(f"  busiest second per rate bucket, unscaled time: {busiest_second(run.calls, profile)}")
    refused = throttled(run.calls, profile)
    verdict = "none" if not any(refused.values()) else "SOME"
    print(f"  calls AWS's rate buckets (burst, per s) {profile.buckets} would refuse: {verdict} {refused}")


def print_polls(run: Deployment, profile: LatencyProfile, poll: float) -> None:
    """Polls per wait against the most the poll interval allows: (wait's length / interval) + 1."""
    waits, stray = polls_per_wait(run.calls, wait_windows(run.history))
    real_poll = poll / profile.scale
    print(f"  describe polls per wait (poll interval {real_poll:g} s; times unscaled):")
    total, dense = 0, 0
    for wait in sorted(waits, key=lambda w: w.polls[0]):
        span = (wait.polls[-1] - wait.polls[0]) / profile.scale
        allowed = math.floor(span / real_poll) + 1
        gaps = [(b - a) / profile.scale for a, b in zip(wait.polls, wait.polls[1:], strict=False)]
        closest = f", closest {min(gaps):.2f} s apart" if gaps else ""
        ok = "ok" if len(wait.polls) <= allowed else "DENSER THAN THE INTERVAL"
        print(
            f"    {wait.activity:22s} {len(wait.polls):3d} polls over {span:6.1f} s "
            f"(at most {allowed}{closest}): {ok}"
        )
        total += len(wait.polls)
        dense += len(wait.polls) > allowed
    print(
        f"    {total} polls in {len(waits)} waits; waits polled denser than the interval: {dense}; "
        f"polls outside any wait: {stray}"
    )


async def measure(args: argparse.Namespace, profile: LatencyProfile) -> None:
    poll = scaled_spec(profile, args.poll).timing.poll_interval_seconds
    print(f"profile scale {profile.scale:g}; poll interval {poll:g} s (= {poll / profile.scale:g} s on AWS)")
    async with servers() as running:
        running.reset_aws()
        success = simulated_aws(profile)
        spec = scaled_spec(profile, args.poll)
        run = await deploy(running.client, success, spec, fails=False)
        print_history("successful deployment", run.cost, 200)
        print_calls(run, profile, poll, expected_creates(spec), "create")
        print(f"  not-ready answers seen by the waits: {dict(success.model.held)}")

        running.reset_aws()
        rollback = simulated_aws(profile)
        # The first health poll is the last step; later DescribeTargetHealth calls (the deregistration's
        # own lookup during the rollback) go through.
        InjectedFault("elbv2", "DescribeTargetHealth", occurrences={1}).install(rollback.aws.session)
        spec = scaled_spec(profile, args.poll)
        run = await deploy(running.client, rollback, spec, fails=True)
        print_history("full rollback (failure at the last step)", run.cost, 400)
        print_calls(run, profile, poll, expected_deletes(spec), "delete")
        print(f"  not-ready answers seen during the rollback: {dict(rollback.model.held)}")
    print(f"load average after the run (1/5/15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=None, help="time scale (default: the profile's)")
    parser.add_argument("--poll", type=float, default=None, help="poll interval in scaled seconds")
    args = parser.parse_args()
    asyncio.run(measure(args, load_profile(scale=args.scale)))


if __name__ == "__main__":
    main()
