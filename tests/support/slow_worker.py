"""`worker.py` with AWS as slow as the real one at the NAT gateway: for end-to-end tests only.

Run as `python -m tests.support.slow_worker`; SLOW_NAT_SECONDS sets how long NATs stay pending.
"""

from __future__ import annotations

import os

import boto3

import worker
from activities import AwsClients
from tests.support.faults import slow_nat_gateways


def main() -> None:
    session = boto3.Session()
    slow_nat_gateways(session, float(os.environ.get("SLOW_NAT_SECONDS", "5")))
    worker.main(AwsClients(session))


if __name__ == "__main__":
    main()
