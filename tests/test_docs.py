"""The README's promises that code can check: its first commands, spec and outputs references that
match the models, and the benchmark history kept out of it (docs/benchmarks.md)."""

from __future__ import annotations

import re
from pathlib import Path

from models.resources import DeploymentOutputs
from models.spec import DeploymentSpec
from scripts.spec_reference import output_rows, outputs_table, replace_table, rows, table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text()


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


def test_outputs_reference_is_generated_from_the_model():
    assert outputs_table() in README
    assert [name for name, *_ in output_rows()] == list(DeploymentOutputs.model_fields)
    assert all(description for *_, description in output_rows())


def test_every_per_az_output_is_keyed_by_az():
    """Maps of the outputs say what they are keyed by; all but the instances' are keyed by AZ."""
    maps = {name: description for name, kind, description in output_rows() if kind.startswith("dict")}
    assert set(maps) >= {"private_subnet_ids", "nat_gateway_ids", "route_table_ids", "instance_ids"}
    assert all(
        description.startswith("AZ -> ") for name, description in maps.items() if name != "instance_ids"
    )


def test_writing_the_references_replaces_each_table_where_it_stands():
    stale = README.replace(table(), "| setting | type | default | meaning |\n| `old` | str | `1` | gone |")
    stale = stale.replace(outputs_table(), outputs_table().split("\n", 3)[0] + "\n|---|---|---|")
    assert stale != README
    assert replace_table(replace_table(stale, table()), outputs_table()) == README


def test_the_benchmark_history_lives_in_the_bench_notes():
    """The README keeps one table of current figures and links the notes; the notes keep the rest."""
    assert "docs/benchmarks.md" in README
    section = README[README.index("## Benchmarks") :]
    section = section[: section.index("\n## ", 1)]
    assert "| benchmark | measures | target | measured |" in section
    for history in ("morning", "afternoon", "How it came down", "Wait shapes"):
        assert history not in README
        assert history in BENCHMARKS
    for script in ("dag_vs_sequential.py", "costs.py", "recovery.py", "concurrency.py"):
        assert f"bench/{script}" in section and f"bench/{script}" in BENCHMARKS
