"""Many deployments at once on one worker process, under the latency profile.

    .venv/bin/python bench/concurrency.py [-n 50] [--sweep [N ...]] [--scale 0.2] [--poll SECONDS]
        [--wait-shape poll|retry] [--threads T] [--pool P] [--single-polls] [--profile DIR]

Starts a Temporal dev server, a moto server and one worker process (bench/_sim_worker.py: worker.py
with the latency model on its boto3 session), then deploys N tutorial web tiers at once, each with its
own id and its own two private subnets (the largest blocks, /24 when they fit, that overlap nothing in
the default VPC). Printed per batch: completions, failures, p50/p95 deployment time (the server's start
to close), p95 / single, worker CPU seconds per deployment, worker peak RSS, the CPU each process used
(worker, Temporal server, moto, this script) and how busy the whole machine was, and the queueing
inside the worker (schedule-to-start of first attempts and of workflow tasks), so the reader can tell
whether the worker or the machine is the limit; also AWS calls per deployment (polls apart), the
worker's CPU by thread (event loop, SDK core, activity threads) and, from history, activity retries
and the achieved seconds between attempts (the polls of wait shape (b)). `--sweep` runs several N
(default 25 50 100 150 200) and reports the knee: the first N whose p95 passes 2 x a single
deployment or that has failures; a batch still running after `--deadline` x single is terminated
and ends the sweep. Knobs: `--wait-shape` (DESIGN.md section 2: (a) poll inside one attempt, (b) one
check per attempt), `--threads`/`--pool` (activity threads, HTTP connections per boto3 client),
`--single-polls` (every wait polls alone, as before activities/shared_polls.py), `--profile`
(py-spy of the worker; its ptrace stops inflate the worker's CPU and can time heartbeats out, so read
it for shares only).

Targets (issue 6): 0 failures at 50; worker CPU <= 0.15 s per deployment; worker peak RSS <= 200 MB.

Scale: activity retries are at least 1 s apart on the Temporal server (measured: a 50 ms or 200 ms
retry interval, or `next_retry_delay`, gives 1.0 s), so polls cannot be faster than 1 s. The default
scale, 0.2, makes AWS's 5 s poll interval 1 s and a single deployment about 38 s.

Measured (2 cores shared with other sessions, N=50, single 38 s; see the commit that adds this):
- shape (a), worker.py's 32 threads: 0 failed, p95/single 3.44, 0.32 s CPU/deployment, 156 MB.
  Each wait holds a thread for the resource's whole wait (up to 4 per deployment): first attempts
  queued 58 s (p95). With 200-400 threads: p95/single 1.28-1.34, 0.245 s, 168-170 MB.
- shape (b), 32-64 threads: p95/single 1.41-1.60, 0.30-0.31 s; every retry re-runs the activity
  (its find, then the check: two describes a poll) and costs the SDK and the server an activity task;
  under load retries queue behind first attempts and the polls drift apart (median 5 s at N=50,
  40 s at N=100). It scales worse: knee N=75 (slots) against N=100 (moto) for (a).
- polls were most of (a)'s CPU: 64 of 103 calls. Shared polls (activities/shared_polls.py, now the
  product; --single-polls for the former): 13 polls a deployment, 0.187 s. Then, measured one at a
  time on the worker: no sandbox 0.161 s, waits slowing down with age and the region's facts kept
  by preflight 0.146 s; all of it, 3 runs: 0.142, 0.142, 0.145 s (2026-12-01, 45 calls, 12.5 polls),
  and 0.182, 0.186, 0.191 s half an hour later with every process 30% slower (worker / Temporal
  server CPU 1.00-1.14 throughout; 1.78 before these changes).
- creates of a new deployment without their lookups (preflight lists what exists) and shared
  instance polls with DescribeInstanceStatus: 45 -> 33 calls; 6 runs 0.111-0.119 s (2026-12-01,
  worker / Temporal 1.04-1.08), moto 12.7 -> 6.2 s of CPU for the batch.
- past N=75-100 moto was the limit: one Python process at 0.7-0.8 cores, its describe-by-tag
  filters scanning every deployment's resources. Without the lookups, N=100: p95 / single 1.37,
  moto 0.24 cores; the 256 activity threads queue first attempts (5.9 s p95), since every wait
  holds one. N=150: 1.93; knee N=200 (2.29, first attempts queued 25 s, machine 47% busy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
from _processes import CpuWindow, Stack, memory_mb, stack
from _retry_shape import SHAPES, wait_options
from _setup import REGION, scaled_spec
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from cli.commands import Output, start_deployment
from models.resources import Waiting
from models.spec import DeploymentSpec, TimingSpec
from simulate.profile import LatencyProfile, load_profile
from workflows.options import activity_options

POLLS = (
    "ec2.DescribeNatGateways",
    "elbv2.DescribeLoadBalancers",
    "ec2.DescribeInstanceStatus",
    "ec2.DescribeInstances",
    "elbv2.DescribeTargetHealth",
)
"""The describe calls of the waits (the finds before a create use some of them too)."""
GIL_BOUND = 0.6
"""Cores above which a Python process (moto, the worker) counts as saturated: its Python code runs on
one core at a time, and the rest of the second core goes to the other processes."""
ZONES = ("ap-northeast-2a", "ap-northeast-2c")
SWEEP = (25, 50, 100, 150, 200)
GENEROUS = 3600.0
"""Wait timeouts of the bench's specs, scaled seconds: a saturated machine must show as slow, not failed."""


