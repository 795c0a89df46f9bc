"""The local data plane (dataplane/) as tests run it: its documented command, as a process in front of
the session's moto, stopped (with every app it started) when the test ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIME_SCALE = 0.02
"""AWS's 30 s health check interval becomes 0.6 s, the workflow's 30 s deregistration delay 0.6 s."""
READY = "dataplane: AWS endpoint "
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None
    """The app's JSON; None for the load balancer's own error pages."""

    @property
    def instance_id(self) -> str | None:
        return (self.body or {}).get("instance_id")


def fetch(url: str, timeout: float = 30.0) -> Answer:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return Answer(response.status, json.loads(response.read()))
    except urllib.error.HTTPError as err:
        with err:
            body = err.read()
        try:
            return Answer(err.code, json.loads(body))
        except ValueError:
            return Answer(err.code, None)


@dataclass
class RunningDataPlane:
    process: subprocess.Popen[bytes]
    url: str

    def load_balancers(self) -> dict[str, Any]:
        return fetch(f"{self.url}/_dataplane/load-balancers").body or {}

    def instances(self) -> dict[str, Any]:
        return fetch(f"{self.url}/_dataplane/instances").body or {}

    def listener(self, dns_name: str, port: int = 80) -> dict[str, Any]:
        return next(lsn for lsn in self.load_balancers()[dns_name]["listeners"] if lsn["port"] == port)

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it; anything left in its process group is then killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.group_alive():
            os.killpg(self.process.pid, signal.SIGKILL)

    def group_alive(self) -> bool:
        """Whether any process of the data plane's group (its apps) still runs."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True


@contextmanager
def running_dataplane(moto_url: str, log: Path, *args: str) -> Iterator[RunningDataPlane]:
    command = [sys.executable, "-m", "dataplane", "--moto", moto_url, "--time-scale", str(TIME_SCALE), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    plane = RunningDataPlane(process, "")
    try:
        plane.url = _endpoint(process, log)
        yield plane
    finally:
        plane.stop()


def _endpoint(process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(READY):
                return line.removeprefix(READY).split()[0]
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the data plane did not start: {log.read_text(errors='replace')}")
