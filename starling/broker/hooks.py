"""The hooks bus: the one extension seam of the core (EMQ X v3 hook names).

Callbacks are ordered by priority (higher first; equal priorities keep
registration order).  `run` calls each in turn until one returns `STOP`;
`run_fold` threads an accumulator: a callback returns the new value, `None`
to leave it unchanged, or `Stop(value)` to end the chain with it.  Every
callback runs in a guard: an exception is logged and counted and the chain
goes on, so a broken plugin cannot take a connection down.

The hot path asks `hooks.has(point)` before building any arguments.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

log = logging.getLogger(__name__)


class HookPoint(StrEnum):
    CLIENT_CONNECT = "client.connect"
    CLIENT_CONNACK = "client.connack"
    CLIENT_CONNECTED = "client.connected"
    CLIENT_DISCONNECTED = "client.disconnected"
    CLIENT_AUTHENTICATE = "client.authenticate"
    #: MQTT 5.0 AUTH exchanges (an Authentication Method in CONNECT); Starling's own.
    CLIENT_ENHANCED_AUTHENTICATE = "client.enhanced_authenticate"
    CLIENT_CHECK_ACL = "client.check_acl"
    CLIENT_SUBSCRIBE = "client.subscribe"
    CLIENT_UNSUBSCRIBE = "client.unsubscribe"
    SESSION_CREATED = "session.created"
    SESSION_RESUMED = "session.resumed"
    SESSION_SUBSCRIBED = "session.subscribed"
    SESSION_UNSUBSCRIBED = "session.unsubscribed"
    SESSION_TAKEOVERED = "session.takeovered"
    SESSION_DISCARDED = "session.discarded"
    SESSION_TERMINATED = "session.terminated"
    MESSAGE_PUBLISH = "message.publish"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_ACKED = "message.acked"
    MESSAGE_DROPPED = "message.dropped"


class Points:
    """The `HookPoint` members as plain class attributes, for the hot path.

    On Python 3.11 `EnumType` defines `__getattr__`, which sends every attribute
    lookup on an enum class through CPython's slow generic path: `HookPoint.X`
    costs ~70 ns (~2,000 instructions), `Points.X` ~10 ns, for the same member.
    """

    CLIENT_CONNECT = HookPoint.CLIENT_CONNECT
    CLIENT_CONNACK = HookPoint.CLIENT_CONNACK
    CLIENT_CONNECTED = HookPoint.CLIENT_CONNECTED
    CLIENT_DISCONNECTED = HookPoint.CLIENT_DISCONNECTED
    CLIENT_AUTHENTICATE = HookPoint.CLIENT_AUTHENTICATE
    CLIENT_ENHANCED_AUTHENTICATE = HookPoint.CLIENT_ENHANCED_AUTHENTICATE
    CLIENT_CHECK_ACL = HookPoint.CLIENT_CHECK_ACL
    CLIENT_SUBSCRIBE = HookPoint.CLIENT_SUBSCRIBE
    CLIENT_UNSUBSCRIBE = HookPoint.CLIENT_UNSUBSCRIBE
    SESSION_CREATED = HookPoint.SESSION_CREATED
    SESSION_RESUMED = HookPoint.SESSION_RESUMED
    SESSION_SUBSCRIBED = HookPoint.SESSION_SUBSCRIBED
    SESSION_UNSUBSCRIBED = HookPoint.SESSION_UNSUBSCRIBED
    SESSION_TAKEOVERED = HookPoint.SESSION_TAKEOVERED
    SESSION_DISCARDED = HookPoint.SESSION_DISCARDED
    SESSION_TERMINATED = HookPoint.SESSION_TERMINATED
    MESSAGE_PUBLISH = HookPoint.MESSAGE_PUBLISH
    MESSAGE_DELIVERED = HookPoint.MESSAGE_DELIVERED
    MESSAGE_ACKED = HookPoint.MESSAGE_ACKED
    MESSAGE_DROPPED = HookPoint.MESSAGE_DROPPED


class _StopMarker:
    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


#: Returned by a `run` callback to end the chain.
STOP: Final = _StopMarker()


@dataclass(frozen=True, slots=True)
class Stop:
    """Returned by a `run_fold` callback to end the chain with `value`."""

    value: Any


Callback = Callable[..., Any]


@dataclass(slots=True)
class _Entry:
    priority: int
    seq: int
    callback: Callback


class Hooks:
    def __init__(self) -> None:
        self._chains: dict[HookPoint, list[_Entry]] = {p: [] for p in HookPoint}
        self._seq = 0
        #: Points with at least one coroutine callback: the core awaits those
        #: (`run_fold_async`) instead of folding in place.
        self.async_points: set[HookPoint] = set()
        #: Callback exceptions caught so far (exposed for monitoring and tests).
        self.errors = 0

    def add(self, point: HookPoint, callback: Callback, priority: int = 0) -> None:
        point = HookPoint(point)
        self._seq += 1
        chain = self._chains[point]
        chain.append(_Entry(priority, self._seq, callback))
        chain.sort(key=lambda e: (-e.priority, e.seq))
        self._note_async(point)

    def remove(self, point: HookPoint, callback: Callback) -> None:
        point = HookPoint(point)
        chain = self._chains[point]
        chain[:] = [e for e in chain if e.callback != callback]
        self._note_async(point)

    def _note_async(self, point: HookPoint) -> None:
        if any(_is_coroutine_callback(e.callback) for e in self._chains[point]):
            self.async_points.add(point)
        else:
            self.async_points.discard(point)

    def is_async(self, point: HookPoint) -> bool:
        """Does some callback on `point` have to be awaited?"""
        return point in self.async_points

    def has(self, point: HookPoint) -> bool:
        return bool(self._chains[point])

    def callbacks(self, point: HookPoint) -> list[Callback]:
        return [e.callback for e in self._chains[point]]

    def run(self, point: HookPoint, *args: Any) -> bool:
        """Run the chain; return False if a callback stopped it."""
        for entry in tuple(self._chains[point]):
            try:
                if entry.callback(*args) is STOP:
                    return False
            except Exception:
                self._failed(point, entry)
        return True

    def run_fold(self, point: HookPoint, args: tuple[Any, ...], acc: Any) -> Any:
        maybe_async = point in self.async_points
        for entry in tuple(self._chains[point]):
            try:
                result = entry.callback(*args, acc)
            except Exception:
                self._failed(point, entry)
                continue
            if maybe_async and inspect.isawaitable(result):
                # A coroutine callback reached from a synchronous fold: it cannot
                # answer here, so it is skipped (and counted) rather than
                # mistaken for an answer.
                _discard(result)
                self._failed(point, entry, "is a coroutine in a synchronous fold")
                continue
            if isinstance(result, Stop):
                return result.value
            if result is not None:
                acc = result
        return acc

    async def run_fold_async(self, point: HookPoint, args: tuple[Any, ...], acc: Any) -> Any:
        """As `run_fold`, but callbacks may be coroutine functions (auth backends)."""
        for entry in tuple(self._chains[point]):
            try:
                result = entry.callback(*args, acc)
                if hasattr(result, "__await__"):
                    result = await result
            except Exception:
                self._failed(point, entry)
                continue
            if isinstance(result, Stop):
                return result.value
            if result is not None:
                acc = result
        return acc

    def _failed(self, point: HookPoint, entry: _Entry, why: str = "") -> None:
        self.errors += 1
        if why:
            log.error("hook %s callback %r %s", str(point), entry.callback, why)
        else:
            log.exception("hook %s callback %r failed", str(point), entry.callback)


def _is_coroutine_callback(callback: Callback) -> bool:
    if inspect.iscoroutinefunction(callback):
        return True
    # An object whose __call__ is a coroutine function.
    call = vars(type(callback)).get("__call__") if not inspect.isroutine(callback) else None
    return call is not None and inspect.iscoroutinefunction(call)


def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # no "coroutine was never awaited" warning
