"""worker.py and starter.py as subprocesses, the way a user runs them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


class Cli:
    """Runs the project's entry points against one Temporal address and task queue."""

    def __init__(self, address: str, task_queue: str) -> None:
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "PYTHONUNBUFFERED": "1",
        }

    def without(self, *names: str, **env: str) -> Cli:
        """The same entry points with some variables removed and others set (e.g. no AWS credentials)."""
        other = copy.copy(self)
        other.env = {k: v for k, v in {**self.env, **env}.items() if k not in names}
        return other

    def worker(self, module: str = "tests.support.slow_worker", **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "starter.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 120, **env: str) -> Finished:
        process = self.start(*args, **env)
        stdout, stderr = process.communicate(timeout=timeout)
        return Finished(process.returncode, stdout, stderr)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
