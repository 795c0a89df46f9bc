"""Specs for tests: the tutorial's defaults with fast polls and retries (moto answers instantly)."""

from __future__ import annotations

import uuid
from typing import Any

from models.spec import DeploymentSpec

FAST_TIMING = {
    "poll_interval_seconds": 0.05,
    "heartbeat_timeout_seconds": 10,
    "call_timeout_seconds": 10,
    "retry_initial_interval_seconds": 0.05,
    "retry_maximum_interval_seconds": 0.2,
    "retry_maximum_attempts": 3,
    "nat_gateway_timeout_seconds": 30,
    "load_balancer_timeout_seconds": 30,
    "instance_timeout_seconds": 30,
    "targets_healthy_timeout_seconds": 30,
    "delete_timeout_seconds": 30,
    "consistency_window_seconds": 0.5,
}


def fast_spec(**overrides: Any) -> DeploymentSpec:
    values: dict[str, Any] = {"deployment_id": f"t-{uuid.uuid4().hex[:10]}", "timing": FAST_TIMING}
    values.update(overrides)
    return DeploymentSpec.model_validate(values)
