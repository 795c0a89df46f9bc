"""The one-command demo: Temporal dev server (with UI), moto as AWS, a worker, then `starter.py up`.

`up` starts what is not running yet, records each process in `.demo/` and leaves them running so the
run can be inspected in the UI; `stop` ends exactly those processes. Ports come from TEMPORAL_PORT,
TEMPORAL_UI_PORT, MOTO_PORT, DATAPLANE_PORT and ALB_PORT. Nothing here reaches real AWS: the worker and
starter get dummy credentials and the local data plane (dataplane/) as their AWS endpoint, which runs
the instances' app and the load balancer in front of moto; `up` ends by fetching the local ALB.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import local_alb

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".demo"
BIN = Path(sys.executable).parent
REGION = "ap-northeast-2"
START_TIMEOUT = 60.0
DATAPLANE_TIME_SCALE = "0.1"
"""Health checks every 3 s instead of AWS's 30 s, a 3 s deregistration delay instead of 30 s."""


def ports() -> dict[str, int]:
    return {
        "temporal": int(os.environ.get("TEMPORAL_PORT", "7233")),
        "ui": int(os.environ.get("TEMPORAL_UI_PORT", "8233")),
        "moto": int(os.environ.get("MOTO_PORT", "5000")),
        "dataplane": int(os.environ.get("DATAPLANE_PORT", "5100")),
        "alb": int(os.environ.get("ALB_PORT", "8080")),
    }


def demo_env(p: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{p['temporal']}",
        TEMPORAL_NAMESPACE="default",
        TEMPORAL_UI_URL=f"http://localhost:{p['ui']}",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{p['dataplane']}",
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    return env


def commands(p: dict[str, int]) -> dict[str, list[str]]:
    return {
        "temporal": [
            str(BIN / "temporal"), "server", "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(p["temporal"]),
            "--ui-port", str(p["ui"]),
            "--db-filename", str(STATE / "temporal.db"),
            "--log-level", "warn",
        ],
        "moto": [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(p["moto"])],
        "dataplane": [
            sys.executable, "-m", "dataplane",
            "--moto", f"http://127.0.0.1:{p['moto']}",
            "--port", str(p["dataplane"]),
            "--time-scale", DATAPLANE_TIME_SCALE,
            "--listener-ports", f"{p['alb']}-{p['alb'] + 19}",
        ],
        "worker": [sys.executable, str(ROOT / "worker.py")],
    }  # fmt: skip


def pid_file(name: str) -> Path:
    return STATE / f"{name}.pid"


def alive(name: str) -> int | None:
    """The pid of our process `name`, if it still runs (checked against its command line)."""
    try:
        pid = int(pid_file(name).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    expected = {
        "temporal": "temporal",
        "moto": "moto_server",
        "dataplane": "dataplane",
        "worker": "worker.py",
    }[name]
    return pid if expected in cmdline else None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(name: str, command: list[str], env: dict[str, str], port: int | None) -> None:
    if alive(name):
        print(f"  {name}: already running (pid {alive(name)})")
        return
    if port is not None and port_open(port):
        sys.exit(
            f"error: port {port} for {name} is taken by another program; stop it or choose another "
            f"port (TEMPORAL_PORT, TEMPORAL_UI_PORT, MOTO_PORT, DATAPLANE_PORT, ALB_PORT)"
        )
    log = (STATE / f"{name}.log").open("ab")
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    pid_file(name).write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while port is not None and not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"error: {name} did not start; see {STATE / f'{name}.log'}")
        time.sleep(0.2)
    print(f"  {name}: started (pid {process.pid}, log {STATE / f'{name}.log'})")


SEARCH_ATTRIBUTES = {
    "DeploymentId": "Keyword",
    "DeploymentPhase": "Keyword",
    "DeploymentDrift": "Bool",
    "DeploymentExpires": "Datetime",
}
"""`list --phase`/`--drifted` and the UI filter by them (workflows/search_attributes.py sets them; this
script runs without the project's packages, so a test checks that both name the same)."""


def register_search_attributes(p: dict[str, int]) -> None:
    """Idempotent, and also for a database kept from an earlier demo (start-dev's
    `--search-attribute` flag registers only into a new one)."""
    temporal = [str(BIN / "temporal"), "operator", "search-attribute"]
    address = ["--address", f"127.0.0.1:{p['temporal']}", "--namespace", "default"]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        listed = subprocess.run([*temporal, "list", *address], capture_output=True, text=True)
        if listed.returncode == 0:
            break
        if time.monotonic() > deadline:
            sys.exit(f"error: Temporal did not answer: {listed.stderr.strip()}")
        time.sleep(0.5)
    for name, kind in SEARCH_ATTRIBUTES.items():
        if name not in listed.stdout:
            subprocess.run(
                [*temporal, "create", *address, "--name", name, "--type", kind],
                check=True, capture_output=True,
            )  # fmt: skip


def up(starter_args: list[str]) -> int:
    STATE.mkdir(exist_ok=True)
    p = ports()
    env = demo_env(p)
    cmds = commands(p)
    print("Starting the embedded environment:")
    start("temporal", cmds["temporal"], env, p["temporal"])
    register_search_attributes(p)
    start("moto", cmds["moto"], env, p["moto"])
    start("dataplane", cmds["dataplane"], env, p["dataplane"])
    start("worker", cmds["worker"], env, None)
    print(f"Temporal UI: http://localhost:{p['ui']}\n")
    code = subprocess.call([sys.executable, str(ROOT / "starter.py"), "up", *starter_args], env=env)
    if code == 0:
        print("\nThe load balancer, served locally by the data plane (AWS DNS name -> local address):")
        local_alb.show(f"http://127.0.0.1:{p['dataplane']}")
    print(
        f"\nServices keep running for inspection (UI http://localhost:{p['ui']}); "
        "`make stop` ends them. Try: "
        f"TEMPORAL_ADDRESS=127.0.0.1:{p['temporal']} .venv/bin/python starter.py list"
    )
    return code


def stop() -> int:
    for name in ("worker", "dataplane", "moto", "temporal"):
        pid = alive(name)
        if pid is None:
            pid_file(name).unlink(missing_ok=True)
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while alive(name) and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            if _reap(pid):
                break
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists() and not _reap(pid):
            os.killpg(pid, signal.SIGKILL)
        pid_file(name).unlink(missing_ok=True)
        print(f"  {name}: stopped (pid {pid})")
    return 0


def _reap(pid: int) -> bool:
    """True once `pid` is gone or a zombie (its parent, the old demo, is no longer waiting on it)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return status == "Z"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "stop"])
    parser.add_argument("starter_args", nargs=argparse.REMAINDER, help="passed to `starter.py up`")
    args = parser.parse_args()
    return up(args.starter_args) if args.action == "up" else stop()


if __name__ == "__main__":
    sys.exit(main())
