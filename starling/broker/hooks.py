"""The hooks bus: the one extension seam of the core (EMQ X v3 hook names).

Callbacks are ordered by priority (higher first; equal priorities keep
registration order).  `run` calls each in turn until one returns `STOP`;
`run_fold` threads an accumulator: a callback returns the new value, `None`
to leave it unchanged, or `Stop(value)` to end the chain with it.  Every
callback runs in a guard: an exception is logged and counted and the chain
goes on, so a broken plugin cannot take a connection down.

Each point has its callback type (`OnClientConnected`, ...; docs/plugins.md
lists them): `Hooks.add` is overloaded on the point, so mypy checks a plugin's
callback against it.  Callbacks get values (`ClientInfo`, `SessionSnapshot`,
`Message`), never a live connection or session.

The hot path asks `hooks.has(point)` (or `point in hooks.active`, the same
without a call) before building any arguments.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal, TypeAlias, overload

from starling.mqtt import ReasonCode, SubscriptionOptions

from .info import AuthResult, AuthStep, ClientInfo
from .message import Message
from .snapshots import SessionSnapshot

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

# -- the callback of each point (what `Hooks.add` checks) ---------------------------------
# Notification points (`run`) ignore what a callback returns, except `STOP`; fold points
# (`run_fold`) take the accumulator last and answer a new value, None or `Stop(value)`;
# those marked "may be a coroutine" are awaited (auth and ACL backends do I/O).

#: client.connect: a CONNECT (or a gateway's connect) arrived; before the ban check
#: and authentication.
OnClientConnect: TypeAlias = Callable[[ClientInfo], object]
#: client.connack: the broker answers the connect, with its reason code (success or not).
OnClientConnack: TypeAlias = Callable[[ClientInfo, ReasonCode], object]
#: client.connected: the client is connected (its session open, CONNACK sent).
OnClientConnected: TypeAlias = Callable[[ClientInfo], object]
#: client.disconnected: a connected client's connection ended, and why.
OnClientDisconnected: TypeAlias = Callable[[ClientInfo, str], object]
AuthAnswer: TypeAlias = AuthResult | Stop | None
#: client.authenticate (fold, may be a coroutine): the accumulator starts as success
#: (anonymous) or not_authorized, after `allow_anonymous`.
OnClientAuthenticate: TypeAlias = Callable[
    [ClientInfo, AuthResult], AuthAnswer | Awaitable[AuthAnswer]]
EnhancedAuthAnswer: TypeAlias = AuthStep | Stop | None
#: client.enhanced_authenticate (fold, may be a coroutine): (client, method, data, acc).
OnClientEnhancedAuthenticate: TypeAlias = Callable[
    [ClientInfo, str, bytes | None, AuthStep | None],
    EnhancedAuthAnswer | Awaitable[EnhancedAuthAnswer]]
AclAnswer: TypeAlias = str | Stop | None
#: client.check_acl (fold, may be a coroutine): (client, "publish" | "subscribe", topic,
#: "allow" | "deny"); answer "allow" / "deny".
OnClientCheckAcl: TypeAlias = Callable[
    [ClientInfo, str, str, str], AclAnswer | Awaitable[AclAnswer]]
#: client.subscribe: what one SUBSCRIBE asked for, before any check.
OnClientSubscribe: TypeAlias = Callable[
    [ClientInfo, list[tuple[str, SubscriptionOptions]]], object]
#: client.unsubscribe: the filters one UNSUBSCRIBE named.
OnClientUnsubscribe: TypeAlias = Callable[[ClientInfo, list[str]], object]
#: session.created / resumed / takeovered / discarded: (client id, the session).
OnSession: TypeAlias = Callable[[str, SessionSnapshot], object]
#: session.terminated: (client id, why it ended, the session as it was).
OnSessionTerminated: TypeAlias = Callable[[str, str, SessionSnapshot], object]
#: session.subscribed: one filter subscribed (client id, filter, options).
OnSessionSubscribed: TypeAlias = Callable[[str, str, SubscriptionOptions], object]
#: session.unsubscribed: one filter unsubscribed (client id, filter).
OnSessionUnsubscribed: TypeAlias = Callable[[str, str], object]
#: message.publish (fold): the message is the accumulator; answer a `Message` to
#: route, None to leave it, `Stop(None)` to take it (it is not routed).
OnMessagePublish: TypeAlias = Callable[[Message], Message | Stop | None]
#: message.delivered: a copy went to a subscriber's session (its client id).
OnMessageDelivered: TypeAlias = Callable[[str, Message], object]
#: message.acked: the client acknowledged a QoS 1/2 delivery (PUBACK, PUBCOMP).
OnMessageAcked: TypeAlias = Callable[[ClientInfo, Message], object]
#: message.dropped: routed to nobody (reason "no_subscribers").
OnMessageDropped: TypeAlias = Callable[[Message, str], object]


@dataclass(slots=True)
class _Entry:
    priority: int
    seq: int
    callback: Callback


class Hooks:
    def __init__(self) -> None:
        self._chains: dict[HookPoint, list[_Entry]] = {p: [] for p in HookPoint}
        #: The points with at least one callback (`has`, without a call).
        self.active: set[HookPoint] = set()
        self._seq = 0
        #: Points with at least one coroutine callback: the core awaits those
        #: (`run_fold_async`) instead of folding in place.
        self.async_points: set[HookPoint] = set()
        #: Callback exceptions caught so far (exposed for monitoring and tests).
        self.errors = 0

    @overload
    def add(self, point: Literal[HookPoint.CLIENT_CONNECT], callback: OnClientConnect,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_CONNACK], callback: OnClientConnack,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_CONNECTED], callback: OnClientConnected,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_DISCONNECTED], callback: OnClientDisconnected,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_AUTHENTICATE], callback: OnClientAuthenticate,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_ENHANCED_AUTHENTICATE], callback: OnClientEnhancedAuthenticate,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_CHECK_ACL], callback: OnClientCheckAcl,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_SUBSCRIBE], callback: OnClientSubscribe,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.CLIENT_UNSUBSCRIBE], callback: OnClientUnsubscribe,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.SESSION_CREATED, HookPoint.SESSION_RESUMED,
                                 HookPoint.SESSION_TAKEOVERED, HookPoint.SESSION_DISCARDED],
            callback: OnSession, priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.SESSION_TERMINATED], callback: OnSessionTerminated,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.SESSION_SUBSCRIBED], callback: OnSessionSubscribed,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.SESSION_UNSUBSCRIBED], callback: OnSessionUnsubscribed,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.MESSAGE_PUBLISH], callback: OnMessagePublish,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.MESSAGE_DELIVERED], callback: OnMessageDelivered,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.MESSAGE_ACKED], callback: OnMessageAcked,
            priority: int = ...) -> None: ...
    @overload
    def add(self, point: Literal[HookPoint.MESSAGE_DROPPED], callback: OnMessageDropped,
            priority: int = ...) -> None: ...

    def add(self, point: HookPoint, callback: Callback, priority: int = 0) -> None:
        """Attach `callback` to `point` (its type per point: `OnClientConnected`, ...)."""
        self.add_dynamic(point, callback, priority)

    def add_dynamic(self, point: HookPoint, callback: Callback, priority: int = 0) -> None:
        """`add` for a point chosen at run time (rules, web hooks, Lua scripts): the
        callback's signature cannot be checked against the point's."""
        point = HookPoint(point)
        self._seq += 1
        chain = self._chains[point]
        chain.append(_Entry(priority, self._seq, callback))
        chain.sort(key=lambda e: (-e.priority, e.seq))
        self.active.add(point)
        self._note_async(point)

    def remove(self, point: HookPoint, callback: Callback) -> None:
        point = HookPoint(point)
        chain = self._chains[point]
        chain[:] = [e for e in chain if e.callback != callback]
        if not chain:
            self.active.discard(point)
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
