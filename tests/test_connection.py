"""Connection settings as an operator of a cluster or Temporal Cloud uses them (docs/temporal-connection.md).

A Temporal dev server of its own, on a non-default port with an extra namespace, and TLS proxies in
front of it (tests/support/tls.py): `worker.py` and `starter.py` as processes reach it through
TEMPORAL_* variables, through a TOML profile with mTLS, and with an API key over TLS; the runs are
checked to be in that namespace. Bad settings end as one paragraph and exit code 2, from both.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from cli.connection import load_settings, task_queue
from tests.support.processes import ROOT, Cli, stop
from tests.support.servers import DurableTemporal, free_port
from tests.support.specs import FAST_TIMING
from tests.support.tls import SERVER_NAME, Certificates, TlsProxy, make_certificates
from tests.support.waiting import eventually

DOC = (ROOT / "docs" / "temporal-connection.md").read_text()
NAMESPACE = "scaleout-ops"
SECRET = "sk-test-do-not-print-4711"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurableTemporal]:
    temporal = DurableTemporal(
        tmp_path_factory.mktemp("connection") / "temporal.db", free_port(), ["--namespace", NAMESPACE]
    )
    temporal.start()
    yield temporal
    temporal.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def mtls_proxy(server: DurableTemporal, certs: Certificates) -> Iterator[TlsProxy]:
    proxy = TlsProxy(server.port, certs, mutual=True)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def tls_proxy(server: DurableTemporal, certs: Certificates) -> Iterator[TlsProxy]:
    proxy = TlsProxy(server.port, certs, mutual=False)
    proxy.start()
    yield proxy
    proxy.stop()


def cli_without_address(queue: str, **env: str) -> Cli:
    """A Cli whose Temporal settings come only from `env` (a profile must not be overridden)."""
    cli = Cli("unused:1", queue)
    for name in [n for n in cli.env if n.startswith("TEMPORAL_") and n != "TEMPORAL_TASK_QUEUE"]:
        del cli.env[name]
    cli.env.update(env)
    return cli


def spec_file(tmp_path: Path, deployment_id: str) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"deployment_id": deployment_id, "timing": FAST_TIMING}))
    return str(path)


async def namespace_client(server: DurableTemporal, namespace: str) -> Client:
    return await Client.connect(server.address, namespace=namespace, data_converter=pydantic_data_converter)


async def assert_completed_in_namespace(server: DurableTemporal, deployment_id: str, queue: str) -> None:
    """The run is in NAMESPACE on the task queue we set, and not in `default`."""
    workflow_id = f"deploy-{deployment_id}"
    described = await (await namespace_client(server, NAMESPACE)).get_workflow_handle(workflow_id).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    assert described.task_queue == queue
    with pytest.raises(RPCError) as missing:
        await (await namespace_client(server, "default")).get_workflow_handle(workflow_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


def start_worker(cli: Cli, log: Path, **env: str) -> subprocess.Popen:
    """`worker.py` with its output in `log`, for the test's checks and for a failure's message."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env={**cli.env, **env}, stdout=out, stderr=out
        )


def deploy(cli: Cli, tmp_path: Path) -> str:
    """`worker.py` and `starter.py up` with `cli`'s settings; returns the deployment id once COMPLETED."""
    deployment_id = f"conn-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = start_worker(cli, log)
    try:
        try:
            finished = cli.run("up", "--spec", spec_file(tmp_path, deployment_id), "--json", timeout=180)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"up did not finish; worker said:\n{log.read_text()[-3000:]}") from None
        assert finished.code == 0, (finished.stderr, log.read_text()[-3000:])
        assert finished.json()["status"] == "COMPLETED"
        assert "Traceback" not in finished.stderr
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=40) == 0, log.read_text()[-3000:]
    finally:
        stop(worker)
    return deployment_id


async def test_environment_variables_set_address_namespace_and_task_queue(server, tmp_path):
    queue = f"conn-env-{uuid.uuid4()}"
    cli = Cli(server.address, queue)  # a non-default port; TEMPORAL_TASK_QUEUE set too
    cli.env["TEMPORAL_NAMESPACE"] = NAMESPACE

    deployment_id = deploy(cli, tmp_path)

    await assert_completed_in_namespace(server, deployment_id, queue)
    assert cli.run("status", deployment_id, "--json").json()["status"] == "COMPLETED"
    elsewhere = cli.run("status", deployment_id, TEMPORAL_NAMESPACE="default")
    assert elsewhere.code == 4 and "in namespace default" in elsewhere.stderr


