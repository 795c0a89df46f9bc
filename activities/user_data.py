"""EC2 user data that installs the Awesome API (app/server.js) as a systemd service.

The server source goes in verbatim through a quoted heredoc (``<<'DELIM'``), so bash performs no
expansion of ``$``, backticks or backslashes in the JavaScript. Installing Node.js is retried because
the instances sit in private subnets: the NAT gateway route can become usable a little after boot, and
one failed ``dnf install`` would otherwise leave the instance unhealthy behind the ALB for good.
"""

from __future__ import annotations

import functools
from pathlib import Path

SERVER_JS = Path(__file__).resolve().parent.parent / "app" / "server.js"
HEREDOC_DELIMITER = "AWESOME_API_SERVER_JS_EOF"
SERVICE = "awesome-api"
APP_USER = "awesome-api"
APP_DIR = "/opt/awesome-api"
INSTALL_ATTEMPTS = 30
INSTALL_RETRY_SECONDS = 10


@functools.cache
def server_source() -> str:
    source = SERVER_JS.read_text(encoding="utf-8")
    assert HEREDOC_DELIMITER not in source, "heredoc delimiter appears in server.js"
    if not source.endswith("\n"):
        source += "\n"
    return source


def render_user_data(app_port: int) -> str:
    if not 1 <= app_port <= 65535:
        raise ValueError(f"app_port must be in 1..65535, got {app_port}")
    return f"""#!/bin/bash
set -euo pipefail

for attempt in $(seq 1 {INSTALL_ATTEMPTS}); do
  if dnf install -y nodejs; then break; fi
  if [ "$attempt" -eq {INSTALL_ATTEMPTS} ]; then echo "nodejs install failed" >&2; exit 1; fi
  sleep {INSTALL_RETRY_SECONDS}
done

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
