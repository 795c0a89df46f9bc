"""Targets held at `initial` health: a rollout waits at its new batch's health check for as long as
a test (or the history recorder) needs it to, e.g. to send another `up`, `cancel` or `down` meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import boto3


class HeldHealth:
    """While `held`, instances not in `serving` that AWS reports healthy are reported `initial`.
    Registered on the worker's session before it builds its first client."""

    def __init__(self, session: boto3.Session) -> None:
        self.held = False
        self.serving: set[str] = set()
        self._lock = threading.Lock()
        session.events.register("after-call.elbv2.DescribeTargetHealth", self._rewrite)

    def _rewrite(self, parsed: dict[str, Any], **_: Any) -> None:
        if not self.held:
            return
        with self._lock:
            serving = set(self.serving)
        for item in parsed.get("TargetHealthDescriptions", []):
            if item["Target"]["Id"] not in serving and item["TargetHealth"]["State"] == "healthy":
                item["TargetHealth"] = {"State": "initial", "Reason": "Elb.RegistrationInProgress"}
