"""The Awesome API (activities/server.js) run under the local node, and the user data that installs it.

The user data's Node.js install runs here under bash with fake `dnf` and `logger` commands on PATH: no
network, and the fakes count the attempts and collect what would reach the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from activities.user_data import (
    HEREDOC_DELIMITER,
    INSTALL_BEGIN,
    INSTALL_END,
    INSTALL_LOG_TAG,
    install_script,
    render_user_data,
)

ROOT = Path(__file__).resolve().parent.parent
SERVER_JS = ROOT / "activities" / "server.js"
NODE = shutil.which("node")
EC2_USER_DATA_LIMIT = 16 * 1024


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"node exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server did not accept connections on port {port} within {deadline_s}s")


def _request(port: int, path: str, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    if NODE is None:
        pytest.skip("node is not on PATH; cannot run activities/server.js")
    port = _free_port()
    proc = subprocess.Popen(
        [NODE, str(SERVER_JS)],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_listening(proc, port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_server_routes_and_graceful_sigterm(server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = server

    status, body = _request(port, "/")
    assert status == 200
    assert body["message"] == "Awesome API"
    assert isinstance(body["hostname"], str) and body["hostname"]
    assert isinstance(body["uptime_seconds"], int)

    assert _request(port, "/health") == (200, {"status": "ok"})
    assert _request(port, "/nope")[0] == 404
    assert _request(port, "/", method="POST")[0] == 405

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "GET /health 200" in output


def test_user_data_shape() -> None:
    script = render_user_data(3000)
    assert script.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script
    assert SERVER_JS.read_text(encoding="utf-8") in script
    assert "Environment=PORT=3000" in script
    assert "Restart=always" in script
    assert "systemctl enable --now awesome-api.service" in script
    assert "dnf install -y nodejs" in _install_part(script)
    assert script.index(INSTALL_END) < script.index("cat > /opt/awesome-api/server.js")  # install first
    assert len(script.encode("utf-8")) < EC2_USER_DATA_LIMIT


def test_user_data_is_valid_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not on PATH")
    result = subprocess.run([bash, "-n"], input=render_user_data(3000), text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_user_data_rejects_bad_port(port: int) -> None:
    with pytest.raises(ValueError):
        render_user_data(port)


def _heredoc_span(lines: list[str]) -> tuple[int, int]:
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n").endswith(f"<<'{HEREDOC_DELIMITER}'"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i] == f"{HEREDOC_DELIMITER}\n")
    return start, end


def test_user_data_heredoc_body_is_server_js_verbatim() -> None:
    lines = render_user_data(8080).splitlines(keepends=True)
    start, end = _heredoc_span(lines)
    assert lines[start].startswith("cat > /opt/awesome-api/server.js <<")
    body = "".join(lines[start + 1 : end])
    assert body.encode("utf-8") == SERVER_JS.read_bytes()


def test_user_data_heredoc_written_by_bash_is_server_js(tmp_path: Path) -> None:
    """Run only the heredoc, redirected into tmp_path, so bash itself shows nothing gets expanded."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not on PATH")
    lines = render_user_data(3000).splitlines(keepends=True)
    start, end = _heredoc_span(lines)
    target = tmp_path / "server.js"
    header = f"set -euo pipefail\ncat > \"$1\" <<'{HEREDOC_DELIMITER}'\n"
    snippet = header + "".join(lines[start + 1 : end + 1])
    result = subprocess.run(
        [bash, "-c", snippet, "bash", str(target)], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == SERVER_JS.read_bytes()


# The Node.js install: instances launch while the NAT gateway is pending, so it must outlast no egress


FAKE_DNF = """#!/bin/bash
n=$(( $(cat "$FAKE_STATE/attempts" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_STATE/attempts"
echo "$*" >> "$FAKE_STATE/args"
if [ "$n" -le "$FAKE_HANGS" ]; then exec sleep 60; fi
if [ "$n" -le "$FAKE_FAILS" ]; then
  echo "Curl error (7): Couldn't connect to server for al2023-repos" >&2
  exit 1
fi
echo "Installed: nodejs"
"""
FAKE_LOGGER = """#!/bin/bash
tag=logger
while [ $# -gt 0 ]; do
  case "$1" in
    -t) tag=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
echo "$tag: $*" >> "$FAKE_STATE/journal"
"""
AFTER_INSTALL = "REACHED THE APP SETUP"


@dataclass
class Install:
    returncode: int
    stdout: str
    stderr: str
    attempts: int
    args: list[str]
    journal: list[str]


def _install_part(script: str) -> str:
    start, end = script.index(INSTALL_BEGIN), script.index(INSTALL_END) + len(INSTALL_END)
    return script[start:end]


def _run_install(tmp_path: Path, *, fails: int = 0, hangs: int = 0, **bounds: int) -> Install:
    """The install part of the rendered user data under bash, then a marker standing for the rest."""
    bash = shutil.which("bash")
    if bash is None or shutil.which("timeout") is None:
        pytest.skip("bash and coreutils' timeout are needed")
    fakes, state = tmp_path / "bin", tmp_path / "state"
    fakes.mkdir()
    state.mkdir()
    for name, body in (("dnf", FAKE_DNF), ("logger", FAKE_LOGGER)):
        (fakes / name).write_text(body)
        (fakes / name).chmod(0o755)
    script = (
        "set -euo pipefail\n" + _install_part(render_user_data(3000, **bounds)) + f"\necho {AFTER_INSTALL}\n"
    )
    env = {
        **os.environ,
        "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}",
        "FAKE_STATE": str(state),
        "FAKE_FAILS": str(fails),
        "FAKE_HANGS": str(hangs),
    }
    result = subprocess.run([bash, "-c", script], env=env, capture_output=True, text=True, timeout=60)

    def lines(name: str) -> list[str]:
        path = state / name
        return path.read_text().splitlines() if path.exists() else []

    attempts = int((state / "attempts").read_text()) if (state / "attempts").exists() else 0
    journal = lines("journal")
    assert all(line.startswith(f"{INSTALL_LOG_TAG}: ") for line in journal)  # journalctl -t finds them
    journal = [line.removeprefix(f"{INSTALL_LOG_TAG}: ") for line in journal]
    return Install(result.returncode, result.stdout, result.stderr, attempts, lines("args"), journal)


def test_install_retries_until_egress_works_then_goes_on(tmp_path: Path) -> None:
    install = _run_install(tmp_path, fails=3, install_seconds=60, retry_seconds=0)

    assert install.returncode == 0, install.stderr
    assert install.attempts == 4
    assert install.args == ["install -y nodejs"] * 4
    assert AFTER_INSTALL in install.stdout  # the app's setup runs once Node.js is there
    failures = [line for line in install.journal if "failed" in line]
    assert [f"attempt {n} failed" in line for n, line in enumerate(failures, start=1)] == [True] * 3
    assert all("no egress" in line for line in failures)
    assert "Node.js installed at attempt 4" in install.journal[-1]
    assert install.stderr.count(f"{INSTALL_LOG_TAG}: Node.js install attempt") == 3  # and on the console


def test_install_gives_up_after_its_bound_with_a_clear_message(tmp_path: Path) -> None:
    install = _run_install(tmp_path, fails=10_000, install_seconds=4, retry_seconds=1)

    assert install.returncode == 1
    assert AFTER_INSTALL not in install.stdout  # no service without Node.js
    assert install.attempts >= 2  # it retried before giving up
    last = install.journal[-1]
    assert last.startswith(f"giving up: Node.js install failed {install.attempts} times")
    assert "route to the NAT gateway" in last and last in install.stderr
    assert sum("failed (exit status 1)" in line for line in install.journal) == install.attempts - 1


def test_install_attempt_that_hangs_is_killed_and_retried(tmp_path: Path) -> None:
    """Without egress dnf's connections hang; one attempt must not eat the whole bound."""
    install = _run_install(tmp_path, hangs=1, install_seconds=60, attempt_seconds=1, retry_seconds=0)

    assert install.returncode == 0, install.stderr
    assert install.attempts == 2
    assert "attempt 1 failed (exit status 124)" in install.journal[0]  # timeout(1)'s status
    assert AFTER_INSTALL in install.stdout


@pytest.mark.parametrize(
    "bounds",
    [(0, 120, 10), (900, 0, 10), (900, 120, -1)],
    ids=["no-deadline", "no-attempt-limit", "negative-retry"],
)
def test_install_rejects_bounds_that_would_not_bound(bounds: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        install_script(*bounds)


def test_a_built_wheel_carries_the_app(tmp_path: Path) -> None:
    """user_data.py reads the app next to itself: an installed wheel must hold it (package data)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *(f"{m}.py" for m in setuptools["py-modules"])):
        shutil.copy(ROOT / name, source / name)
    for package in setuptools["packages"]:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    subprocess.run([*build, "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("scaleout-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("activities/server.js") == SERVER_JS.read_bytes()
