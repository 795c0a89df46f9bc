"""What an instance was launched to run, read from its user data: the Node.js app and its port.

The product's user data (activities/user_data.py) writes the app with a quoted heredoc
(`cat > /dir/app.js <<'DELIM'`) and gives its systemd unit `Environment=PORT=N`. Reading the app from
the user data, not from activities/server.js, runs what each instance was launched with: after a
rolling update launches a new version, the new instances run the new version here too.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

HEREDOC = re.compile(
    r"^cat > (?P<path>\S+\.js) <<'(?P<delimiter>[A-Za-z0-9_]+)'\n(?P<body>.*?)^(?P=delimiter)$",
    re.MULTILINE | re.DOTALL,
)
PORT = re.compile(r"^Environment=PORT=(?P<port>\d{1,5})$", re.MULTILINE)


@dataclass(frozen=True)
class App:
    source: str
    """The JavaScript the user data installs."""
    port: int
    """The port it listens on in the instance (the target group's traffic port)."""


def app_of(user_data: str) -> App | None:
    """The app in a user data script; None when it installs no Node.js app (the instance runs nothing)."""
    heredoc, port = HEREDOC.search(user_data), PORT.search(user_data)
    if heredoc is None or port is None or not 1 <= int(port["port"]) <= 65535:
        return None
    return App(source=heredoc["body"], port=int(port["port"]))


def decode(value: str | None) -> str:
    """EC2 hands user data back base64-encoded; anything unreadable counts as none."""
    if not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
