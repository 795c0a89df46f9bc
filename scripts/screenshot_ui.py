"""Screenshot of a deployment's run in the Temporal UI, with headless Chromium (Debian's `chromium`).

Run it while `make demo` is up:  .venv/bin/python scripts/screenshot_ui.py [--id scaleout-demo]
It finds the deployment's latest run through the Temporal client and writes one picture per tab of
the run's page (docs/ui-timeline.png: every activity with its summary on a time axis;
docs/ui-user-metadata.png: the static summary and details and the current details, step by step).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.connection import connect  # noqa: E402
from cli.errors import UserError, run_cli  # noqa: E402
from workflows.deploy import workflow_id  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no background calls
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


TABS = ("timeline", "user-metadata")


async def run_url(ui: str, deployment_id: str) -> str:
    client = await connect()
    wid = workflow_id(deployment_id)
    description = await client.get_workflow_handle(wid).describe()
    return f"{ui.rstrip('/')}/namespaces/{client.namespace}/workflows/{wid}/{description.run_id}"


def screenshot(url: str, out: Path, width: int, height: int, wait_ms: int) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise UserError("no Chromium found; install Debian's package: apt-get install chromium")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",  # let the UI fetch and render the history first
            f"--screenshot={out}",
            url,
        ]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if not out.exists() or out.stat().st_size < 10_000:
        raise UserError(f"Chromium wrote no screenshot of {url}: {finished.stderr.strip()[-400:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", default="scaleout-demo", help="deployment id (default: the demo's)")
    parser.add_argument("--ui", default=os.environ.get("TEMPORAL_UI_URL", "http://localhost:8233"))
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1300)
    parser.add_argument("--wait-ms", type=int, default=15000)
    args = parser.parse_args()
    run = asyncio.run(run_url(args.ui, args.id))
    for tab in TABS:
        out = Path(args.out_dir) / f"ui-{tab}.png"
        screenshot(f"{run}/{tab}", out, args.width, args.height, args.wait_ms)
        print(f"{out} <- {run}/{tab}")
    return 0


if __name__ == "__main__":
    run_cli(main)
