"""The Temporal worker: runs the deployment workflows and their AWS activities.

Configuration comes from the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE or a
temporalio.envconfig profile; AWS through the standard chain, AWS_ENDPOINT_URL included). SIGINT and
SIGTERM stop it gracefully: running activities get `GRACEFUL_SHUTDOWN` to finish, and whatever is cut
short resumes on the next worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import AwsClients, all_activities
from cli.connection import connect, task_queue
from cli.errors import run_cli
from workflows import WORKFLOWS

ACTIVITY_THREADS = 32
"""Most activity time is spent waiting on AWS, so threads are cheap; boto3 clients are shared."""

GRACEFUL_SHUTDOWN = timedelta(seconds=30)

log = logging.getLogger("scaleout.worker")


def build_worker(
    client: Client, queue: str, aws: AwsClients | None = None, threads: int = ACTIVITY_THREADS
) -> Worker:
    """The worker as tests and `main` both build it; `aws` lets tests hook the boto3 session."""
    return Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=all_activities(aws or AwsClients()),
        activity_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity"),
        max_concurrent_activities=threads,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


async def run_worker(aws: AwsClients | None = None) -> None:
    client = await connect()
    queue = task_queue()
    worker = build_worker(client, queue, aws)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %r at %s", queue, client.service_client.config.target_host)
    async with worker:
        await stop.wait()
        log.info("shutting down: running activities get %s to finish", GRACEFUL_SHUTDOWN)


def main(aws: AwsClients | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_cli(lambda: asyncio.run(run_worker(aws)))


if __name__ == "__main__":
    main()
