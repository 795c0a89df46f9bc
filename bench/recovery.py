"""Recovery: how long a deployment stalls when its worker is SIGKILLed in the middle of a wait.

    .venv/bin/python bench/recovery.py [--repetitions 5] [--heartbeat 5] [--scale 0.2] [--poll SECONDS]

Starts a Temporal dev server, a moto server and a worker process (bench/_sim_worker.py: worker.py with
the latency model on its boto3 session), as a user runs them. Each repetition deploys the tutorial's
web tier as `starter.py up` starts it, waits until the NAT gateway wait is polling (the server has
recorded a heartbeat of `create_nat_gateway`), then after a random part of a heartbeat timeout
SIGKILLs the worker and at once starts a new one. From the run's history, once it has completed:
- resumed: the kill to the start of the wait's next attempt on the new worker (its
  ActivityTaskStarted: attempt, worker identity and the last failure, which must be the heartbeat
  timeout);
- next step: the kill to the start of the step after the wait (the route table), which needs a
  workflow task on the new worker;
- since heartbeat: how long before the kill the server last heard the wait's heartbeat;
and whether any resource exists twice (moto's inventory by the deployment tag).
Printed per repetition and as median / max against the target: resumed <= heartbeat timeout + 5 s.

Measured (2 cores): the wait resumes at the last heartbeat + the heartbeat timeout + about 1.5 s
(Temporal's retry of the timed-out attempt). With a heartbeat timeout under about 10 s the next step
can come 10 s later still: the workflow task after the wait goes to the dead worker's sticky queue and
waits out the SDK's `sticky_queue_schedule_to_start_timeout` (10 s) before any worker may take it;
with the default 30 s the server already counts the dead worker's sticky poller as gone.

The latency model's clocks live in the worker process: the new worker never saw the NAT gateway or the
ALB created, so it finds them as moto has them (ready) and the rest of the run is faster than
modelled. The recovery times do not depend on that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import boto3
from _processes import Stack, stack
from _setup import REGION, scaled_spec
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.client import WorkflowHandle, WorkflowHistory

from cli.commands import Output, start_deployment
from models.naming import DEPLOYMENT_TAG
from models.spec import DeploymentSpec
from simulate.profile import LatencyProfile, load_profile

WAIT = "create_nat_gateway"
NEXT_STEP = "create_private_route_table"
MARGIN = 5.0
"""The target: resumed within the heartbeat timeout + this many seconds."""
GENEROUS = 600.0
"""Wait timeouts of the specs, scaled seconds: a slow machine must show as slow, not failed."""


@dataclass
class Recovery:
    since_heartbeat: float
    resumed: float
    next_step: float
    attempt: int
    new_identity: bool
    last_failure: str
    workflow_task_timeouts: list[str]
    """Workflow tasks that timed out after the kill, by timeout type."""
    duplicates: dict[str, int]


def stamp(timestamp: Timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9


def spec_for(profile: LatencyProfile, heartbeat: float, poll: float | None) -> DeploymentSpec:
    timing = scaled_spec(profile, poll).timing.model_dump()
    timing["heartbeat_timeout_seconds"] = heartbeat
    for wait in ("nat_gateway", "load_balancer", "instance", "targets_healthy", "delete"):
        timing[f"{wait}_timeout_seconds"] = GENEROUS
    return scaled_spec(profile, poll, timing=timing)


async def wait_polling(handle: WorkflowHandle, activity: str) -> float:
    """Until the server has a heartbeat of `activity`; returns that heartbeat's time (wall clock)."""
    while True:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name == activity and pending.HasField("last_heartbeat_time"):
                return stamp(pending.last_heartbeat_time)
        await asyncio.sleep(0.05)


async def last_heartbeat(handle: WorkflowHandle, activity: str) -> float | None:
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name == activity and pending.HasField("last_heartbeat_time"):
            return stamp(pending.last_heartbeat_time)
    return None


