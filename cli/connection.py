"""How worker and starter reach Temporal: an envconfig profile, TEMPORAL_* variables, one task queue.

envconfig reads the TOML config file (TEMPORAL_CONFIG_FILE, profile TEMPORAL_PROFILE) and lays
TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY and TEMPORAL_TLS* over it, so a cluster or
Temporal Cloud needs no code change (docs/temporal-connection.md). What envconfig lets through
silently (a missing config file or certificate, a typo in the TOML, a malformed address) is checked
here first, so a bad setting ends as one paragraph and exit code 2 rather than a traceback or a
connection to the wrong place. The API key is a secret: it is never printed, and an error that
quotes it has it masked.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig, ClientConfigProfile
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, TLSConfig

from cli.errors import UserError

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "scaleout-deployments"
DOC = "docs/temporal-connection.md"

ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
BOOLEANS = {"true", "false", "1", "0"}
CONNECTION_VARIABLES = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"}
VARIABLE_PREFIXES = ("TEMPORAL_TLS", "TEMPORAL_GRPC_META_")
NOBODY_THERE = ("tcp connect error", "dns error", "ConnectionRefused")
TLS_FILES = (  # (field of envconfig's ClientConfigTLS, variable, key in a profile's [tls] table, what)
    ("client_cert", "TEMPORAL_TLS_CLIENT_CERT_PATH", "client_cert_path", "client certificate"),
    ("client_private_key", "TEMPORAL_TLS_CLIENT_KEY_PATH", "client_key_path", "client key"),
    ("server_root_ca_cert", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "server_ca_cert_path", "server CA cert"),
)


def task_queue() -> str:
    """Our own setting, not envconfig's: worker and starter must agree on it."""
    return os.environ.get("TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where and how to connect. `repr` leaves the API key and the TLS material out."""

    target_host: str
    namespace: str
    tls: bool | TLSConfig = dataclasses.field(repr=False)
    api_key: str | None = dataclasses.field(default=None, repr=False)
    rpc_metadata: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    source: str = "environment"

    @property
    def tls_on(self) -> bool:
        return self.tls is not False

    def describe(self) -> str:
        """For logs and errors: everything a person needs to recognise the setting, no secret."""
        auth = ", API key" if self.api_key else ""
        if isinstance(self.tls, TLSConfig) and self.tls.client_cert:
            auth += ", mTLS client certificate"
        return (
            f"{self.target_host} (namespace {self.namespace}, TLS {'on' if self.tls_on else 'off'}{auth}; "
            f"from {self.source})"
        )

    def connect_args(self) -> dict:
        return {
            "target_host": self.target_host,
            "namespace": self.namespace,
            "api_key": self.api_key,
            "tls": self.tls,
            "rpc_metadata": self.rpc_metadata,
        }

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text


def default_config_file() -> Path:
    """Where envconfig looks without TEMPORAL_CONFIG_FILE (Rust `dirs::config_dir()`), for messages."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("APPDATA", Path.home()))
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if xdg.startswith("/") else Path.home() / ".config"
    return base / "temporalio" / "temporal.toml"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read envconfig (file, then environment on top) and refuse what would fail later or silently."""
    env = os.environ if environ is None else environ
    named_file = env.get("TEMPORAL_CONFIG_FILE") or None
    config_file = Path(named_file) if named_file else default_config_file()
    if named_file and not config_file.is_file():
        raise UserError(
            f"TEMPORAL_CONFIG_FILE names {config_file}, which is not a file. Point it at a Temporal "
            f"TOML config file or unset it (see {DOC})."
        )
    profile_name = env.get("TEMPORAL_PROFILE") or None
    check_tls_variables(env)
    overrides = None if environ is None else dict(environ)
    try:
        profile = ClientConfigProfile.load(config_file_strict=True, override_env_vars=overrides)
    except RuntimeError as err:
        raise UserError(config_error(err, config_file, profile_name, overrides)) from None
    # `export TEMPORAL_API_KEY=` means no key (not an empty one that turns TLS on); likewise no server name.
    if profile.api_key == "":
        profile = dataclasses.replace(profile, api_key=None)
    if profile.tls is not None and profile.tls.server_name == "":
        profile = dataclasses.replace(profile, tls=dataclasses.replace(profile.tls, server_name=None))

    sources = [f"profile {profile_name or 'default'} in {config_file}"] if config_file.is_file() else []
    if any(name in CONNECTION_VARIABLES or name.startswith(VARIABLE_PREFIXES) for name in env):
        sources.append("TEMPORAL_* variables")
    source = " and ".join(sources) or "defaults"
    check_tls_files(profile, env, source)
    address = profile.address or DEFAULT_ADDRESS
    if not valid_address(address):
        raise UserError(
            f"Temporal address {address!r} (from {source}) is not host:port, e.g. localhost:7233 or "
            f"my-ns.a1b2c.tmprl.cloud:7233 (no scheme, no path). Fix TEMPORAL_ADDRESS or the profile's "
            f"`address` (see {DOC})."
        )
    try:
        connect = profile.to_client_connect_config()  # reads the certificate files
    except OSError as err:
        raise UserError(f"cannot read {err.filename} ({err.strerror}) named in {source}; see {DOC}") from None
    return Settings(
        target_host=address,
        namespace=connect.get("namespace") or DEFAULT_NAMESPACE,
        tls=connect.get("tls", False),
        api_key=connect.get("api_key"),
        rpc_metadata=connect.get("rpc_metadata", {}),
        source=source,
    )


def check_tls_variables(env: Mapping[str, str]) -> None:
    """envconfig ignores a value it cannot parse, yet any TEMPORAL_TLS* variable turns TLS on."""
    for name in ("TEMPORAL_TLS", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION"):
        if env.get(name) is not None and env[name].lower() not in BOOLEANS:
            raise UserError(f"{name}={env[name]!r} is not a boolean; use true or false (see {DOC}).")
    if env.get("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "").lower() in ("true", "1"):
        raise UserError(
            "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION is not supported by the Temporal Python SDK, which "
            "always verifies the server; name the server's CA with TEMPORAL_TLS_SERVER_CA_CERT_PATH and, "
            f"if the address is not in its certificate, its name with TEMPORAL_TLS_SERVER_NAME (see {DOC})."
        )


def valid_address(address: str) -> bool:
    match = ADDRESS.match(address)
    return match is not None and 0 < int(match.group(1)) < 65536


def config_error(
    err: RuntimeError, config_file: Path, profile: str | None, env: Mapping[str, str] | None
) -> str:
    """envconfig's message without TOML excerpts (they may quote a secret) and with the way out."""
    text = str(err)
    if text.startswith("Profile '"):
        try:
            names = sorted(ClientConfig.load(override_env_vars=env).profiles)
        except RuntimeError:
            names = []
        found = f"it has {', '.join(names)}" if names else "it has no profiles"
        where = config_file if config_file.is_file() else f"{config_file}, which does not exist"
        return (
            f"TEMPORAL_PROFILE={profile!r} is not a profile in {where} ({found}). Set TEMPORAL_PROFILE "
            f"to one of them, point TEMPORAL_CONFIG_FILE at the file that has it, or unset it (see {DOC})."
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = lines[0] if len(lines) == 1 else f"{lines[0]}: {lines[-1]}"
    return f"the Temporal connection settings are invalid: {detail} (config file {config_file}; see {DOC})."


def check_tls_files(profile: ClientConfigProfile, env: Mapping[str, str], source: str) -> None:
    if profile.tls is None:
        return
    for field, variable, key, what in TLS_FILES:
        path = getattr(profile.tls, field)
        if isinstance(path, Path) and not path.is_file():
            origin = variable if env.get(variable) else f"`tls.{key}` of {source}"
            raise UserError(f"the TLS {what} {path} (from {origin}) does not exist; fix the path, see {DOC}.")
    if (profile.tls.client_cert is None) != (profile.tls.client_private_key is None):
        raise UserError(
            "mTLS needs both a client certificate and its key: set TEMPORAL_TLS_CLIENT_CERT_PATH and "
            "TEMPORAL_TLS_CLIENT_KEY_PATH, or `tls.client_cert_path` and `tls.client_key_path` in the "
            f"profile (see {DOC})."
        )


@functools.cache
def runtime() -> Runtime:
    """The SDK's core writes its warnings (e.g. retried RPCs) to stdout by default; stdout belongs to
    `--json`, so they are forwarded to Python logging, which writes to stderr."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
        )
    )


async def connect(settings: Settings | None = None) -> Client:
    """Connect with the pydantic converter, so specs and outputs cross the wire as models."""
    settings = settings or load_settings()
    try:
        return await Client.connect(
            **settings.connect_args(), data_converter=pydantic_data_converter, runtime=runtime()
        )
    except (RuntimeError, ValueError, RPCError) as err:
        raise UserError(settings.redact(unreachable(settings, err))) from None


def unreachable(settings: Settings, err: Exception) -> str:
    text = err.message if isinstance(err, RPCError) else str(err)
    if isinstance(err, RPCError):
        hint = "Check the API key or client certificate and that they are allowed in this namespace."
    elif settings.tls_on and "InvalidContentType" in text:
        hint = (
            "The server answered without TLS; TLS is on because of TEMPORAL_API_KEY or TEMPORAL_TLS* "
            "settings: set TEMPORAL_TLS=false for a server without TLS, or fix the address."
        )
    elif settings.tls_on and not any(cause in text for cause in NOBODY_THERE):
        hint = (
            "The TLS handshake or the first call failed: check the server CA "
            "(TEMPORAL_TLS_SERVER_CA_CERT_PATH), the server name (TEMPORAL_TLS_SERVER_NAME), and for mTLS "
            "the client certificate and key."
        )
    else:
        hint = (
            "Start it (`make demo` starts a local one) or point TEMPORAL_ADDRESS / TEMPORAL_PROFILE at "
            "your cluster."
        )
    return f"cannot reach the Temporal server at {settings.describe()}: {text}. {hint} (See {DOC}.)"
