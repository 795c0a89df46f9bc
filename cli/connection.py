"""How worker and starter reach Temporal: envconfig profiles and TEMPORAL_* variables, one task queue.

`temporalio.envconfig` reads TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*,
TEMPORAL_PROFILE and the config file, so a Temporal cluster or Temporal Cloud needs no code change.
"""

from __future__ import annotations

import functools
import logging
import os

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from cli.errors import UserError

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "scaleout-deployments"


def task_queue() -> str:
    return os.environ.get("TEMPORAL_TASK_QUEUE") or DEFAULT_TASK_QUEUE


def connect_config() -> dict:
    config = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", DEFAULT_NAMESPACE)
    return config


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


async def connect() -> Client:
    """Connect with the pydantic converter, so specs and outputs cross the wire as models."""
    config = connect_config()
    try:
        return await Client.connect(**config, data_converter=pydantic_data_converter, runtime=runtime())
    except RuntimeError as err:
        raise UserError(
            f"cannot reach the Temporal server at {config['target_host']} "
            f"(namespace {config['namespace']}): {err}. Start it (`make demo` starts a local one) "
            "or point TEMPORAL_ADDRESS / TEMPORAL_PROFILE at your cluster."
        ) from None
