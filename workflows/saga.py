"""Compensations, registered before their forward step and unwound in reverse order.

Registering first means a create whose reply was lost (or whose worker died) is still cleaned up: the
compensation finds the resource by its tags, and finds nothing harmlessly when it was never made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio import workflow

from models.resources import DeleteInput


@dataclass(frozen=True)
class Compensation:
    step: str
    summary: str
    activity: Callable[..., Any]
    request: DeleteInput


class Saga:
    def __init__(self) -> None:
        self._stack: list[Compensation] = []

    def register(self, compensation: Compensation) -> None:
        self._stack.append(compensation)

    async def unwind(self, run: Callable[[Compensation], Awaitable[None]]) -> list[tuple[Compensation, str]]:
        """Run every compensation, newest first; returns what could not be undone, with why.

        A compensation that fails for good does not stop the others: each resource left behind is
        reported by the caller, never hidden.
        """
        left_behind: list[tuple[Compensation, str]] = []
        while self._stack:
            compensation = self._stack.pop()
            try:
                await run(compensation)
            except Exception as err:  # noqa: BLE001 - reported, and the unwind goes on
                workflow.logger.warning("compensation %s failed: %s", compensation.step, err)
                left_behind.append((compensation, root_message(err)))
        return left_behind


async def shielded(awaitable: Awaitable[Any]) -> Any:
    """Await to the end even if the workflow is cancelled meanwhile (rollback must finish)."""
    task = asyncio.ensure_future(awaitable)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise


def root_message(err: BaseException) -> str:
    """The innermost cause's message: AWS's words, not 'Activity task failed'."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err) or type(err).__name__
