"""In-process workers on a fresh task queue, for tests that drive workflows directly."""

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
    worker = build_worker(client, f"tq-{uuid.uuid4()}", aws)
    async with worker:
        yield worker
