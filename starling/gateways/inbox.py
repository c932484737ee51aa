"""A client's inbound messages, handled one at a time and in order.

A gateway client's protocol handler may await (authentication and ACL can do
I/O), so a message that arrives while another is being handled waits here.
The inbox is bounded: `put` refuses past `limit` waiting messages and the
adapter decides what that means (UDP drops the datagram and counts it; TCP
stops reading the socket).  While idle an inbox holds no task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Inbox(Generic[T]):
    __slots__ = ("_handle", "_items", "_task", "limit")

    def __init__(self, handle: Callable[[T], Awaitable[None]], limit: int) -> None:
        self._handle = handle
        self._items: deque[T] = deque()
        self._task: asyncio.Task[None] | None = None
        self.limit = limit

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Queue an item for handling; False (and nothing queued) when full."""
        if len(self._items) >= self.limit:
            return False
        self._items.append(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    async def _run(self) -> None:
        items = self._items
        try:
            while items:
                try:
                    await self._handle(items.popleft())
                except Exception:
                    # One bad message must not stop the client's later ones.
                    log.exception("gateway client failed to handle a message")
        finally:
            self._task = None

    def close(self) -> None:
        """Drop what waits and stop handling (the client is gone)."""
        self._items.clear()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
