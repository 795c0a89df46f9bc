"""`worker.py` with the latency model on its boto3 session: the worker process the benchmarks measure.

    python bench/_sim_worker.py SCALE

Same environment contract as worker.py (TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE, AWS_ENDPOINT_URL, ...).
It imports only what worker.py imports plus the model, so its CPU time and memory are the worker's.

The simulated account has a raised Elastic IP quota (BENCH_EIP_QUOTA, default 1000): moto reports
AWS's default of 5, and N deployments in one account need N addresses, which preflight checks.
Knobs for experiments, all off by default (then this is worker.py's worker):
- BENCH_THREADS: activity threads (= max_concurrent_activities), default worker.py's;
- BENCH_POOL: urllib3 connections per boto3 client (botocore's default is 10);
- BENCH_CALLS: a file; SIGUSR1 writes the AWS calls made since the last SIGUSR1 there (`Calls`);
- BENCH_SINGLE_POLLS=1: every wait polls alone (activities/shared_polls.py off), for comparison;
- BENCH_WAIT_SHAPE: poll (the product's) or retry (bench/_retry_shape.py), for every wait it runs;
- BENCH_SWITCH_INTERVAL: sys.setswitchinterval, seconds (CPython's default is 0.005).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _retry_shape  # noqa: E402
import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

import worker  # noqa: E402
from activities import AwsClients  # noqa: E402
from activities.shared_polls import SHARED  # noqa: E402
from cli.connection import connect, load_settings, task_queue  # noqa: E402
from simulate.latency import LatencyModel  # noqa: E402
from simulate.profile import load_profile  # noqa: E402

EIP_QUOTA = int(os.environ.get("BENCH_EIP_QUOTA", "1000"))


class PooledClients(AwsClients):
    """AwsClients whose clients keep `pool` HTTP connections (botocore keeps 10 and drops the rest)."""

    def __init__(self, session: boto3.Session, pool: int) -> None:
        super().__init__(session)
        self._pool = pool

    def _config(self, creates: bool) -> Config:
        return super()._config(creates).merge(Config(max_pool_connections=self._pool))


class Calls:
    """AWS calls by action, a counter only (a list of calls would grow the RSS being measured).

    SIGUSR1 writes the counts since the last signal as JSON to BENCH_CALLS and starts again, so the
    benchmark can count the calls of one batch."""

    def __init__(self, out: Path) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def install(self, session: boto3.Session) -> Calls:
        session.events.register("before-parameter-build", self._count)
        return self

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self._counts[f"{model.service_model.service_name}.{model.name}"] += 1

    def dump(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        partial = self._out.with_suffix(".partial")
        partial.write_text(json.dumps(counts))
        partial.replace(self._out)


def raised_quota(parsed: dict[str, Any], **_: Any) -> None:
    for attribute in parsed.get("AccountAttributes", []):
        if attribute.get("AttributeName") == "vpc-max-elastic-ips":
            attribute["AttributeValues"] = [{"AttributeValue": str(EIP_QUOTA)}]


async def run(aws: AwsClients, threads: int, calls: Calls | None, shape: str) -> None:
    client = await connect(load_settings())
    interceptors = [_retry_shape.install()] if shape == "retry" else []
    built = worker.build_worker(client, task_queue(), aws, threads, interceptors=interceptors)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if calls is not None:
        loop.add_signal_handler(signal.SIGUSR1, calls.dump)
    logging.getLogger("scaleout.worker").info(
        "bench worker: %d activity threads, waits %s", threads, _retry_shape.SHAPES[shape]
    )
    async with built:
        await stop.wait()


def main() -> None:
    session = boto3.Session()
    LatencyModel(load_profile(scale=float(sys.argv[1]))).install(session)
    session.events.register("after-call.ec2.DescribeAccountAttributes", raised_quota)
    calls = Calls(Path(os.environ["BENCH_CALLS"])).install(session) if "BENCH_CALLS" in os.environ else None
    pool = os.environ.get("BENCH_POOL")
    aws = PooledClients(session, int(pool)) if pool else AwsClients(session)
    if "BENCH_SWITCH_INTERVAL" in os.environ:
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    threads = int(os.environ.get("BENCH_THREADS", worker.ACTIVITY_THREADS))
    if os.environ.get("BENCH_SINGLE_POLLS") == "1":
        SHARED.resource_id = lambda *_: None  # type: ignore[method-assign]  # no wait shares
    shape = os.environ.get("BENCH_WAIT_SHAPE") or "poll"
    if shape not in _retry_shape.SHAPES:
        raise SystemExit(f"BENCH_WAIT_SHAPE={shape}: one of {', '.join(_retry_shape.SHAPES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(aws, threads, calls, shape))


if __name__ == "__main__":
    main()
