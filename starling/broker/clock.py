"""The time and the event loop, as the core reads and uses them.

A `Broker` holds one `Clock` (`Broker(clock=...)`), and its clients, sessions
and timer wheel read the time and schedule work through it: the idle timeout,
the keepalive, retry_interval, the will delay, the housekeeping tick, the tasks
that await an authentication or an ACL answer.  The default reads the system's
monotonic and wall clocks and schedules on the running event loop; a test puts
in a clock it moves by hand (`tests/helpers/channels.py`), so a keepalive
timeout or a resend is checked without waiting for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol, TypeVar

T = TypeVar("T")


class Timer(Protocol):
    """What `call_later` returns: a pending call that can be cancelled."""

    def cancel(self) -> None: ...


class Clock:
    """System time and the running event loop (see the module docstring)."""

    __slots__ = ("_recent", "monotonic", "time")

    def __init__(self) -> None:
        #: Seconds on a clock that never goes back (deadlines, ages).
        self.monotonic: Callable[[], float] = time.monotonic
        #: Seconds since the epoch (what the API shows: connected at, created at).
        self.time: Callable[[], float] = time.time
        self._recent = 0.0

    def shared_monotonic(self) -> float:
        """`monotonic()`, but readings less than a millisecond apart return the same
        float object.  A connection keeps the time of its last read (`last_seen`):
        an idle one keeps one float (24 bytes), and connections read together (a
        reconnect storm) then share one."""
        now = self.monotonic()
        recent = self._recent
        if now - recent < 0.001:
            return recent
        self._recent = now
        return now

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run `callback(*args)` on the loop's next turn."""
        asyncio.get_running_loop().call_soon(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Run `callback(*args)` in `delay` seconds, unless cancelled first."""
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    def create_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` as a task of the loop."""
        return asyncio.get_running_loop().create_task(coro)


#: The clock of whatever is made without one (a `Session` outside a broker).
DEFAULT_CLOCK: Final = Clock()
