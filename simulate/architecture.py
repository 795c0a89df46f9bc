"""The web tier's steps with their true dependencies, timed with the latency profile.

Declared from DESIGN.md section 1, not read from the workflow, so a benchmark can hold the workflow
against it (bench/dag_vs_sequential.py: the critical-path bound) and a real-AWS run can hold AWS
against it (scripts/aws_smoke.py: each step's real duration next to the model's).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulate.profile import LatencyProfile


@dataclass(frozen=True)
class Step:
    after: tuple[str, ...]
    calls: tuple[str, ...] = ()
    """The calls it must make one after the other (calls per AZ or per instance run in parallel)."""
    waits: tuple[str, ...] = ()
    """Profile states it must wait for; a wait ends with one describe that sees the state."""


# The tutorial's web tier with its true dependencies (DESIGN.md section 1). An instance's launch needs
# only its subnet and security group; `app` is no AWS call: the user data installing Node.js once the
# instance runs, retried until the NAT route gives it egress (activities/user_data.py), so the app's
# boot, not the launch, needs the route.
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
        ("private subnets", "app security group"),
        ("ec2.RunInstances", "ec2.DescribeInstanceStatus"),
        ("instance_running",),
    ),
    "app": Step(("instances", "route table"), (), ("app_listening",)),
    "register targets": Step(("instances", "target group"), ("elbv2.RegisterTargets",)),
    "listener": Step(("load balancer", "target group"), ("elbv2.CreateListener",)),
    "healthy": Step(
        ("app", "register targets", "listener"), ("elbv2.DescribeTargetHealth",), ("target_healthy",)
    ),
}

INVENTORY_CALLS = (
    "ec2.DescribeSubnets",
    "ec2.DescribeAddresses",
    "ec2.DescribeNatGateways",
    "ec2.DescribeRouteTables",
    "ec2.DescribeSecurityGroups",
    "ec2.DescribeInstances",
    "elbv2.DescribeTargetGroups",
    "elbv2.DescribeLoadBalancers",
    "elbv2.DescribeListeners",
)
"""Everything tagged with a deployment, looked up kind by kind (activities/inventory.py)."""

# Teardown deletes kind after kind in the order of workflows/teardown.py's DELETE_ORDER (dependants
# first), the resources of one kind at once; the app's security group goes before the ALB's; then it
# looks once more for anything still tagged.
TEARDOWN: dict[str, Step] = {
    "find resources": Step((), INVENTORY_CALLS),
    "listener": Step(("find resources",), ("elbv2.DeleteListener",)),
    "load balancer": Step(
        ("listener",), ("elbv2.DeleteLoadBalancer", "elbv2.DescribeLoadBalancers"), ("load_balancer_deleted",)
    ),
    "instances": Step(
        ("load balancer",), ("ec2.TerminateInstances", "ec2.DescribeInstances"), ("instance_terminated",)
    ),
    "target group": Step(("instances",), ("elbv2.DeleteTargetGroup",)),
    "security groups": Step(("target group",), ("ec2.DeleteSecurityGroup", "ec2.DeleteSecurityGroup")),
    "route table": Step(("security groups",), ("ec2.DisassociateRouteTable", "ec2.DeleteRouteTable")),
    "nat gateway": Step(
        ("route table",), ("ec2.DeleteNatGateway", "ec2.DescribeNatGateways"), ("nat_gateway_deleted",)
    ),
    "elastic ip": Step(("nat gateway",), ("ec2.ReleaseAddress",)),
    "private subnets": Step(("elastic ip",), ("ec2.DeleteSubnet",)),
    "confirm nothing left": Step(("private subnets",), INVENTORY_CALLS),
}


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


def observed_spans(
    graph: dict[str, Step], profile: LatencyProfile, observed: set[str]
) -> dict[str, tuple[float, float]]:
    """(start, finish) of each observed step, as an observer that sees only those steps would time it.

    A step starts once its last observed predecessor has finished: unobserved steps (the app's boot,
    which no AWS call shows) are folded into the observed steps that wait for them, as the workflow's
    health wait holds the app's boot.
    """
    times = schedule(graph, profile)

    def ready(name: str) -> float:
        return max(
            (times[dep][1] if dep in observed else ready(dep) for dep in graph[name].after), default=0.0
        )

    return {name: (ready(name), times[name][1]) for name in graph if name in observed}
