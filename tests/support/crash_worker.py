"""`worker.py` on an AWS that takes its time, optionally failing one call: the process crash tests kill.

Run as `python -m tests.support.crash_worker` with
- SLOW_AWS_DIR: the directory every worker of a test shares (slow_aws.SharedClock),
- SLOW_AWS: JSON {transition name: seconds held, ..., "mutations": reply delay of creates and deletes},
- FAIL_AT (optional): `service.Operation#n`, the n-th such call fails for good (UnauthorizedOperation),
  so that the deployment rolls back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3

import worker
from activities import AwsClients
from tests.support.faults import InjectedFault
from tests.support.slow_aws import SharedClock, delay_mutations, hold_transitions


def configure(session: boto3.Session, environ: dict[str, str]) -> None:
    slow = json.loads(environ.get("SLOW_AWS", "{}"))
    mutations = slow.pop("mutations", 0)
    hold_transitions(session, SharedClock(Path(environ["SLOW_AWS_DIR"])), slow)
    if mutations:
        delay_mutations(session, mutations)
    if fail_at := environ.get("FAIL_AT"):
        call, occurrence = fail_at.split("#")
        service, operation = call.split(".")
        InjectedFault(service, operation, occurrences={int(occurrence)}).install(session)


def main() -> None:
    session = boto3.Session()
    configure(session, dict(os.environ))
    worker.main(AwsClients(session))


if __name__ == "__main__":
    main()
