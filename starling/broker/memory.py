"""Estimates of what one connection holds in memory (for emqx_recon).

`sys.getsizeof` summed over the objects a connection owns: the client
object, its transport's buffers, its session with subscriptions, in-flight
window and queue.  The walk stops at anything shared with the rest of the
broker, so the figure is this connection's own, and gives up after a budget
of objects (the estimate is then a lower bound: `truncated`).  Computed only
when asked for.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from .channel import Channel
from .client import Client
from .hooks import Hooks
from .session import Session

#: Objects visited per connection at most when estimating its memory.
SIZE_BUDGET: Final = 20000

#: Client attributes that point at the broker or at timers, not at what it owns.
_CLIENT_SKIP = frozenset({"broker", "counters", "session", "conn", "_retry_timer"})
#: Transport attributes that hold bytes of this connection.
_CONN_OWN = ("_out", "decoder", "peername", "peercert", "cert_username", "cert_clientid")
#: Session attributes that hold what the session owns.
_SESSION_OWN = ("client_id", "username", "subscriptions", "subscription_ids", "inflight",
                "mqueue", "awaiting_rel")


class ObjectSizer:
    """A bounded `sys.getsizeof` walk: follows containers, `__slots__` and
    `__dict__`, counts each object once, stops at anything shared with the rest
    of the broker (other clients and sessions, the hooks bus, the event loop,
    timers and tasks, and the ids in `shared`), and gives up after `budget`
    objects."""

    STOP_TYPES: tuple[type, ...] = (Client, Session, Hooks, asyncio.AbstractEventLoop,
                                    asyncio.Handle, asyncio.Future, type)

    def __init__(self, shared: Iterable[object] = (), budget: int = SIZE_BUDGET) -> None:
        self.seen: set[int] = {id(obj) for obj in shared}
        self.budget = budget
        self.truncated = False

    def size(self, *roots: Any) -> int:
        total = 0
        stack = list(roots)
        while stack:
            obj = stack.pop()
            if obj is None or id(obj) in self.seen or isinstance(obj, self.STOP_TYPES):
                continue
            if self.budget <= 0:
                self.truncated = True
                break
            self.budget -= 1
            self.seen.add(id(obj))
            total += sys.getsizeof(obj, 0)
            if isinstance(obj, (str, bytes, bytearray, int, float, bool, memoryview)):
                continue
            if isinstance(obj, dict):
                stack.extend(obj.keys())
                stack.extend(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset, deque)):
                stack.extend(obj)
            else:
                for cls in type(obj).__mro__:
                    for name in getattr(cls, "__slots__", ()):
                        stack.append(getattr(obj, name, None))
                attrs = getattr(obj, "__dict__", None)
                if isinstance(attrs, dict):
                    stack.append(attrs)
        return total


@dataclass(frozen=True, slots=True)
class ConnectionMemory:
    """Bytes one connection holds (estimates; `memory` is the sum of the parts)."""

    client_id: str
    username: str | None
    memory: int
    client: int  #: the client object (an MQTT channel) and what only it holds
    transport: int  #: the transport object and its buffers
    send_pend: int  #: bytes written but not sent yet
    session: int
    mqueue_len: int
    inflight_len: int
    truncated: bool


def connection_memory(client: Client, shared: Iterable[object]) -> ConnectionMemory:
    """The memory estimate of one connection (see the module docstring)."""
    sizer = ObjectSizer(shared)
    own = [getattr(client, name, None) for cls in type(client).__mro__
           for name in getattr(cls, "__slots__", ()) if name not in _CLIENT_SKIP]
    client_bytes = sys.getsizeof(client) + sizer.size(*own)
    conn_bytes = 0
    if isinstance(client, Channel):
        conn = client.conn
        conn_bytes = sys.getsizeof(conn) + sizer.size(
            *(getattr(conn, n, None) for n in _CONN_OWN))
    send_pend = client.io_stats()["send_pend"]
    session = client.session
    session_bytes = mqueue_len = inflight_len = 0
    if session is not None:
        session_bytes = sys.getsizeof(session) + sizer.size(
            *(getattr(session, n, None) for n in _SESSION_OWN))
        if session.pending_will is not None:
            session_bytes += sizer.size(session.pending_will[0])
        mqueue_len, inflight_len = len(session.mqueue), len(session.inflight)
    return ConnectionMemory(client.client_id, client.username,
                            client_bytes + conn_bytes + send_pend + session_bytes,
                            client_bytes, conn_bytes, send_pend, session_bytes, mqueue_len,
                            inflight_len, sizer.truncated)