@dataclass
class Batch:
    n: int
    durations: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    window: CpuWindow | None = None
    peak_rss_mb: float = 0.0
    activity_queue: list[float] = field(default_factory=list)
    workflow_task_queue: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    cut_short: int = 0
    """Deployments terminated at the batch's deadline."""
    retries: int = 0
    """Activity attempts after the first (under wait shape (b), the polls)."""
    retry_periods: list[float] = field(default_factory=list)
    """Per retried activity: (completed - scheduled) / (attempts - 1), the achieved poll period."""
    """The worker's AWS calls by action."""

    def p(self, q: float) -> float:
        return percentile(self.durations, q)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# Specs: distinct ids, subnets that overlap nothing


def free_blocks(count: int) -> list[str]:
    """`count` CIDRs of one size inside the default VPC that overlap no existing subnet, /24 if they fit."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    taken = [
        ipaddress.ip_network(s["CidrBlock"])
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    ]
    network = ipaddress.ip_network(vpc["CidrBlock"])
    for prefix in range(24, 29):
        blocks = [b for b in network.subnets(new_prefix=prefix) if not any(b.overlaps(t) for t in taken)]
        if len(blocks) >= count:
            return [str(b) for b in blocks[:count]]
    raise SystemExit(f"the default VPC has no room for {count} private subnets")


def bench_timing(profile: LatencyProfile, poll: float | None) -> dict[str, Any]:
    """_setup's scaled timing, with generous wait timeouts and the product's heartbeat timeout."""
    timing = scaled_spec(profile, poll).timing.model_dump()
    for wait in ("nat_gateway", "load_balancer", "instance", "targets_healthy", "delete"):
        timing[f"{wait}_timeout_seconds"] = GENEROUS
    # The product's heartbeat timeout (30 s), not _setup's 5 s: the SDK sends heartbeats every 0.8 x
    # the timeout, so 5 s leaves 1 s for a loaded event loop and server; on this shared machine other
    # users' load alone then times out waits, and their retries add load until the stack spirals.
    timing["heartbeat_timeout_seconds"] = TimingSpec().heartbeat_timeout_seconds
    return timing


def specs(running: Stack, n: int, profile: LatencyProfile, poll: float | None) -> list[DeploymentSpec]:
    """On an emptied moto (whose first EC2 call, here, sets up the region: about 1 s)."""
    running.reset_aws()
    blocks = free_blocks(n * len(ZONES))
    token = uuid.uuid4().hex[:4]
    timing = bench_timing(profile, poll)
    return [
        scaled_spec(
            profile,
            poll,
            deployment_id=f"c{token}-{i}",
            private_subnets=[
                {"cidr": blocks[i * len(ZONES) + z], "availability_zone": zone}
                for z, zone in enumerate(ZONES)
            ],
            timing=timing,
        )
        for i in range(n)
    ]


# One batch


async def sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], memory_mb(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def start_profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the worker's thread that holds the GIL (Python's CPU) into `out`, collapsed."""
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy, or set PY_SPY to its path")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--gil", "--rate", "100", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(profiler: subprocess.Popen, out: Path) -> None:
    profiler.send_signal(signal.SIGINT)
    profiler.wait(timeout=60)
    print(f"  profile of the worker (py-spy, collapsed stacks): {out}")