async def test_toml_profile_with_mtls_for_worker_and_starter(server, mtls_proxy, certs, tmp_path):
    config = tmp_path / "temporal.toml"
    config.write_text(
        f'[profile.ops]\naddress = "{mtls_proxy.address}"\nnamespace = "{NAMESPACE}"\n'
        f'[profile.ops.tls]\nserver_name = "{SERVER_NAME}"\nserver_ca_cert_path = "{certs.ca}"\n'
        f'client_cert_path = "{certs.client_cert}"\nclient_key_path = "{certs.client_key}"\n'
        f'[profile.no-cert]\naddress = "{mtls_proxy.address}"\nnamespace = "{NAMESPACE}"\n'
        f'[profile.no-cert.tls]\nserver_name = "{SERVER_NAME}"\nserver_ca_cert_path = "{certs.ca}"\n'
    )
    queue = f"conn-profile-{uuid.uuid4()}"
    cli = cli_without_address(queue, TEMPORAL_CONFIG_FILE=str(config), TEMPORAL_PROFILE="ops")

    deployment_id = deploy(cli, tmp_path)

    await assert_completed_in_namespace(server, deployment_id, queue)
    status = cli.run("status", deployment_id, "--json")
    assert status.code == 0 and status.json()["status"] == "COMPLETED", status.stderr
    listed = cli.run("list", "--json")
    assert deployment_id in {d["deployment_id"] for d in listed.json()["deployments"]}
    # Variables override the profile (envconfig's precedence): the run is not in `default`.
    assert cli.run("status", deployment_id, TEMPORAL_NAMESPACE="default").code == 4
    # Without the client certificate the mTLS endpoint refuses the handshake.
    refused = cli.run("list", TEMPORAL_PROFILE="no-cert")
    assert refused.code == 2 and "cannot reach the Temporal server" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_api_key_turns_tls_on_and_is_never_printed(server, tls_proxy, certs, tmp_path):
    assert load_settings({"TEMPORAL_API_KEY": SECRET}).tls is True
    assert load_settings({"TEMPORAL_API_KEY": SECRET, "TEMPORAL_TLS": "false"}).tls is False
    assert SECRET not in repr(load_settings({"TEMPORAL_API_KEY": SECRET}))

    cli = cli_without_address(f"conn-key-{uuid.uuid4()}", TEMPORAL_API_KEY=SECRET)
    plaintext = cli.run("list", TEMPORAL_ADDRESS=server.address)
    assert plaintext.code == 2 and "answered without TLS" in plaintext.stderr  # TLS was attempted
    assert SECRET not in plaintext.stderr + plaintext.stdout
    assert cli.run("list", TEMPORAL_ADDRESS=server.address, TEMPORAL_TLS="false").code == 0

    over_tls = {
        "TEMPORAL_ADDRESS": tls_proxy.address,
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(certs.ca),
        "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
    }
    listed = cli.run("list", **over_tls)
    assert listed.code == 0, listed.stderr
    log = tmp_path / "worker.log"

    async def read() -> str:
        return log.read_text()

    worker = start_worker(cli, log, **over_tls)
    try:
        await eventually(read, lambda text: "worker for task queue" in text)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=40) == 0, log.read_text()
    finally:
        stop(worker)
    assert "TLS on, API key" in log.read_text()
    assert SECRET not in log.read_text()


def config_files(tmp_path: Path) -> dict[str, str]:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        '[profile.ops]\naddress = "127.0.0.1:7233"\n'
        '[profile.lost-cert]\naddress = "127.0.0.1:7233"\n'
        '[profile.lost-cert.tls]\nclient_cert_path = "/nonexistent/client.pem"\n'
        'client_key_path = "/nonexistent/client.key"\n'
    )
    typo = tmp_path / "typo.toml"  # api_key belongs in the profile, not in its [tls] table
    typo.write_text(
        f'[profile.default]\naddress = "127.0.0.1:7233"\n[profile.default.tls]\napi_key = "{SECRET}"\n'
    )
    return {"profiles": str(profiles), "typo": str(typo)}


