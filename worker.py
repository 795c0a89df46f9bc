"""The Temporal worker: runs the deployment workflows and their AWS activities.

Temporal settings are the starter's (cli/connection.py, docs/temporal-connection.md): a
temporalio.envconfig profile and TEMPORAL_* variables, TEMPORAL_TASK_QUEUE; AWS through the standard
chain, AWS_ENDPOINT_URL included. Run as many workers as you like on one task queue. SIGINT and
SIGTERM stop it gracefully: running activities get `GRACEFUL_SHUTDOWN` to finish, and whatever is cut
short resumes on the next worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Interceptor, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities import AwsClients, all_activities
from activities.aws_clients import CONCURRENT_CALLS
from cli.connection import connect, load_settings, task_queue
from cli.errors import UserError, run_cli
from workflows import WORKFLOWS

ACTIVITY_THREADS = CONCURRENT_CALLS
"""Most activity time is spent waiting on AWS, so threads are cheap; boto3 clients are shared."""

GRACEFUL_SHUTDOWN = timedelta(seconds=30)

log = logging.getLogger("scaleout.worker")


def build_worker(
    client: Client,
    queue: str,
    aws: AwsClients | None = None,
    threads: int = ACTIVITY_THREADS,
    extra_workflows: Sequence[type] = (),
    *,
    sandboxed: bool = False,
    interceptors: Sequence[Interceptor] = (),
) -> Worker:
    """The worker as tests, benchmarks and `main` build it; `aws` lets them hook the boto3 session,
    `extra_workflows` adds the ones only benchmarks run (the sequential baseline), `interceptors`
    let a benchmark vary how activities are scheduled.

    The product's workflows run without the SDK's sandbox: it re-imports the workflow modules for
    every run and re-enters itself for every payload it converts, a large share of the worker's CPU
    per deployment (docs/benchmarks.md). What it guards against, a workflow calling something
    non-deterministic, the tests catch instead: their in-process workers pass `sandboxed=True`, so
    every path a test drives runs in the sandbox, and the replay tests replay the recorded histories
    through it. (End-to-end tests start worker.py as a user does, unsandboxed.)
    """
    return Worker(
        client,
        task_queue=queue,
        workflows=[*WORKFLOWS, *extra_workflows],
        interceptors=interceptors,
        activities=all_activities(aws or AwsClients()),
        activity_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity"),
        max_concurrent_activities=threads,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        workflow_runner=SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner(),
    )


async def run_worker(aws: AwsClients | None = None) -> None:
    settings = load_settings()
    client = await connect(settings)
    queue = task_queue()
    worker = build_worker(client, queue, aws)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker for task queue %r at %s", queue, settings.describe())
    try:
        async with worker:
            await stop.wait()
            log.info("shutting down: running activities get %s to finish", GRACEFUL_SHUTDOWN)
    except RuntimeError as err:
        if "Worker validation failed" not in str(err):
            raise
        # The server refused the worker (namespace missing, or the credentials may not use it).
        reason = str(err).split(": Status {")[0].removeprefix("Worker validation failed: ")
        raise UserError(
            f"the worker cannot poll at {settings.describe()}: {settings.redact(reason)}. Check "
            "TEMPORAL_NAMESPACE (Temporal Cloud: <namespace>.<account id>) and that the API key or "
            "certificate may use it; see docs/temporal-connection.md."
        ) from None


def main(aws: AwsClients | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_cli(lambda: asyncio.run(run_worker(aws)))


if __name__ == "__main__":
    main()
