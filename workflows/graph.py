"""Run independent branches of the deployment concurrently; on the first failure, stop the rest.

`asyncio.gather` would raise while siblings keep running, and a sibling's create finishing after the
rollback had passed its resource would leak. So: cancel the siblings and wait until every one has
settled before the caller unwinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from temporalio import workflow

T = TypeVar("T")


class TaskGraph:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def add(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start a branch now; other branches depend on it by awaiting the returned task."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.append(task)
        return task

    async def run(self) -> None:
        """Wait for every branch; on the first failure (or cancellation), settle the rest, then raise."""
        try:
            await workflow.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        except BaseException:  # the workflow itself was cancelled
            await self._settle()
            raise
        failed = [t for t in self._tasks if t.done() and not t.cancelled() and t.exception()]
        if failed:
            await self._settle()
            raise failed[0].exception()  # type: ignore[misc]

    async def results(self) -> list[Any]:
        """`run`, then every branch's result in the order added."""
        await self.run()
        return [task.result() for task in self._tasks]

    async def _settle(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def gather_settled(*coroutines: Coroutine[Any, Any, T]) -> list[T]:
    """`asyncio.gather` for sibling steps (one per AZ or instance) with `TaskGraph`'s failure rule.

    With a plain gather, a sibling create still in flight when the other fails would land after the
    rollback had passed its compensation, and leak.
    """
    graph = TaskGraph()
    for coroutine in coroutines:
        graph.add(coroutine)
    return await graph.results()
