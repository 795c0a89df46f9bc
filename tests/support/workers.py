"""In-process workers on a fresh task queue, for tests that drive workflows directly.

They run workflows in the SDK's sandbox (worker.py's own worker does not, for CPU), so every path a
test drives fails on a non-deterministic call, not only the recorded histories the replay tests hold.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker

from activities import AwsClients
from worker import build_worker


@asynccontextmanager
async def running_worker(client: Client, aws: AwsClients) -> AsyncIterator[Worker]:
    worker = build_worker(client, f"tq-{uuid.uuid4()}", aws, sandboxed=True)
    async with worker:
        yield worker
