"""Show that the demo's load balancer answers: its local address next to its AWS DNS name, and the app's
answers from both instances. Asks the local data plane (dataplane/) that `make demo` runs.

    .venv/bin/python scripts/local_alb.py [--endpoint http://127.0.0.1:5100] [--requests 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ENDPOINT = "http://127.0.0.1:5100"


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """Redirects followed (port 80 of an HTTPS deployment redirects to 443); `context` trusts the data
    plane's local CA."""
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=30) as response:
            return response.status, response.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode(errors="replace").strip()


def load_balancers(endpoint: str) -> dict[str, Any]:
    return json.loads(get(f"{endpoint}/_dataplane/load-balancers")[1])


def show(endpoint: str, requests: int = 4) -> int:
    """Print each load balancer's local listeners and `requests` answers of each; 0 when all were 200."""
    try:
        balancers = load_balancers(endpoint)
    except (OSError, ValueError) as err:
        print(f"the local data plane does not answer at {endpoint} ({err}); is `make demo` running?")
        return 1
    if not balancers:
        print("no load balancer yet: deploy one with `make demo` or `starter.py up`")
        return 1
    if shutil.which("node") is None:
        print("node is not installed here, so the instances run no app: the load balancer answers 502")
    failed = 0
    for dns_name, balancer in balancers.items():
        ca_files = {lsn["ca_file"] for lsn in balancer["listeners"] if lsn.get("ca_file")}
        context = ssl.create_default_context(cafile=ca_files.pop()) if ca_files else None
        for listener in balancer["listeners"]:
            url = listener["url"]
            states = ", ".join(f"{t['id']} {t['state']}" for t in listener["targets"]) or "no targets"
            print(f"ALB {dns_name}:{listener['port']} answers locally at {url} ({states})")
            for _ in range(requests):
                status, body = get(url, context)
                failed += status != 200
                print(f"  GET {url}/ -> {status} {body[:200]}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="the data plane's AWS endpoint")
    parser.add_argument("--requests", type=int, default=4, help="requests per listener")
    args = parser.parse_args()
    return show(args.endpoint.rstrip("/"), args.requests)


if __name__ == "__main__":
    sys.exit(main())