async def deploy_all(
    running: Stack,
    batch_specs: list[DeploymentSpec],
    spy_out: Path | None = None,
    deadline: float | None = None,
) -> Batch:
    """Start every deployment at once, wait for all, read their times and histories from the server.

    Past `deadline` seconds the deployments still running are terminated and count as failed: a
    saturated stack (heartbeat timeouts, retries, rollbacks) would otherwise run for an hour."""
    batch = Batch(n=len(batch_specs))
    output = Output(as_json=True)
    assert running.worker is not None
    peak, stop = [0.0], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(running.worker.pid, peak, stop))
    profiler = start_profiler(running.worker.pid, spy_out) if spy_out else None
    running.take_calls()
    window = CpuWindow(running.pids).start()
    handles: list[WorkflowHandle] = await asyncio.gather(
        *(start_deployment(running.client, spec, output) for spec in batch_specs)
    )
    results = [asyncio.ensure_future(h.result()) for h in handles]
    _, pending = await asyncio.wait(results, timeout=deadline)
    if pending:
        batch.cut_short = len(pending)
        for handle, result in zip(handles, results, strict=True):
            if not result.done():
                with contextlib.suppress(RPCError):
                    await handle.terminate(f"the benchmark's batch ran past {deadline:.0f} s")
        await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if not result.cancelled():
            result.exception()  # retrieved: failures are read from the server below
    batch.window = window.stop()
    batch.calls = running.take_calls()
    if profiler is not None and spy_out is not None:
        stop_profiler(profiler, spy_out)
    stop.set()
    await sampler
    batch.peak_rss_mb = peak[0]
    for handle in handles:
        await read_run(handle, batch)
    return batch


async def read_run(handle: WorkflowHandle, batch: Batch) -> None:
    description = await handle.describe()
    if description.status is not WorkflowExecutionStatus.COMPLETED:
        batch.failures.append(f"{handle.id}: {description.status.name if description.status else '?'}")
    elif description.close_time and description.start_time:
        batch.durations.append((description.close_time - description.start_time).total_seconds())
    history = await handle.fetch_history()
    batch.events.append(len(history.events))
    last = history.events[-1]
    if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        message = last.workflow_execution_failed_event_attributes.failure.message
        batch.failures[-1] += f" ({message.splitlines()[0][:300]})"
    scheduled: dict[int, float] = {}
    attempts: dict[int, int] = {}
    for event in history.events:
        at = event.event_time.ToDatetime().timestamp()
        if event.event_type in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        ):
            scheduled[event.event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.attempt == 1:  # later attempts' start times include the retry delays
                batch.activity_queue.append(at - scheduled[started.scheduled_event_id])
            attempts[started.scheduled_event_id] = started.attempt
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes.scheduled_event_id
            if attempts.get(done, 1) > 1:
                # A wait of shape (b): its attempts were its polls, this far apart on average.
                batch.retry_periods.append((at - scheduled[done]) / (attempts[done] - 1))
                batch.retries += attempts[done] - 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started_wft = event.workflow_task_started_event_attributes
            batch.workflow_task_queue.append(at - scheduled[started_wft.scheduled_event_id])


# Reporting


def limit(batch: Batch, single: float, poll: float) -> str:
    """What held the batch back, judged from queueing in the worker and CPU of each process."""
    window = batch.window
    assert window is not None
    activity_wait = percentile(batch.activity_queue, 0.95)
    task_wait = percentile(batch.workflow_task_queue, 0.95)
    if activity_wait > max(1.0, poll):
        return f"worker activity slots (threads): first attempts queued {activity_wait:.1f} s (p95)"
    if task_wait > 1.0:
        return f"worker workflow tasks (its event loop / CPU): tasks queued {task_wait:.1f} s (p95)"
    heaviest = max(("worker", "temporal", "moto"), key=window.cores)
    if batch.failures:
        return (
            f"{len(batch.failures)} failed, {batch.retries / batch.n:.1f} activity retries per deployment "
            f"(worker log: heartbeat or AWS read timeouts); machine {window.machine_busy:.0%} busy, "
            f"largest share: {heaviest}"
        )
    if window.machine_busy > 0.85:
        return f"machine CPU ({window.machine_busy:.0%} busy); largest share: {heaviest}"
    if batch.p(0.95) <= 2 * single:
        return "nothing saturated"
    python = {name: window.cores(name) for name in ("moto", "worker")}
    busiest = max(python, key=python.__getitem__)
    if python[busiest] > GIL_BOUND:
        # One Python process runs Python code on one core at a time (the GIL), threads or not.
        return f"{busiest}: {python[busiest]:.2f} cores, near one Python process's ceiling (the GIL)"
    return f"unclear: no queueing in the worker, machine {window.machine_busy:.0%} busy"


def report(batch: Batch, single: float, poll: float) -> None:
    window = batch.window
    assert window is not None
    done = len(batch.durations)
    cores = ", ".join(
        f"{name} {window.used[name]:.1f} s ({window.cores(name):.2f} cores)" for name in window.used
    )
    print(f"N={batch.n}: {done} completed, {len(batch.failures)} failed, batch wall {window.wall:.1f} s")
    if batch.cut_short:
        print(f"  {batch.cut_short} still running at the batch deadline were terminated (counted as failed)")
    for failure in batch.failures[:5]:
        print(f"  failed: {failure}")
    if done:
        p50, p95 = batch.p(0.5), batch.p(0.95)
        print(
            f"  deployment time p50 {p50:.1f} s, p95 {p95:.1f} s, max {max(batch.durations):.1f} s; "
            f"single {single:.1f} s; p95 / single = {p95 / single:.2f}"
        )
    print(
        f"  worker CPU {window.used['worker'] / batch.n:.3f} s per deployment; worker peak RSS "
        f"{batch.peak_rss_mb:.0f} MB; history {statistics.median(batch.events):.0f} events (median)"
    )
    print(f"  CPU used: {cores}; machine {window.machine_busy:.0%} busy (2 cores, other users included)")
    if window.used.get("temporal"):
        # The server does the same work per deployment whatever the worker does, so this ratio holds
        # still when the machine itself gets slower or faster (measured: both moved 30% together).
        ratio = window.used["worker"] / window.used["temporal"]
        print(f"  worker CPU / Temporal server CPU, same batch: {ratio:.2f}")
    total = sum(batch.calls.values())
    polls = sum(batch.calls.get(action, 0) for action in POLLS)
    print(f"  AWS calls per deployment {total / batch.n:.1f}, of which wait polls {polls / batch.n:.1f}")
    if batch.retries:
        print(
            f"  activity retries per deployment {batch.retries / batch.n:.1f} (shape b: its polls; shape a: "
            f"failed attempts, e.g. heartbeat timeouts); seconds between attempts "
            f"of retried activities: median {statistics.median(batch.retry_periods):.2f}, "
            f"p95 {percentile(batch.retry_periods, 0.95):.2f} (poll interval {poll:g})"
        )
    threads = ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in window.worker_threads.items())
    print(f"  worker CPU by thread: {threads}")
    print(
        f"  queueing in the worker: activity first attempts p95 "
        f"{percentile(batch.activity_queue, 0.95):.2f} s, workflow tasks p95 "
        f"{percentile(batch.workflow_task_queue, 0.95):.2f} s"
    )
    print(f"  limit: {limit(batch, single, poll)}")


