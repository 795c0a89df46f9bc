"""What a deployment costs while it only waits for its drift checks (issue 15), on a compressed interval.

    .venv/bin/python bench/idle.py [-n 3] [--every 1s] [--window 120] [--idle 15]

A Temporal dev server and a moto server as processes (bench/_processes.py), and `python worker.py`
as its own process, as an operator runs it, so its CPU time is read from /proc. Then, in order:
1. the empty worker's CPU over `--idle` seconds (its floor: polling the task queues);
2. N deployments made through DeploymentWorkflow by `starter.py up`'s update-with-start (search
   attributes included), with `drift.check_every: 1h`: a deployment waiting on its timer. Over `--idle`
   seconds: the worker's CPU against the floor, history events added, and the deployments described
   every second (pending activities, pending workflow task): the worker slots they hold;
3. an `up` of the same spec with `drift: {check_every: --every, on_drift: report}` (an unchanged
   operation), then `--window` seconds of checks: worker CPU, checks done, history events added, runs
   started by continue-as-new (each deployment's chain followed from the run it had at the start), the
   activity types scheduled (only check_drift: nothing writes without `repair`), and the seconds each
   check holds an activity slot and workflow task slots (from the history's started/completed times);
4. one check in this process (an ActivityEnvironment running DriftActivities.check_drift on one of
   the deployments, its boto3 session recorded by tests/support/aws_calls.py): the AWS calls of a check,
   each a Describe/Get/List.
Printed: the figures, and per deployment-day at `drift.check_every`'s default (10 minutes, 144 checks):
history events, runs, worker CPU seconds and AWS calls. Exit 1 when a check made a call that is not
read-only, an activity other than the check ran, or an idle deployment held a slot.

The order (1h first, then the compressed interval) keeps the `up` away from a running check: an
`up` accepted while a scheduled check runs is never answered (after the check, workflows/deployment.py
waits for every handler to finish before continuing as new, and that update's handler waits for an
operation that run will not start). The default window, 120 s, lets each deployment's run reach
MAX_IDLE_EVENTS and continue as new once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import boto3
from _processes import CpuWindow, Stack, memory_mb, stack
from concurrency import ZONES, code_version, free_blocks
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from activities import AwsClients
from cli.commands import Output
from cli.deployment import send_up
from models.deployment import DeploymentState, OperationResult, Outcome, workflow_id
from models.resources import DeploymentOutputs
from models.spec import DeploymentSpec, DriftSpec
from tests.support.aws_calls import ActionRecorder
from tests.support.specs import FAST_TIMING
from tests.test_drift_check import READ_ONLY, check
from workflows.deployment import MAX_IDLE_EVENTS, DeploymentWorkflow

ROOT = Path(__file__).resolve().parents[1]
CHECKS_PER_DAY = timedelta(days=1) / DriftSpec().check_every
"""Checks a deployment-day at the default interval (144 at 10 minutes)."""
WAITING = "1h"
"""check_every while the deployments only wait: no check falls in the idle window."""


# Processes and deployments


def start_worker(running: Stack, log: Path, timeout: float = 60) -> subprocess.Popen:
    """worker.py as a user starts it: the stack's Temporal address and task queue, moto's endpoint and
    dummy credentials (set in this process's environment by the stack)."""
    env = {**os.environ, "TEMPORAL_TASK_QUEUE": running.task_queue}
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    running.worker = worker
    deadline = time.monotonic() + timeout
    while "worker for task queue" not in log.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker.py did not start (log: {log})")
        time.sleep(0.1)
    return worker


def specs(n: int) -> list[DeploymentSpec]:
    """N deployments of the tutorial's defaults, moto-fast timings, subnets that overlap nothing."""
    blocks = free_blocks(n * len(ZONES))
    token = uuid.uuid4().hex[:4]
    return [
        DeploymentSpec.model_validate(
            {
                "deployment_id": f"idle{token}-{i}",
                "timing": FAST_TIMING,
                "private_subnets": [
                    {"cidr": blocks[i * len(ZONES) + z], "availability_zone": zone}
                    for z, zone in enumerate(ZONES)
                ],
                "drift": {"check_every": WAITING, "on_drift": "report"},
            }
        )
        for i in range(n)
    ]


def checking(spec: DeploymentSpec, every: str) -> DeploymentSpec:
    return spec.model_copy(
        update={"drift": DriftSpec.model_validate({"check_every": every, "on_drift": "report"})}
    )


async def up(client: Client, spec: DeploymentSpec) -> OperationResult:
    """`starter.py up`: the `up` update, starting the deployment's workflow if it does not run."""
    state = DeploymentState(deployment_id=spec.deployment_id, region=spec.region)
    update = await send_up(client, spec, state, Output(as_json=True))
    return await update.result()


# History: what a window added to each deployment's chain of runs


@dataclass
class Mark:
    run_id: str
    events: int


async def mark(client: Client, deployment_id: str) -> Mark:
    description = await client.get_workflow_handle(workflow_id(deployment_id)).describe()
    return Mark(description.run_id, description.history_length)


async def added_since(client: Client, deployment_id: str, since: Mark) -> list[list[HistoryEvent]]:
    """The events each run of the chain added after `since`, oldest run first: the chain is followed
    back from the current run by each run's `continued_execution_run_id` (no visibility lag)."""
    wid = workflow_id(deployment_id)
    run_id = (await client.get_workflow_handle(wid).describe()).run_id
    runs: list[list[HistoryEvent]] = []
    while True:
        history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
        if run_id == since.run_id:
            return [[e for e in history.events if e.event_id > since.events], *runs]
        runs.insert(0, list(history.events))
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            raise RuntimeError(f"{wid}: run {since.run_id} is not in the chain")


def at(event: HistoryEvent) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


@dataclass
class Added:
    """What a window's events say, summed over deployments and runs."""

    events: int = 0
    runs_started: int = 0
    types: Counter[str] = field(default_factory=Counter)
    activities: Counter[str] = field(default_factory=Counter)
    activity_held: float = 0.0
    """Seconds between an activity's start and its completion: an activity slot held."""
    workflow_task_held: float = 0.0
    """Seconds between a workflow task's start and its completion: a workflow task slot held."""
    check_gaps: list[float] = field(default_factory=list)
    """Seconds between a deployment's consecutive checks (scheduled to scheduled)."""

    def add(self, runs: list[list[HistoryEvent]]) -> None:
        self.runs_started += len(runs) - 1
        checks: list[float] = []
        for events in runs:
            self.events += len(events)
            started: dict[int, float] = {}
            for e in events:
                self.types[EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")] += 1
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    name = e.activity_task_scheduled_event_attributes.activity_type.name
                    self.activities[name] += 1
                    if name == "check_drift":
                        checks.append(at(e))
                elif e.event_type in (
                    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
                    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                ):
                    started[e.event_id] = at(e)
                elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                    began = started.get(e.activity_task_completed_event_attributes.started_event_id)
                    self.activity_held += at(e) - began if began else 0.0
                elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                    began = started.get(e.workflow_task_completed_event_attributes.started_event_id)
                    self.workflow_task_held += at(e) - began if began else 0.0
        self.check_gaps += [b - a for a, b in zip(checks, checks[1:], strict=False)]

    @property
    def checks(self) -> int:
        return self.activities["check_drift"]


async def window_added(client: Client, marks: dict[str, Mark]) -> Added:
    added = Added()
    for deployment_id, since in marks.items():
        added.add(await added_since(client, deployment_id, since))
    return added


async def checks_per_run(client: Client, deployment_id: str) -> list[int]:
    """Checks in each run of the chain that ended by continue-as-new after checking only."""
    found = []
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id(deployment_id)}'"):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        last = history.events[-1].event_type
        kinds = Counter(
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        )
        children = sum(
            1
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
        )
        if (
            last == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            and not children
            and set(kinds) == {"check_drift"}
        ):
            found.append(kinds["check_drift"])
    return found


# Slots while idle


@dataclass
class Held:
    samples: int = 0
    pending_activities: int = 0
    pending_workflow_tasks: int = 0


async def sample_slots(client: Client, ids: list[str], seconds: float) -> Held:
    """Each deployment described once a second: an activity or workflow task pending would hold a slot."""
    held = Held()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for deployment_id in ids:
            raw = (await client.get_workflow_handle(workflow_id(deployment_id)).describe()).raw_description
            held.samples += 1
            held.pending_activities += len(raw.pending_activities)
            held.pending_workflow_tasks += int(raw.HasField("pending_workflow_task"))
        await asyncio.sleep(1.0)
    return held


# AWS calls of one check


def calls_of_a_check(
    spec: DeploymentSpec, outputs: DeploymentOutputs | None, repetitions: int = 3
) -> list[Counter[str]]:
    """One check at a time in this process, on a session watched from before its first client."""
    recorder = ActionRecorder()
    aws = AwsClients(recorder.watch(boto3.Session()))
    counts = []
    for _ in range(repetitions):
        before = len(recorder.calls)
        report = check(aws, spec, outputs)
        if report.drifted:
            raise SystemExit(f"{spec.deployment_id} drifted: {report.summary()}")
        counts.append(Counter(call.action for call in recorder.calls[before:]))
    return counts


# The run


def per_day(value: float) -> float:
    return value * CHECKS_PER_DAY


@dataclass
class Waiting:
    cpu: CpuWindow
    held: Held
    added: Added


async def waiting(running: Stack, ids: list[str], seconds: float) -> Waiting:
    """The deployments between checks (a WAITING timer): CPU, describes, history added."""
    marks = {i: await mark(running.client, i) for i in ids}
    cpu = CpuWindow(running.pids).start()
    held = await sample_slots(running.client, ids, seconds)
    cpu.stop()
    return Waiting(cpu, held, await window_added(running.client, marks))


async def checking_window(running: Stack, ids: list[str], seconds: float) -> tuple[CpuWindow, Added]:
    marks = {i: await mark(running.client, i) for i in ids}
    cpu = CpuWindow(running.pids).start()
    await asyncio.sleep(seconds)
    cpu.stop()
    return cpu, await window_added(running.client, marks)


async def measure(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    log = Path(tempfile.gettempdir()) / f"bench-idle-worker-{os.getpid()}.log"
    print(f"code: {code_version()}; worker log {log}")
    async with stack() as running:
        client = running.client
        os.environ["TEMPORAL_TASK_QUEUE"] = running.task_queue
        worker = start_worker(running, log)
        await asyncio.sleep(1.0)  # the worker's first polls
        empty = CpuWindow(running.pids).start()
        await asyncio.sleep(args.idle)
        empty.stop()
        rss = [memory_mb(worker.pid)]

        deployments = specs(args.n)
        ids = [spec.deployment_id for spec in deployments]
        started = time.monotonic()
        made = await asyncio.gather(*(up(client, spec) for spec in deployments))
        failed = [r.message for r in made if r.outcome is not Outcome.COMPLETED]
        if failed:
            raise SystemExit(f"a deployment failed: {failed[0]} (worker log: {log})")
        print(f"{args.n} deployments made on moto in {time.monotonic() - started:.1f} s")
        await asyncio.sleep(2.0)  # each run's continue-as-new after its create
        idle = await waiting(running, ids, args.idle)
        rss.append(memory_mb(worker.pid))

        changed = await asyncio.gather(*(up(client, checking(spec, args.every)) for spec in deployments))
        odd = [f"{r.outcome.value}: {r.message}" for r in changed if r.outcome is not Outcome.UNCHANGED]
        if odd:
            raise SystemExit(f"the up to check_every {args.every} was not an unchanged operation: {odd[0]}")
        await asyncio.sleep(2.0)  # the continue-as-new after the up
        window, added = await checking_window(running, ids, args.window)
        rss.append(memory_mb(worker.pid))
        per_run = [n for i in ids for n in await checks_per_run(client, i)]

        entity = client.get_workflow_handle_for(DeploymentWorkflow.run, workflow_id(ids[0]))
        state = (await entity.query(DeploymentWorkflow.status)).state
        assert state.spec is not None
        calls = await asyncio.to_thread(calls_of_a_check, state.spec, state.outputs)
    load_after = os.getloadavg()

    report(args, empty, idle, window, added, per_run, calls)
    print(f"\nworker RSS: empty {rss[0]:.0f} MB, waiting {rss[1]:.0f} MB, checking {rss[2]:.0f} MB "
          "(the deployments' first activities loaded clients and modules)")  # fmt: skip
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; nproc {os.cpu_count()}")
    writes = {a for c in calls for a in c if not read_only(a)}
    others = set(added.activities) - {"check_drift"}
    slots = idle.held.pending_activities + idle.held.pending_workflow_tasks + idle.added.events
    return 1 if writes or others or slots else 0


def report(
    args: argparse.Namespace,
    empty: CpuWindow,
    idle: Waiting,
    window: CpuWindow,
    added: Added,
    per_run: list[int],
    calls: list[Counter[str]],
) -> None:
    n = args.n
    floor = empty.used["worker"] / empty.wall
    print(f"empty worker, {empty.wall:.1f} s: CPU worker {empty.used['worker']:.2f} s, "
          f"Temporal {empty.used['temporal']:.2f} s (/proc counts 10 ms ticks)")  # fmt: skip

    held = idle.held
    print(f"\n{n} deployments waiting on a {WAITING} timer, {idle.cpu.wall:.1f} s:")
    print(f"  CPU worker {idle.cpu.used['worker']:.2f} s, Temporal {idle.cpu.used['temporal']:.2f} s; "
          f"history events added {idle.added.events}")  # fmt: skip
    print(f"  described {held.samples} times: pending activities {held.pending_activities}, "
          f"pending workflow tasks {held.pending_workflow_tasks}")  # fmt: skip
    print(f"  worker slots held while idle: {held.pending_activities + held.pending_workflow_tasks}")

    checks = added.checks
    if not checks:
        print("\nno check ran in the window")
        return
    gaps = sorted(added.check_gaps)
    gap = gaps[len(gaps) // 2] if gaps else float("nan")
    cpu = window.used["worker"]
    net = cpu - floor * window.wall
    print(f"\nchecks every {args.every}, {window.wall:.1f} s: {checks} checks ({checks / n:.1f} each, "
          f"median gap {gap:.2f} s), runs started by continue-as-new {added.runs_started}")  # fmt: skip
    print(f"  activities scheduled: {dict(added.activities)}")
    print(f"  history events {added.events} = {added.events / checks:.2f} per check; by type, per check:")
    print("    " + ", ".join(f"{t} {c / checks:.2f}" for t, c in added.types.most_common()))
    print(f"  slot time per check: activity {added.activity_held * 1000 / checks:.1f} ms, "
          f"workflow tasks {added.workflow_task_held * 1000 / checks:.1f} ms")  # fmt: skip
    print(f"  worker CPU {cpu:.2f} s = {cpu * 1000 / checks:.1f} ms per check "
          f"({net * 1000 / checks:.1f} ms above the empty worker's); by thread: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in window.worker_threads.items()))  # fmt: skip
    print("  other processes per check: " + ", ".join(
        f"{name} {window.used[name] * 1000 / checks:.1f} ms" for name in ("temporal", "moto")
    ) + f"; machine {window.machine_busy:.0%} busy (everyone's)")  # fmt: skip
    if per_run:
        print(f"  checks in each run that continued as new after checks only: {sorted(per_run)}")
        runs_per_check, how = len(per_run) / sum(per_run), "from the checks per finished run"
    else:
        runs_per_check = added.events / checks / MAX_IDLE_EVENTS
        how = f"estimated: no run finished; MAX_IDLE_EVENTS {MAX_IDLE_EVENTS} / events per check"

    actions = calls[0]
    total = sum(actions.values())
    print(f"\nAWS calls of one check (in this process, {len(calls)} checks: "
          f"{[sum(c.values()) for c in calls]}): {total}")  # fmt: skip
    for action, count in sorted(actions.items()):
        flag = "" if read_only(action) else "  <- NOT read-only"
        print(f"  {count:>3} {action}{flag}")

    print(f"\nper deployment-day at check_every {DriftSpec().check_every} ({CHECKS_PER_DAY:g} checks):")
    print(f"  history events {per_day(added.events / checks):.0f}")
    print(f"  runs (continue-as-new) {per_day(runs_per_check):.2f} ({how})")
    print(f"  worker CPU {per_day(net / checks):.2f} s above the empty worker's "
          f"({per_day(cpu / checks):.2f} s gross); Temporal server "
          f"{per_day(window.used['temporal'] / checks):.2f} s")  # fmt: skip
    print(f"  AWS calls {per_day(total):.0f}, every one Describe/Get/List: {all(map(read_only, actions))}")
    print(f"  slots held: activity {per_day(added.activity_held / checks):.1f} s, workflow tasks "
          f"{per_day(added.workflow_task_held / checks):.1f} s; between checks 0 (waiting)")  # fmt: skip


def read_only(action: str) -> bool:
    return action.split(":", 1)[1].startswith(READ_ONLY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="deployments (moto's 5 Elastic IPs: at most 5)")
    parser.add_argument("--every", default="1s", help="drift.check_every in the checking window (default 1s)")
    parser.add_argument("--window", type=float, default=120.0, help="seconds of checks (default 120)")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds of each idle window (default 15)")
    args = parser.parse_args()
    sys.exit(asyncio.run(measure(args)))


if __name__ == "__main__":
    main()
