"""Why targets are not healthy, in the words ELB gives: the health wait's timeout names them.

"timed out waiting for every target to pass its health check" says nothing a person can act on; the
targets' states and reasons (Target.ResponseCodeMismatch on a health check path the app does not serve,
Target.Timeout, Target.FailedHealthChecks when nothing listens) do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from temporalio.exceptions import ApplicationError


def not_healthy(elbv2: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> str:
    """'i-1 unhealthy (Target.ResponseCodeMismatch: ...), ...'; empty when every one is healthy or
    the describe fails (the timeout's own message then stands alone)."""
    try:
        described = elbv2.describe_target_health(TargetGroupArn=target_group_arn, Targets=targets)
    except (ClientError, BotoCoreError):
        return ""
    words = []
    for item in described["TargetHealthDescriptions"]:
        health = item["TargetHealth"]
        if health["State"] == "healthy":
            continue
        why = ": ".join(filter(None, [health.get("Reason"), health.get("Description")]))
        words.append(f"{item['Target']['Id']} {health['State']}" + (f" ({why})" if why else ""))
    return ", ".join(words)


@contextmanager
def naming_unhealthy_targets(
    elbv2: Any, target_group_arn: str, targets: list[dict[str, Any]]
) -> Iterator[None]:
    """A wait's timeout inside gains the targets that are not healthy and why."""
    try:
        yield
    except ApplicationError as err:
        if err.type != "WaitTimeout":
            raise
        detail = not_healthy(elbv2, target_group_arn, targets)
        if not detail:
            raise
        raise ApplicationError(
            f"{err.message}; not healthy: {detail}", type=err.type, non_retryable=err.non_retryable
        ) from None
