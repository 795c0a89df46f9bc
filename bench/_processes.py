"""Servers and the worker as separate processes, so each one's CPU time and memory can be read from /proc.

bench/_setup.py runs moto inside the benchmark and the worker in its event loop, which is right for
wall times but mixes everyone's CPU. Here the Temporal dev server, a moto server and the worker
(bench/_sim_worker.py: worker.py plus the latency model) are each their own process; figures come
from /proc/<pid>/stat and /proc/<pid>/status, so no extra package is needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from _setup import REGION
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.support.servers import free_port, isolate_aws, port_open, reset_moto, venv_binary
from workflows import search_attributes

BENCH = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")

MOTO = """
import logging, sys, threading
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False).start()
threading.Event().wait()
"""
"""moto's server without a log line per request (the `moto_server` script prints every request)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its threads included), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a Python process's threads by kind: the main thread (the asyncio loop that runs
    workflows and the SDK's Python side), the SDK core's Rust threads (named tokio-*), and other Python
    threads (the activity pool). Threads that ended are not counted."""
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        if task.name == str(pid):
            kind = "main thread"
        elif name.startswith("tokio"):
            kind = "SDK core (Rust)"
        else:
            kind = "other threads"
        used[kind] = used.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return used


def memory_mb(pid: int, key: str = "VmRSS") -> float:
    """`VmRSS` (resident now) or `VmHWM` (peak resident) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot: other users of the machine included."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


@dataclass
class CpuWindow:
    """CPU seconds each process used between `start()` and `stop()`, and how busy the machine was."""

    pids: dict[str, int]
    started: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    machine_busy: float = 0.0
    worker_threads: dict[str, float] = field(default_factory=dict)
    """The worker's CPU seconds by kind of thread (`thread_cpu`)."""

    def start(self) -> CpuWindow:
        self.started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._threads = thread_cpu(self.pids["worker"]) if "worker" in self.pids else {}
        self._jiffies = machine_jiffies()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> CpuWindow:
        self.used = {name: cpu_seconds(pid) - self.started[name] for name, pid in self.pids.items()}
        if "worker" in self.pids:
            now = thread_cpu(self.pids["worker"])
            self.worker_threads = {kind: now[kind] - self._threads.get(kind, 0.0) for kind in now}
        self.wall = time.monotonic() - self._t0
        busy, total = machine_jiffies()
        self.machine_busy = (busy - self._jiffies[0]) / max(1, total - self._jiffies[1])
        return self

    def cores(self, name: str) -> float:
        """Average cores the process kept busy over the window."""
        return self.used[name] / self.wall if self.wall else 0.0


@dataclass
class Stack:
    """The running processes and a client; `pids` names them for CPU windows."""

    client: Client
    moto_url: str
    temporal: subprocess.Popen
    moto: subprocess.Popen
    worker: subprocess.Popen | None = None
    task_queue: str = field(default_factory=lambda: f"bench-{uuid.uuid4()}")

    @property
    def pids(self) -> dict[str, int]:
        pids = {"temporal": self.temporal.pid, "moto": self.moto.pid, "bench": os.getpid()}
        if self.worker is not None:
            pids["worker"] = self.worker.pid
        return pids

    def reset_aws(self) -> None:
        reset_moto(self.moto_url)

    def start_worker(self, scale: float, log: Path) -> subprocess.Popen:
        """A fresh worker process on the task queue; its log (worker.py's INFO lines) goes to `log`."""
        env = {**os.environ, "TEMPORAL_TASK_QUEUE": self.task_queue}
        with log.open("ab") as out:
            self.worker = subprocess.Popen(
                [sys.executable, str(BENCH / "_sim_worker.py"), str(scale)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self.worker

    def take_calls(self, timeout: float = 30) -> dict[str, int]:
        """The worker's AWS calls by action since the last take (SIGUSR1 to bench/_sim_worker.py)."""
        out = Path(os.environ["BENCH_CALLS"])
        out.unlink(missing_ok=True)
        assert self.worker is not None
        self.worker.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not out.exists():
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not write its AWS calls")
            time.sleep(0.05)
        return json.loads(out.read_text())

    def kill_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait()

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill_worker()


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start on port {port}")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    """A Temporal dev server (in memory) and a moto server as processes, on free ports."""
    moto_port, temporal_port = free_port(), free_port()
    isolate_aws(f"http://127.0.0.1:{moto_port}", REGION)
    os.environ.update(TEMPORAL_ADDRESS=f"127.0.0.1:{temporal_port}", TEMPORAL_NAMESPACE="default")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    moto = subprocess.Popen([sys.executable, "-c", MOTO, str(moto_port)], **quiet)
    temporal = subprocess.Popen(
        [str(venv_binary("temporal")), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
         "--port", str(temporal_port), "--log-level", "error", *search_attributes.dev_server_flags()],
        **quiet,
    )  # fmt: skip
    running: Stack | None = None
    try:
        wait_for_port(moto_port, moto, "moto")
        wait_for_port(temporal_port, temporal, "the Temporal dev server")
        client = await Client.connect(f"127.0.0.1:{temporal_port}", data_converter=pydantic_data_converter)
        running = Stack(client, f"http://127.0.0.1:{moto_port}", temporal, moto)
        yield running
    finally:
        if running is not None:
            running.stop_worker()
        stop(temporal)
        stop(moto)
