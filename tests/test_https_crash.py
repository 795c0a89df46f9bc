"""The worker process SIGKILLed while it waits for ACM to issue the certificate: the wait resumes.

Real ACM takes minutes (sometimes far longer) to issue a DNS-validated certificate; the wait is one
heartbeating activity, so a new worker takes it over once the heartbeat timeout has passed, and the
deployment completes with one certificate, two listeners and two records: nothing requested twice.
As tests/test_crashes.py runs them: `starter.py up` and `worker.py` processes on a slow moto.
"""

from __future__ import annotations

import json
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from models.plan import CERTIFICATE_ISSUED
from models.progress import StepState
from tests.support.https import DOMAIN, hosted_zone
from tests.support.inventory import added, inventory
from tests.support.processes import Cli, stop
from tests.support.waiting import eventually
from tests.test_crashes import CRASH_WORKER, TIMING, finish, kill, progress_of

HELD_SECONDS = 5
"""How long DescribeCertificate says PENDING_VALIDATION after moto has issued it (every worker agrees)."""


async def test_worker_killed_during_the_certificate_wait_resumes(client: Client, tmp_path):
    hosted_zone()
    before = inventory()
    cli = Cli(client.service_client.config.target_host, f"crash-{uuid.uuid4()}")
    deployment_id = f"crash-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"deployment_id": deployment_id, "timing": TIMING, "https": {"domain": DOMAIN}})
    )
    env = {
        "SLOW_AWS_DIR": str(tmp_path / "aws-clock"),
        "SLOW_AWS": json.dumps({"certificate_issued": HELD_SECONDS}),
    }
    workers = [cli.worker(CRASH_WORKER, **env)]
    try:
        starter = cli.start("up", "--spec", str(spec), "--json")
        handle = client.get_workflow_handle(f"deploy-{deployment_id}")
        await eventually(
            lambda: progress_of(handle),
            lambda p: p.step(CERTIFICATE_ISSUED).state is StepState.RUNNING,
            timeout=60,
        )
        kill(workers[0])
        workers.append(cli.worker(CRASH_WORKER, **env))
        code, result, stderr = await finish(starter)
    finally:
        for process in workers:
            stop(process)

    assert code == 0 and result["status"] == "COMPLETED", stderr
    created = added(before, inventory())
    assert created["certificates"] == {result["certificate_arn"]}  # one certificate: not requested again
    assert len(created["listeners"]) == 2 and len(created["dns_records"]) == 2
    events = [event async for event in handle.fetch_history_events()]
    wait = next(
        event.event_id
        for event in events
        if event.activity_task_scheduled_event_attributes.activity_type.name == "wait_certificate_issued"
    )
    (attempt,) = [
        event.activity_task_started_event_attributes.attempt
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and event.activity_task_started_event_attributes.scheduled_event_id == wait
    ]
    assert attempt >= 2  # the wait's attempt on the killed worker timed out and another took it over
