"""Each running instance's app as a local `node` process on a port of its own.

An app starts once its instance is `running`, after the boot delay (the time the user data takes to
install Node.js on EC2; 0 by default), and stops when the instance stops, terminates or disappears.
Its environment names the instance (INSTANCE_ID, AVAILABILITY_ZONE: activities/server.js puts them
in its answer) and binds it to 127.0.0.1. A killed app stays dead (systemd would restart it on EC2):
that is how tests make a target fail. The processes stay in the data plane's process group, so killing
the group (what `make stop` does) ends them even if the data plane itself was killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplane.userdata import App

STOP_SECONDS = 6.0
"""server.js exits within 5 s of SIGTERM; after that it is killed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Instance:
    """What the data plane needs to know of an EC2 instance."""

    id: str
    state: str
    availability_zone: str
    private_ip: str | None = None
    app: App | None = None


@dataclass(eq=False)
class _Running:
    instance: Instance
    timer: threading.Timer | None = None
    process: subprocess.Popen[bytes] | None = None
    local_port: int | None = None
    stopped: bool = field(default=False)


class AppFleet:
    def __init__(self, node: str | None, workdir: Path, boot_delay: float = 0.0) -> None:
        """`boot_delay`: seconds from `running` to the app's start, already scaled."""
        self._node, self._workdir, self._boot_delay = node, workdir, boot_delay
        self._apps: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._closed = False

    def sync(self, instances: Mapping[str, Instance]) -> None:
        """Start the apps of running instances not started yet; stop those of instances no longer running."""
        with self._lock:
            gone = [i for i in self._apps if instances.get(i, _GONE).state != "running"]
            leaving = [self._apps.pop(i) for i in gone]
            for running in leaving:
                running.stopped = True
            if self._node is not None and not self._closed:
                for instance in instances.values():
                    if instance.state == "running" and instance.app and instance.id not in self._apps:
                        self._schedule(instance)
        for running in leaving:  # outside the lock: a stopping app may take seconds
            self._stop(running)

    def local_port(self, instance_id: str, port: int) -> int | None:
        """Where the instance's app listens locally, if it runs and listens on `port` in the instance."""
        with self._lock:
            running = self._apps.get(instance_id)
            if running is None or running.process is None or running.process.poll() is not None:
                return None
            app = running.instance.app
            return running.local_port if app is not None and app.port == port else None

    def describe(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {i: _describe(r) for i, r in self._apps.items()}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            leaving = list(self._apps.values())
            self._apps.clear()
            for running in leaving:
                running.stopped = True
        for running in leaving:
            self._stop(running)

    def _schedule(self, instance: Instance) -> None:
        running = self._apps[instance.id] = _Running(instance)
        if self._boot_delay <= 0:
            self._start(running)
            return
        running.timer = threading.Timer(self._boot_delay, self._start_locked, args=(running,))
        running.timer.daemon = True
        running.timer.start()

    def _start_locked(self, running: _Running) -> None:
        with self._lock:
            if not running.stopped:
                self._start(running)

    def _start(self, running: _Running) -> None:
        instance = running.instance
        assert instance.app is not None and self._node is not None
        script = self._workdir / instance.id / "server.js"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(instance.app.source, encoding="utf-8")
        running.local_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PORT": str(running.local_port),
            "HOST": "127.0.0.1",
            "INSTANCE_ID": instance.id,
            "AVAILABILITY_ZONE": instance.availability_zone,
        }
        running.process = subprocess.Popen(
            [self._node, str(script)],
            env=env,
            cwd=script.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def _stop(running: _Running) -> None:
        running.stopped = True
        if running.timer is not None:
            running.timer.cancel()
        process = running.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_GONE = Instance(id="", state="gone", availability_zone="")


def _describe(running: _Running) -> dict[str, Any]:
    process, app = running.process, running.instance.app
    alive = process is not None and process.poll() is None
    return {
        "state": "running" if alive else ("exited" if process is not None else "booting"),
        "pid": process.pid if process is not None else None,
        "port": app.port if app is not None else None,
        "url": f"http://127.0.0.1:{running.local_port}" if running.local_port else None,
    }
