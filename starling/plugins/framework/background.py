"""Small pieces shared by plugins that run a background task on an interval."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starling.config import parse_duration


def positive_duration(value: str) -> float:
    """A config duration (``500ms``, ``1s``, ``60s``) of at least 10 ms."""
    seconds = parse_duration(value)
    if seconds < 0.01:
        raise ValueError("must be at least 10ms")
    return seconds


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a plugin's task and wait until it has ended (unload leaves no task)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
