"""The DAG against the tutorial's sequential console order, under the same latency profile.

    .venv/bin/python bench/dag_vs_sequential.py [--repetitions 5] [--scale 0.01] [--poll SECONDS]

Each repetition deploys once with DeployWorkflow (the DAG) and once with SequentialDeployWorkflow (the
baseline), alternating which goes first, on an emptied moto. Printed: every wall time, the medians,
sequential / DAG, and DAG / critical-path lower bound, where the bound is the longest path through the
architecture's true dependencies (declared below from DESIGN.md section 1, not read from the
workflow) timed with the profile. Targets: DAG <= 1.10 x bound, sequential / DAG >= 1.4.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

from _setup import SimulatedAws, bench_worker, median, scaled_spec, servers, simulated_aws
from _variants import EarlyInstancesDeployWorkflow
from temporalio.client import Client
from temporalio.worker import Worker

from simulate.profile import LatencyProfile, load_profile
from workflows.deploy import DeployWorkflow
from workflows.sequential import SequentialDeployWorkflow


@dataclass(frozen=True)
class Step:
    after: tuple[str, ...]
    calls: tuple[str, ...] = ()
    """The calls it must make one after the other (calls per AZ or per instance run in parallel)."""
    waits: tuple[str, ...] = ()
    """Profile states it must wait for; a wait ends with one describe that sees the state."""


# The tutorial's web tier with its true dependencies (DESIGN.md section 1). `app` is no AWS call: the
# user data installing Node.js through the NAT route once the instance runs.
ARCHITECTURE: dict[str, Step] = {
    "preflight": Step((), ("ec2.DescribeVpcs",)),  # read-only checks, independent of each other
    "private subnets": Step(("preflight",), ("ec2.CreateSubnet",)),
    "elastic ip": Step(("preflight",), ("ec2.AllocateAddress",)),
    "nat gateway": Step(
        ("elastic ip",), ("ec2.CreateNatGateway", "ec2.DescribeNatGateways"), ("nat_gateway_available",)
    ),
    "route table": Step(
        ("private subnets", "nat gateway"),
        ("ec2.CreateRouteTable", "ec2.CreateRoute", "ec2.AssociateRouteTable"),
    ),
    "alb security group": Step(
        ("preflight",), ("ec2.CreateSecurityGroup", "ec2.AuthorizeSecurityGroupIngress")
    ),
    "app security group": Step(
        ("alb security group",), ("ec2.CreateSecurityGroup", "ec2.AuthorizeSecurityGroupIngress")
    ),
    "target group": Step(("preflight",), ("elbv2.CreateTargetGroup",)),
    "load balancer": Step(
        ("alb security group",),
        ("elbv2.CreateLoadBalancer", "elbv2.DescribeLoadBalancers"),
        ("load_balancer_active",),
    ),
    "instances": Step(
        ("private subnets", "app security group", "route table"),
        ("ec2.RunInstances", "ec2.DescribeInstances"),
        ("instance_running",),
    ),
    "app": Step(("instances", "route table"), (), ("app_listening",)),
    "register targets": Step(("instances", "target group"), ("elbv2.RegisterTargets",)),
    "listener": Step(("load balancer", "target group"), ("elbv2.CreateListener",)),
    "healthy": Step(
        ("app", "register targets", "listener"), ("elbv2.DescribeTargetHealth",), ("target_healthy",)
    ),
}

TUTORIAL_ORDER = [
    "preflight",
    "private subnets",
    "elastic ip",
    "nat gateway",
    "route table",
    "alb security group",
    "app security group",
    "instances",
    "target group",
    "register targets",
    "load balancer",
    "listener",
    "healthy",
]
"""The console order of SequentialDeployWorkflow; `app` boots on its own meanwhile."""


def duration(step: Step, profile: LatencyProfile) -> float:
    calls = sum(profile.real_call(*name.split(".")) for name in step.calls)
    return calls + sum(profile.states[state] for state in step.waits)


def schedule(graph: dict[str, Step], profile: LatencyProfile) -> dict[str, tuple[float, float]]:
    """Earliest (start, finish) of every step, real-scale seconds: it starts when its last dependency ends."""
    times: dict[str, tuple[float, float]] = {}

    def visit(name: str) -> tuple[float, float]:
        if name not in times:
            start = max((visit(dep)[1] for dep in graph[name].after), default=0.0)
            times[name] = (start, start + duration(graph[name], profile))
        return times[name]

    for name in graph:
        visit(name)
    return times


def longest_path(graph: dict[str, Step], profile: LatencyProfile) -> tuple[float, list[str]]:
    """Real-scale seconds of the longest path, and the path itself."""
    times = schedule(graph, profile)
    name = max(times, key=lambda n: times[n][1])
    path = [name]
    while graph[name].after:
        name = max(graph[name].after, key=lambda n: times[n][1])
        path.insert(0, name)
    return times[path[-1]][1], path


def in_order(graph: dict[str, Step], order: list[str]) -> dict[str, Step]:
    """The same steps, each also waiting for the one before it in `order`."""
    chained = dict(graph)
    for before, step in zip(order, order[1:], strict=False):
        chained[step] = Step((*graph[step].after, before), graph[step].calls, graph[step].waits)
    return chained


def early_instances(graph: dict[str, Step]) -> dict[str, Step]:
    """Instances launched before the NAT route exists; the app's boot still waits for egress."""
    instances = graph["instances"]
    after = tuple(dep for dep in instances.after if dep != "route table")
    return {**graph, "instances": Step(after, instances.calls, instances.waits)}


