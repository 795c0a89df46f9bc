"""`worker.py` with the latency model on its boto3 session: the worker process the benchmarks measure.

    python bench/_sim_worker.py SCALE

Same environment contract as worker.py (TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE, AWS_ENDPOINT_URL, ...).
It imports only what worker.py imports plus the model, so its CPU time and memory are the worker's.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

import worker  # noqa: E402
from activities import AwsClients  # noqa: E402
from simulate.latency import LatencyModel  # noqa: E402
from simulate.profile import load_profile  # noqa: E402


def main() -> None:
    session = boto3.Session()
    LatencyModel(load_profile(scale=float(sys.argv[1]))).install(session)
    worker.main(AwsClients(session))


if __name__ == "__main__":
    main()
