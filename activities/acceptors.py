"""Waits judged as botocore's waiters judge them, one answer at a time: one function for every wait.

The acceptors (which states mean done, which mean failed, which errors mean "keep waiting") are
botocore's own waiter definitions. Waits ask one describe at a time so they can heartbeat in between,
and shared polls (activities/shared_polls.py) judge each resource's part of a batched answer with the
same acceptors. Among the "keep waiting" errors are the NotFound codes AWS gives for an id it does
not know yet (eventual consistency): `instance_running` retries InvalidInstanceID.NotFound.
"""

from __future__ import annotations

from typing import Any

from botocore import xform_name
from botocore.exceptions import ClientError
from botocore.waiter import is_valid_waiter_error
from temporalio.exceptions import ApplicationError

from activities.errors import not_yet_visible

_CONFIGS: dict[tuple[str, str], Any] = {}


def waiter_config(client: Any, waiter_name: str) -> Any:
    """botocore's definition of a waiter (its operation and acceptors), built once per kind."""
    key = (client.meta.service_model.service_name, waiter_name)
    if key not in _CONFIGS:
        _CONFIGS[key] = client.get_waiter(waiter_name).config
    return _CONFIGS[key]


def matching_acceptor(response: dict[str, Any], acceptors: list[Any]) -> Any | None:
    """The first of botocore's acceptors that matches an answer or an error answer, as its waiter
    picks it: "retry" covers the NotFound that AWS gives for an id it does not know yet."""
    return next((a for a in acceptors if a.matcher_func(response)), None)


def reached(response: dict[str, Any], config: Any, waiter_name: str, what: str) -> bool:
    """One answer judged as botocore's waiter judges it: True on success, False while it would
    keep waiting; a failure state ends the wait for good, and an error no acceptor expects is
    raised as the call's error (classified by aws_errors like any other)."""
    acceptor = matching_acceptor(response, config.acceptors)
    if acceptor is None:
        if not is_valid_waiter_error(response):
            return False
        err = ClientError(response, config.operation)
        if not_yet_visible(err):
            return False  # an id of ours AWS does not know yet: the wait's own timeout bounds this
        raise err
    if acceptor.state == "failure":
        name = waiter_name.title().replace("_", "")  # botocore's waiter name: InstanceRunning
        raise ApplicationError(
            f"{what} failed: Waiter {name} failed: Waiter encountered a terminal failure state: "
            f"{acceptor.explanation}",
            type="WaiterFailure",
            non_retryable=True,
        )
    return acceptor.state == "success"


def waiter_reached(client: Any, waiter_name: str, what: str, params: dict[str, Any]) -> bool:
    """One attempt of a botocore waiter: True when its acceptors say done, False when not yet."""
    config = waiter_config(client, waiter_name)
    try:
        response = getattr(client, xform_name(config.operation))(**params)
    except ClientError as err:
        response = err.response
    return reached(response, config, waiter_name, what)
