"""The Awesome API (app/server.js) run under the local node, and the user data that installs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.user_data import HEREDOC_DELIMITER, render_user_data

ROOT = Path(__file__).resolve().parent.parent
SERVER_JS = ROOT / "app" / "server.js"
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
        pytest.skip("node is not on PATH; cannot run app/server.js")
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