BAD_SETTINGS = {  # name -> (environment, what the message says); {profiles} and {typo} are config_files()
    "missing certificate file": (
        {"TEMPORAL_TLS_CLIENT_CERT_PATH": "/nonexistent/c.pem", "TEMPORAL_TLS_CLIENT_KEY_PATH": "{typo}"},
        "the TLS client certificate /nonexistent/c.pem (from TEMPORAL_TLS_CLIENT_CERT_PATH) does not exist",
    ),
    "missing certificate file in a profile": (
        {"TEMPORAL_CONFIG_FILE": "{profiles}", "TEMPORAL_PROFILE": "lost-cert"},
        "/nonexistent/client.pem (from `tls.client_cert_path` of profile lost-cert in {profiles}",
    ),
    "certificate without its key": (
        {"TEMPORAL_TLS_CLIENT_CERT_PATH": "{typo}"},
        "mTLS needs both a client certificate and its key",
    ),
    "unknown profile": (
        {"TEMPORAL_CONFIG_FILE": "{profiles}", "TEMPORAL_PROFILE": "prod"},
        "TEMPORAL_PROFILE='prod' is not a profile in {profiles} (it has lost-cert, ops)",
    ),
    "missing config file": (
        {"TEMPORAL_CONFIG_FILE": "/nonexistent/temporal.toml"},
        "TEMPORAL_CONFIG_FILE names /nonexistent/temporal.toml, which is not a file",
    ),
    "unknown key in the config file": ({"TEMPORAL_CONFIG_FILE": "{typo}"}, "unknown field `api_key`"),
    "address with a scheme": (
        {"TEMPORAL_ADDRESS": "https://my-ns.a1b2c.tmprl.cloud:7233"},
        "Temporal address 'https://my-ns.a1b2c.tmprl.cloud:7233' (from ",
    ),
    "address without a port": ({"TEMPORAL_ADDRESS": "temporal.internal"}, "is not host:port"),
    "host verification off": (
        {"TEMPORAL_TLS_DISABLE_HOST_VERIFICATION": "true"},
        "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION is not supported by the Temporal Python SDK",
    ),
    "TEMPORAL_TLS not a boolean": (
        {"TEMPORAL_TLS": "yes please"},
        "TEMPORAL_TLS='yes please' is not a boolean",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_setting_is_one_paragraph_and_exit_2_from_worker_and_starter(case, tmp_path):
    files = config_files(tmp_path)
    env, message = BAD_SETTINGS[case]
    cli = cli_without_address("conn-bad", TEMPORAL_API_KEY=SECRET)
    cli.env.update({name: value.format(**files) for name, value in env.items()})
    processes = {
        "starter": cli.start("list", "--json"),
        "worker": subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),  # fmt: skip
    }
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 2, (name, stderr)
        assert message.format(**files) in stderr, (name, stderr)
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, (name, stderr)  # one paragraph
        assert "Traceback" not in stderr and SECRET not in stdout + stderr, (name, stderr)


def test_worker_in_an_unknown_namespace_exits_2(server):
    cli = Cli(server.address, "conn-no-namespace")
    finished = subprocess.run(
        [sys.executable, "worker.py"], cwd=ROOT, env={**cli.env, "TEMPORAL_NAMESPACE": "no-such-namespace"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 2, finished.stderr
    assert "Namespace no-such-namespace was not found" in finished.stderr
    assert "Check TEMPORAL_NAMESPACE" in finished.stderr and "Traceback" not in finished.stderr


def test_every_variable_in_the_doc_takes_effect(tmp_path, monkeypatch):
    pem = tmp_path / "x.pem"
    pem.write_text("PEM")
    effects = {  # variable -> (value, what load_settings then holds)
        "TEMPORAL_ADDRESS": ("temporal.internal:7233", lambda s: s.target_host == "temporal.internal:7233"),
        "TEMPORAL_NAMESPACE": ("deployments", lambda s: s.namespace == "deployments"),
        "TEMPORAL_API_KEY": (SECRET, lambda s: s.api_key == SECRET and s.tls is True),
        "TEMPORAL_TLS": ("true", lambda s: isinstance(s.tls, TLSConfig)),
        "TEMPORAL_TLS_CLIENT_CERT_PATH": (str(pem), lambda s: s.tls.client_cert == b"PEM"),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": (str(pem), lambda s: s.tls.client_private_key == b"PEM"),
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": (str(pem), lambda s: s.tls.server_root_ca_cert == b"PEM"),
        "TEMPORAL_TLS_SERVER_NAME": ("temporal.internal", lambda s: s.tls.domain == "temporal.internal"),
        "TEMPORAL_GRPC_META_X_TEAM": ("infra", lambda s: s.rpc_metadata == {"x-team": "infra"}),
    }
    pair = {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(pem), "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pem)}
    for variable, (value, holds) in effects.items():
        env = {**(pair if "CLIENT" in variable else {}), variable: value}
        assert holds(load_settings(env)), variable
    assert load_settings({"TEMPORAL_API_KEY": SECRET, "TEMPORAL_TLS": "false"}).tls is False
    assert load_settings({}).tls is False and load_settings({}).target_host == "localhost:7233"
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", "deploy-staging")
    assert task_queue() == "deploy-staging"

    documented = set(re.findall(r"^\| `(TEMPORAL_[A-Z_]+)", DOC, re.M))
    tested = {v.removesuffix("X_TEAM") for v in effects} | {"TEMPORAL_TASK_QUEUE"}
    assert documented == tested


def test_the_docs_toml_profile_is_valid():
    toml = re.search(r"```toml\n(.*?)```", DOC, re.S).group(1)
    profile = ClientConfig.load(config_source=toml, config_file_strict=True).profiles["ops"]
    assert profile.address == "temporal.internal:7233" and profile.tls.client_cert is not None