def inventory(deployment_id: str) -> Counter[str]:
    """Live resources tagged with the deployment, by kind: each must be there once (instances twice)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    elbv2 = boto3.client("elbv2", region_name=REGION)
    tagged = [{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [deployment_id]}]
    found: Counter[str] = Counter()
    found["subnet"] = len(ec2.describe_subnets(Filters=tagged)["Subnets"])
    found["elastic ip"] = len(ec2.describe_addresses(Filters=tagged)["Addresses"])
    nats = ec2.describe_nat_gateways(Filter=tagged)["NatGateways"]
    found["nat gateway"] = sum(n["State"] not in ("deleted", "deleting") for n in nats)
    found["route table"] = len(ec2.describe_route_tables(Filters=tagged)["RouteTables"])
    found["security group"] = len(ec2.describe_security_groups(Filters=tagged)["SecurityGroups"])
    reservations = ec2.describe_instances(Filters=tagged)["Reservations"]
    found["instance"] = sum(
        i["State"]["Name"] not in ("terminated", "shutting-down")
        for r in reservations
        for i in r["Instances"]
    )
    # moto is emptied before each run: every load balancer and target group there is this run's.
    found["load balancer"] = len(elbv2.describe_load_balancers()["LoadBalancers"])
    found["target group"] = len(elbv2.describe_target_groups()["TargetGroups"])
    return found


def expected_inventory(spec: DeploymentSpec) -> Counter[str]:
    return Counter(
        {
            "subnet": len(spec.private_subnets),
            "elastic ip": 1,
            "nat gateway": 1,
            "route table": 1,
            "security group": 2,
            "instance": spec.instances.count,
            "load balancer": 1,
            "target group": 1,
        }
    )


def read_history(history: WorkflowHistory, killed: float) -> tuple[float, float, int, str, str, list[str]]:
    """(wait resumed, next step started, attempt, identity, last failure, workflow task timeouts)."""
    scheduled: dict[int, str] = {}
    resumed = next_step = float("nan")
    attempt, identity, failure, timeouts = 0, "", "", []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            name = scheduled[started.scheduled_event_id]
            if name == WAIT:
                resumed, attempt, identity = stamp(event.event_time), started.attempt, started.identity
                failure = started.last_failure.message
            elif name == NEXT_STEP:
                next_step = stamp(event.event_time)
        elif (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
            and stamp(event.event_time) > killed
        ):
            kind = event.workflow_task_timed_out_event_attributes.timeout_type
            timeouts.append(TimeoutType.Name(kind).removeprefix("TIMEOUT_TYPE_"))
    return resumed - killed, next_step - killed, attempt, identity, failure, timeouts


async def one_run(running: Stack, profile: LatencyProfile, args: argparse.Namespace, log: Path) -> Recovery:
    running.reset_aws()
    spec = spec_for(profile, args.heartbeat, args.poll)
    assert running.worker is not None
    old_pid = running.worker.pid
    handle = await start_deployment(running.client, spec, Output(as_json=True))
    await wait_polling(handle, WAIT)
    nat_wait = profile.seconds("nat_gateway_available")
    await asyncio.sleep(random.uniform(0, min(args.heartbeat, nat_wait / 2)))
    heard = await last_heartbeat(handle, WAIT)
    killed = time.time()
    running.kill_worker()
    running.start_worker(profile.scale, log)
    await handle.result()
    history = await handle.fetch_history()
    resumed, next_step, attempt, identity, failure, timeouts = read_history(history, killed)
    found, expected = inventory(spec.deployment_id), expected_inventory(spec)
    return Recovery(
        since_heartbeat=killed - heard if heard is not None else float("nan"),
        resumed=resumed,
        next_step=next_step,
        attempt=attempt,
        new_identity=not identity.startswith(f"{old_pid}@"),
        last_failure=failure,
        workflow_task_timeouts=timeouts,
        duplicates={k: found[k] for k in expected if found[k] != expected[k]},
    )


async def measure(args: argparse.Namespace) -> None:
    profile = load_profile(scale=args.scale)
    poll = spec_for(profile, args.heartbeat, args.poll).timing.poll_interval_seconds
    target = args.heartbeat + MARGIN
    print(
        f"scale {profile.scale:g}; poll interval {poll:g} s; heartbeat timeout {args.heartbeat:g} s; "
        f"NAT gateway pending {profile.seconds('nat_gateway_available'):g} s; target: resumed <= {target:g} s"
    )
    log = Path(tempfile.gettempdir()) / f"bench-recovery-worker-{os.getpid()}.log"
    runs: list[Recovery] = []
    async with stack() as running:
        os.environ["TEMPORAL_TASK_QUEUE"] = running.task_queue
        running.start_worker(profile.scale, log)
        for repetition in range(args.repetitions):
            run = await one_run(running, profile, args, log)
            runs.append(run)
            print(
                f"  run {repetition + 1}: heartbeat heard {run.since_heartbeat:.1f} s before the kill; "
                f"resumed {run.resumed:.2f} s after it (attempt {run.attempt}, new worker "
                f"{'yes' if run.new_identity else 'NO'}, after: {run.last_failure or '?'}); next step "
                f"{run.next_step:.2f} s; workflow task timeouts {run.workflow_task_timeouts or 'none'}; "
                f"duplicates {run.duplicates or 'none'}"
            )
    resumed = [r.resumed for r in runs]
    next_steps = [r.next_step for r in runs]
    verdict = "met" if max(resumed) <= target else "MISSED"
    print(
        f"resumed after the kill: median {statistics.median(resumed):.2f} s, max {max(resumed):.2f} s "
        f"(target <= heartbeat timeout + {MARGIN:g} s = {target:g} s: {verdict})"
    )
    print(
        f"next step started after the kill: median {statistics.median(next_steps):.2f} s, "
        f"max {max(next_steps):.2f} s"
    )
    print(f"runs with a duplicate resource: {sum(bool(r.duplicates) for r in runs)} of {len(runs)}")
    print(f"load average after the run (1/5/15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"worker log: {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat timeout, s (default 5)")
    parser.add_argument("--scale", type=float, default=0.2, help="time scale of the profile (default 0.2)")
    parser.add_argument("--poll", type=float, default=None, help="poll interval, scaled seconds")
    args = parser.parse_args()
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