def describe_waits(spec: DeploymentSpec, shape: str) -> str:
    wait = Waiting(
        poll_interval_seconds=spec.timing.poll_interval_seconds,
        timeout_seconds=spec.timing.nat_gateway_timeout_seconds,
    )
    options = activity_options(spec.timing, wait)
    if shape == "retry":
        options.update(wait_options(spec.timing, wait))
    parts = []
    for name in ("start_to_close_timeout", "schedule_to_close_timeout", "heartbeat_timeout"):
        value = options.get(name)
        if isinstance(value, timedelta):
            parts.append(f"{name.removesuffix('_timeout')} {value.total_seconds():g} s")
    policy = options["retry_policy"]
    parts.append(
        f"retry every {policy.initial_interval.total_seconds():g} s x{policy.backoff_coefficient:g} up to "
        f"{policy.maximum_interval.total_seconds() if policy.maximum_interval else 0:g} s, "
        f"{policy.maximum_attempts or 'unlimited'} attempts"
    )
    return "; ".join(parts)


# The run


async def single_time(running: Stack, profile: LatencyProfile, poll: float | None, count: int) -> float:
    times = []
    for _ in range(count):
        batch = await deploy_all(running, specs(running, 1, profile, poll))
        if batch.failures:
            raise SystemExit(f"a single deployment failed: {batch.failures[0]}")
        times.append(batch.durations[0])
    listed = ", ".join(f"{t:.1f}" for t in times)
    print(f"single deployment: {listed} s -> median {statistics.median(times):.1f} s")
    return statistics.median(times)


