"""The one place that builds boto3 clients: region, endpoint override, retry mode, timeouts.

Two flavours per service. Reads and deletes retry inside botocore (standard mode). Calls that create
something get a client with botocore retries off: a create whose reply was lost must not be re-sent
blindly (it would make a twin or fail as a duplicate); the activity's own retry looks the resource up
by its tags first. Clients are thread-safe and shared; sessions are not, so one session builds them all
under a lock. `AWS_ENDPOINT_URL` (moto in the demo and tests) is honoured by botocore itself.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

USER_AGENT = "scaleout/0.1"
CONCURRENT_CALLS = 256
"""The worker's activity threads, and so each client's connection pool: a wait holds its thread (and
at times a connection) for its whole length, up to four waits per deployment. Threads only start when
needed. Measured (bench/concurrency.py, 50 deployments at once): 32 threads queued first attempts for
about a minute (p95 3.4 x a single deployment); 200-400 threads none (p95 1.3 x), RSS 170 MB."""


class AwsClients:
    """Lazily built, cached clients per (service, region, purpose)."""

    def __init__(self, session: boto3.Session | None = None, retry_mode: str = "standard") -> None:
        self.session = session or boto3.Session()
        self._retry_mode = retry_mode
        self._clients: dict[tuple[str, str, bool], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str, *, creates: bool = False) -> Any:
        key = (service, region, creates)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self.session.client(
                    service, region_name=region, config=self._config(creates)
                )
            return self._clients[key]

    def _config(self, creates: bool) -> Config:
        # A new Config per client: botocore mutates the one it is given.
        return Config(
            retries={"mode": self._retry_mode, "total_max_attempts": 1 if creates else 5},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=CONCURRENT_CALLS,
            user_agent_extra=USER_AGENT,
        )

    def ec2(self, region: str, *, creates: bool = False) -> Any:
        return self.client("ec2", region, creates=creates)

    def elbv2(self, region: str, *, creates: bool = False) -> Any:
        return self.client("elbv2", region, creates=creates)

    def ssm(self, region: str) -> Any:
        return self.client("ssm", region)