MILESTONES = {
    "elastic ip": "ec2.AllocateAddress",
    "nat gateway": "ec2.CreateNatGateway",
    "route table": "ec2.CreateRouteTable",
    "instances": "ec2.RunInstances",
    "listener": "elbv2.CreateListener",
}
"""Steps whose first create call marks where the run stands against the bound's schedule."""


@dataclass
class Run:
    seconds: float
    lags: dict[str, float]
    """Per milestone: how much later than the bound's earliest start its create call went out (s)."""


async def deploy(bench: Bench, workflow: type) -> Run:
    spec = scaled_spec(bench.profile, bench.poll)
    bench.simulated.counter.clear()
    started = time.monotonic()
    await bench.client.execute_workflow(
        workflow.run,
        spec,
        id=f"deploy-{spec.deployment_id}",
        task_queue=bench.worker.task_queue,
    )
    seconds = time.monotonic() - started
    first: dict[str, float] = {}
    for call in bench.simulated.counter.calls:
        first.setdefault(call.name, call.at - started)
    scale = bench.profile.scale
    lags = {step: first[action] - bench.schedule[step][0] * scale for step, action in MILESTONES.items()}
    lags["done"] = seconds - bench.bound * scale
    return Run(seconds, lags)


@dataclass
class Bench:
    client: Client
    worker: Worker
    simulated: SimulatedAws
    profile: LatencyProfile
    poll: float | None
    schedule: dict[str, tuple[float, float]]
    bound: float


async def measure(args: argparse.Namespace, profile: LatencyProfile) -> None:
    bound, path = longest_path(ARCHITECTURE, profile)
    sequential_model, _ = longest_path(in_order(ARCHITECTURE, TUTORIAL_ORDER), profile)
    early, _ = longest_path(early_instances(ARCHITECTURE), profile)
    scale = profile.scale
    poll = scaled_spec(profile, args.poll).timing.poll_interval_seconds
    print(f"profile scale {scale:g}; poll interval {poll:g} s (= {poll / scale:g} s on AWS)")
    print(f"critical-path lower bound (true dependencies): {bound:.1f} s on AWS = {bound * scale:.3f} s here")
    print(f"  {' -> '.join(path)}")
    print(
        f"tutorial order, modelled: {sequential_model:.1f} s on AWS; modelled sequential / bound = "
        f"{sequential_model / bound:.3f}"
    )
    print(
        f"instances launched while the NAT is pending (boot waits for egress), modelled: {early:.1f} s "
        f"({(bound - early) / bound:.1%} below the bound)"
    )

    strategies = {"dag": DeployWorkflow, "sequential": SequentialDeployWorkflow}
    if args.early_instances:
        strategies["early"] = EarlyInstancesDeployWorkflow
    runs: dict[str, list[Run]] = {name: [] for name in strategies}
    async with servers() as running:
        simulated = simulated_aws(profile)
        async with bench_worker(running.client, simulated.aws, [EarlyInstancesDeployWorkflow]) as worker:
            bench = Bench(
                running.client, worker, simulated, profile, args.poll, schedule(ARCHITECTURE, profile), bound
            )
            running.reset_aws()
            await deploy(bench, DeployWorkflow)  # warm-up: moto sets up the region, the sandbox imports
            simulated.model.held.clear()
            for repetition in range(args.repetitions):
                names = list(strategies)
                shift = repetition % len(names)
                for name in names[shift:] + names[:shift]:  # each goes first in turn
                    running.reset_aws()
                    run = await deploy(bench, strategies[name])
                    runs[name].append(run)
                    print(f"  run {repetition + 1} {name:>10}: {run.seconds:.3f} s")

    dag = median([r.seconds for r in runs["dag"]])
    sequential = median([r.seconds for r in runs["sequential"]])
    scaled_bound = bound * scale
    print(f"median DAG {dag:.3f} s, sequential {sequential:.3f} s, bound {scaled_bound:.3f} s")
    ratio, over = sequential / dag, dag / scaled_bound
    print(f"sequential / DAG = {ratio:.3f}  (target >= 1.4: {'met' if ratio >= 1.4 else 'MISSED'})")
    print(f"DAG / bound      = {over:.3f}  (target <= 1.10: {'met' if over <= 1.10 else 'MISSED'})")
    print(f"sequential / its modelled time = {sequential / (sequential_model * scale):.3f}")
    print("DAG lag behind the bound's schedule when each step's create call went out (median, ms;")
    print("  cumulative; includes the find-by-tag describe before each create):")
    steps = [*MILESTONES, "done"]
    print("  " + ", ".join(f"{s} {1000 * median([r.lags[s] for r in runs['dag']]):+.0f}" for s in steps))
    if "early" in runs:
        early_run = median([r.seconds for r in runs["early"]])
        print(
            f"instances launched while the NAT is pending: median {early_run:.3f} s = "
            f"{early_run / dag:.3f} x DAG, {early_run / scaled_bound:.3f} x bound "
            f"(modelled {early / bound:.3f}); sequential / it = {sequential / early_run:.3f}"
        )
    print(f"not-ready answers seen by the waits: {dict(simulated.model.held)}")
    print(f"load average during the run (1/5/15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--scale", type=float, default=None, help="time scale (default: the profile's)")
    parser.add_argument(
        "--early-instances",
        action="store_true",
        help="also measure launching the instances while the NAT gateway is pending",
    )
    parser.add_argument("--poll", type=float, default=None, help="poll interval in scaled seconds")
    args = parser.parse_args()
    asyncio.run(measure(args, load_profile(scale=args.scale)))


if __name__ == "__main__":
    main()