def code_version() -> str:
    """The commit measured, and what of the worker's code differs from it (the work tree is shared)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "activities", "workflows", "models", "simulate", "worker.py")
    changed = ", ".join(line.split(maxsplit=1)[1] for line in dirty.splitlines())  # " M path"
    return f"{git('rev-parse', '--short', 'HEAD')}" + (f" + uncommitted {changed}" if changed else "")


async def measure(args: argparse.Namespace) -> None:
    profile = load_profile(scale=args.scale)
    probe = scaled_spec(profile, args.poll, timing=bench_timing(profile, args.poll))
    poll = probe.timing.poll_interval_seconds
    shape = args.wait_shape
    print(f"code: {code_version()}")
    shared = "; each wait polls alone (--single-polls)" if args.single_polls else ""
    print(f"scale {profile.scale:g}; poll interval {poll:g} s; wait shape {shape} ({SHAPES[shape]}){shared}")
    print(f"  a wait's options: {describe_waits(probe, shape)}")
    log = Path(tempfile.gettempdir()) / f"bench-worker-{os.getpid()}.log"
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    async with stack() as running:
        os.environ["TEMPORAL_TASK_QUEUE"] = running.task_queue
        os.environ["BENCH_CALLS"] = str(log.with_suffix(".calls.json"))
        knobs = {
            "BENCH_THREADS": args.threads,
            "BENCH_POOL": args.pool,
            "BENCH_WAIT_SHAPE": args.wait_shape,
            "BENCH_SINGLE_POLLS": "1" if args.single_polls else None,
        }
        for name, value in knobs.items():
            if value is not None:
                os.environ[name] = str(value)
        running.start_worker(profile.scale, log)
        started = time.monotonic()
        # imports, the workflow sandbox, moto's first calls
        warm = await deploy_all(running, specs(running, 1, profile, poll))
        if warm.failures:
            raise SystemExit(f"the warm-up deployment failed: {warm.failures[0]} (worker log: {log})")
        up = time.monotonic() - started
        print(f"warm-up deployment {warm.durations[0]:.1f} s (worker started {up:.0f} s before)")
        single = await single_time(running, profile, poll, args.singles)
        points = (args.sweep or list(SWEEP)) if args.sweep is not None else [args.n]
        batches = []
        for n in points:
            spy_out = args.profile / f"worker-n{n}.txt" if args.profile else None
            deadline = args.deadline * single
            batch = await deploy_all(running, specs(running, n, profile, poll), spy_out, deadline)
            report(batch, single, poll)
            batches.append(batch)
            if batch.cut_short:
                print(f"  sweep stopped: N={n} did not finish within {args.deadline:g} x single")
                break
        assert running.worker is not None
        lifetime_peak = memory_mb(running.worker.pid, "VmHWM")
        print(f"worker peak RSS over its life (VmHWM): {lifetime_peak:.0f} MB; log {log}")
    if args.sweep is not None:
        knee = next((b for b in batches if b.failures or b.p(0.95) > 2 * single), None)
        if knee is None:
            print(f"knee: none up to N={batches[-1].n} (p95 <= 2 x single = {2 * single:.1f} s, no failures)")
        else:
            print(f"knee: N={knee.n} (p95 {knee.p(0.95):.1f} s > 2 x single {2 * single:.1f} s); "
                  f"limit: {limit(knee, single, poll)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="deployments at once (default 50)")
    parser.add_argument(
        "--sweep", type=int, nargs="*", default=None, help=f"several N (default {' '.join(map(str, SWEEP))})"
    )
    parser.add_argument("--scale", type=float, default=0.2, help="time scale of the profile (default 0.2)")
    parser.add_argument(
        "--poll", type=float, default=None, help="poll interval, scaled seconds (default 5 s x scale)"
    )
    parser.add_argument("--singles", type=int, default=3, help="single deployments for the reference time")
    parser.add_argument("--threads", type=int, default=None, help="worker activity threads (worker.py's)")
    parser.add_argument("--pool", type=int, default=None, help="HTTP connections per boto3 client (10)")
    parser.add_argument(
        "--wait-shape",
        choices=list(SHAPES),
        default="poll",
        help="how waits wait (DESIGN.md section 2): poll, the product's (default), or retry",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=6.0,
        help="terminate a batch's deployments still running after this many single times (default 6)",
    )
    parser.add_argument(
        "--single-polls",
        action="store_true",
        help="each wait polls alone, as before activities/shared_polls.py (for comparison)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="folder for py-spy profiles of batches")
    args = parser.parse_args()
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
