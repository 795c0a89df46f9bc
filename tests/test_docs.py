"""The README's promises that code can check: its first commands, and a spec reference that matches."""

from __future__ import annotations

import re
from pathlib import Path

from models.spec import DeploymentSpec
from scripts.spec_reference import rows, table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_first_commands_are_demo_then_test():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands[:2] == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_spec_reference_is_generated_from_the_model():
    assert table() in README
    documented = {path for path, *_ in rows(DeploymentSpec)}
    assert {
        "deployment_id",
        "nat_mode",
        "instances.count",
        "app.port",
        "timing.poll_interval_seconds",
    } <= documented
    assert all(description for *_, description in rows(DeploymentSpec))
