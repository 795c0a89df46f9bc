"""Polling assertions instead of sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout: float = 30.0
) -> T:
    """Call `probe` until `until(result)` holds; fail with the last result after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await probe()
        except Exception:  # noqa: BLE001 - not ready yet (e.g. no worker has answered a query)
            result = None  # type: ignore[assignment]
        if result is not None and until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s; last: {result!r}")
        await asyncio.sleep(0.05)
