"""EC2 user data that installs the Awesome API (activities/server.js) as a systemd service.

The server source goes in verbatim through a quoted heredoc (``<<'DELIM'``), so bash performs no
expansion of ``$``, backticks or backslashes in the JavaScript.

Installing Node.js is retried until egress works: the instances sit in private subnets and the
deployment launches them while the NAT gateway is still pending, so at boot there is usually no route
out yet; the app's boot waits for the NAT route, the launch does not. Each attempt is capped (a dnf
hanging on a dead connection is killed and tried again), every failure goes to the console (cloud-init
copies it to /var/log/cloud-init-output.log) and to the journal (``journalctl -t awesome-api-install``),
and ``INSTALL_SECONDS`` after it started the script gives up with a message saying why, so the instance stays
unhealthy and the deployment's health wait fails instead of waiting forever.
"""

from __future__ import annotations

import functools
from pathlib import Path

SERVER_JS = Path(__file__).resolve().parent / "server.js"
"""Package data (pyproject.toml): next to this module in a checkout and in an installed wheel."""
HEREDOC_DELIMITER = "AWESOME_API_SERVER_JS_EOF"
SERVICE = "awesome-api"
APP_USER = "awesome-api"
APP_DIR = "/opt/awesome-api"
INSTALL_SECONDS = 900
"""Give up installing Node.js this long after the user data starts: the NAT gateway takes 1.5-2
minutes on AWS; the deployment's health wait (``timing.targets_healthy_timeout_seconds``) is 15 minutes
by default."""
INSTALL_ATTEMPT_SECONDS = 120
"""Kill one ``dnf install`` after this long: without egress its connections hang until dnf's own timeouts."""
INSTALL_RETRY_SECONDS = 10
INSTALL_LOG_TAG = "awesome-api-install"
INSTALL_BEGIN = "# -- install Node.js, retried until the NAT route gives egress --"
INSTALL_END = "# -- Node.js installed --"


@functools.cache
def server_source() -> str:
    source = SERVER_JS.read_text(encoding="utf-8")
    assert HEREDOC_DELIMITER not in source, "heredoc delimiter appears in server.js"
    if not source.endswith("\n"):
        source += "\n"
    return source


def install_script(install_seconds: int, attempt_seconds: int, retry_seconds: int) -> str:
    """The bash that installs Node.js: attempts until one succeeds or `install_seconds` have passed.

    A failed `dnf install` (no egress yet) is logged and retried after `retry_seconds`; one attempt
    never runs past `attempt_seconds` nor past the deadline.
    """
    if not (install_seconds >= 1 and attempt_seconds >= 1 and retry_seconds >= 0):
        raise ValueError("install bounds must be positive (retry_seconds may be 0)")
    return f"""{INSTALL_BEGIN}
install_log() {{
  echo "$(date -u +%FT%TZ) {INSTALL_LOG_TAG}: $*" >&2
  logger -t {INSTALL_LOG_TAG} -- "$*" 2>/dev/null || true
}}
install_deadline=$((SECONDS + {install_seconds}))
install_attempt=0
while true; do
  install_attempt=$((install_attempt + 1))
  install_left=$((install_deadline - SECONDS))
  install_limit=$((install_left < {attempt_seconds} ? install_left : {attempt_seconds}))
  install_status=0
  timeout -k 10 "$((install_limit < 1 ? 1 : install_limit))" dnf install -y nodejs || install_status=$?
  if [ "$install_status" -eq 0 ]; then
    install_log "Node.js installed at attempt $install_attempt, $SECONDS s after the user data started"
    break
  fi
  if [ $((install_deadline - SECONDS)) -le {retry_seconds} ]; then
    install_log "giving up: Node.js install failed $install_attempt times over $SECONDS s" \
      "(last exit status $install_status); no egress? check the private subnet's route to the NAT gateway"
    exit 1
  fi
  install_log "Node.js install attempt $install_attempt failed (exit status $install_status)," \
    "probably no egress yet (NAT route pending); retrying in {retry_seconds} s"
  sleep {retry_seconds}
done
{INSTALL_END}"""


def render_user_data(
    app_port: int,
    *,
    install_seconds: int = INSTALL_SECONDS,
    attempt_seconds: int = INSTALL_ATTEMPT_SECONDS,
    retry_seconds: int = INSTALL_RETRY_SECONDS,
) -> str:
    if not 1 <= app_port <= 65535:
        raise ValueError(f"app_port must be in 1..65535, got {app_port}")
    return f"""#!/bin/bash
set -euo pipefail

{install_script(install_seconds, attempt_seconds, retry_seconds)}
id -u {APP_USER} >/dev/null 2>&1 || useradd --system --no-create-home --shell /sbin/nologin {APP_USER}
mkdir -p {APP_DIR}
cat > {APP_DIR}/server.js <<'{HEREDOC_DELIMITER}'
{server_source()}{HEREDOC_DELIMITER}
chmod 0644 {APP_DIR}/server.js

cat > /etc/systemd/system/{SERVICE}.service <<'UNIT_EOF'
[Unit]
Description=Awesome API
After=network-online.target
Wants=network-online.target

[Service]
User={APP_USER}
Environment=PORT={app_port}
ExecStart=/usr/bin/node {APP_DIR}/server.js
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT_EOF

systemctl daemon-reload
systemctl enable --now {SERVICE}.service
"""
