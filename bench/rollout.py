"""Zero downtime, measured: a load loop against the local ALB throughout a rolling replacement, a scale
out, a scale in and a NAT mode switch there and back, with the latency model on the worker's AWS calls
and the local data plane serving the ALB (real health checks, draining for the deregistration delay,
apps booting after the profile's `instance_running + app_listening`).

    .venv/bin/python bench/rollout.py [--scale 0.05] [--instances 2] [--batch-size 1]

Deploys `--instances` instances, then converges: a rolling replacement (t2.micro -> t3.micro, in
batches of `--batch-size`), a scale out to twice the count, a scale in back to it, `nat_mode` single ->
per_az -> single. Printed: requests sent and failed (target 0), each operation's wall time against its
bound as a ratio (target <= 1.15), and the history events of each operation's run.

The bound, from the profile (scaled): a batch is boot (`instance_running`) + app start
(`app_listening`) + healthy threshold x interval (registered before its app listens, a new target
fails its first checks) and then the deregistration delay; old instances terminate once, at the
end (`instance_terminated`).
A scale out is one batch without the delay and the termination; a scale in is the delay plus the
termination. A NAT switch to per_az waits for the new NAT gateway (`nat_gateway_available`); back to
single, for the old one's deletion (`nat_gateway_deleted`) before its address is released.
Temporal's round trips and moto's own time are not in the bound (about 0.3 s per operation on this
machine whatever the scale): at small scales they dominate the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from _setup import bench_worker, scaled_spec, servers, simulated_aws

from models.converge import ConvergeInput
from models.live import InspectInput
from models.resources import Scope
from models.spec import DeploymentSpec
from simulate.profile import LatencyProfile, load_profile
from tests.support.dataplane import running_dataplane
from tests.test_dataplane import LoadLoop
from workflows.converge import ConvergeWorkflow
from workflows.deploy import DeployWorkflow
from workflows.plan import InspectWorkflow

DEFAULTS = DeploymentSpec()
HEALTH_CHECK_INTERVAL = float(DEFAULTS.app.health_check_interval_seconds)
HEALTHY_THRESHOLD = DEFAULTS.app.healthy_threshold
"""The target group's health check (the spec's defaults, AWS's; interval in AWS seconds). A new
instance is registered once `running`, before its app listens: its first checks fail, it turns
`unhealthy`, and it needs HEALTHY_THRESHOLD passes in a row once the app is up (as on AWS, and in the
data plane)."""
TARGET_RATIO = 1.15


@dataclass
class Operation:
    name: str
    seconds: float
    bound: float
    events: int


def bounds(profile: LatencyProfile, batches: int) -> dict[str, float]:
    boot = profile.seconds("instance_running") + profile.seconds("app_listening")
    healthy = HEALTHY_THRESHOLD * HEALTH_CHECK_INTERVAL * profile.scale
    drain = float(DEFAULTS.load_balancer.deregistration_delay_seconds) * profile.scale
    terminate = profile.seconds("instance_terminated")
    return {
        "rolling replacement": batches * (boot + healthy + drain) + terminate,
        "scale out": boot + healthy,
        "scale in": drain + terminate,
        "NAT single -> per_az": profile.seconds("nat_gateway_available"),
        "NAT per_az -> single": profile.seconds("nat_gateway_deleted"),
    }


async def converge(client, task_queue: str, spec: DeploymentSpec) -> tuple[float, int]:
    """Read what is live, converge it: the converge's wall time and history length."""
    scope = Scope(deployment_id=spec.deployment_id, region=spec.region)
    live = await client.execute_workflow(
        InspectWorkflow.run,
        InspectInput(scope=scope, timing=spec.timing),
        id=f"inspect-{uuid.uuid4()}",
        task_queue=task_queue,
    )
    workflow_id = f"converge-{spec.deployment_id}-{uuid.uuid4()}"
    started = time.monotonic()
    await client.execute_workflow(
        ConvergeWorkflow.run, ConvergeInput.from_live(spec, live), id=workflow_id, task_queue=task_queue
    )
    seconds = time.monotonic() - started
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return seconds, len(history.events)


def with_instances(spec: DeploymentSpec, **changes: object) -> DeploymentSpec:
    return spec.model_copy(update={"instances": spec.instances.model_copy(update=changes)})


async def measure(args: argparse.Namespace) -> int:
    profile = load_profile(scale=args.scale)
    async with servers() as running:
        running.reset_aws()
        log = Path(tempfile.mkdtemp()) / "dataplane.log"
        plane_args = ("--time-scale", str(args.scale), "--latency-profile")
        with running_dataplane(running.moto_url, log, *plane_args) as plane:
            os.environ["AWS_ENDPOINT_URL"] = plane.url  # the worker reaches moto through the data plane
            simulated = simulated_aws(profile)
            async with bench_worker(running.client, simulated.aws) as worker:
                queue = worker.task_queue
                spec = scaled_spec(
                    profile,
                    args.poll,
                    instances={"count": args.instances},
                    rollout={"batch_size": args.batch_size},
                )
                out = await running.client.execute_workflow(
                    DeployWorkflow.run, spec, id=f"deploy-{uuid.uuid4()}", task_queue=queue
                )
                url = (await asyncio.to_thread(plane.listener, out.alb_dns_name))["url"]
                replaced = with_instances(spec, instance_type="t3.micro")
                batches = math.ceil(args.instances / spec.rollout.batch(args.instances))
                bound = bounds(profile, batches)
                steps = [
                    ("rolling replacement", replaced),
                    ("scale out", with_instances(replaced, count=2 * args.instances)),
                    ("scale in", with_instances(replaced, count=args.instances)),
                ]
                per_az = steps[-1][1].model_copy(update={"nat_mode": "per_az"})
                steps += [("NAT single -> per_az", per_az), ("NAT per_az -> single", steps[-1][1])]
                operations = []
                with LoadLoop(url, limit=10**6) as load:
                    for name, target in steps:
                        seconds, events = await converge(running.client, queue, target)
                        operations.append(Operation(name, seconds, bound[name], events))
    failed = [s for s in load.sent if s.answer.status != 200]
    poll = spec.timing.poll_interval_seconds
    print(f"scale {args.scale}, poll {poll:g} s, {args.instances} instances, batch size {args.batch_size}")
    print(f"requests: {len(load.sent)} sent, {len(failed)} failed (target 0)")
    print(f"{'operation':<22}{'wall s':>8}{'bound s':>9}{'ratio':>7}{'events':>8}")
    for op in operations:
        print(f"{op.name:<22}{op.seconds:>8.2f}{op.bound:>9.2f}{op.seconds / op.bound:>7.2f}{op.events:>8}")
    worst = max(op.seconds / op.bound for op in operations)
    return 0 if not failed and worst <= TARGET_RATIO else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--poll", type=float, default=None, help="poll interval (default: 5 s scaled)")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--batch-size", default="1", help='a count or a percentage ("50%%")')
    args = parser.parse_args()
    if args.batch_size.isdigit():
        args.batch_size = int(args.batch_size)
    sys.exit(asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
