"""Slow and greedy HTTP clients: a deadline for each request, a cap per address.

uvicorn closes a keep-alive connection left idle after a response, but waits
for ever for a request that never arrives or never finishes, and any data
(one byte of a header) cancels its idle timer.  So a few idle sockets can hold
every slot of `max_connections` and every real API call is refused.  Each
HTTP listener therefore runs uvicorn's h11 protocol with two more rules:

- **request timeout**: from the moment a connection opens, and again from the
  end of each response, the client has `request_timeout` seconds to send a
  complete request (headers and body).  Past it the connection is closed: a
  client that had started a request first gets ``408`` in the API's JSON
  envelope, an idle one is closed silently (as a keep-alive close).  The time
  the API takes to answer does not count.
- **connections per address**: at most `max_per_address` open connections
  from one IP address; a connection beyond it gets ``503`` at once and is
  closed, so one host cannot fill the listener.

Both are counted in the listener's `shutdown_count` (``/api/v3/listeners``)
as ``request_timeout`` and ``max_conns_per_address``, and logged at most
once per `LOG_INTERVAL` per listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: Seconds between two log lines about the same kind of refusal on one listener.
LOG_INTERVAL = 10.0
#: Seconds a refused connection is still read (and what arrives dropped) after its
#: answer, so that closing it with unread data does not reset it and lose the answer.
LINGER = 2.0
#: The client's states while its request is still coming (h11's names).
_RECEIVING = (h11.IDLE, h11.SEND_BODY)


def _json_response(status: str, code: int, message: str) -> bytes:
    body = f'{{"code":{code},"message":"{message}"}}'.encode()
    head = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


TIMED_OUT = _json_response("408 Request Timeout", 102, "request timeout")
TOO_MANY = _json_response("503 Service Unavailable", 102,
                          "too many connections from your address")


class HttpGuard:
    """One listener's limits and what they refused (see the module docstring)."""

    def __init__(self, listener: str, request_timeout: float, max_per_address: int) -> None:
        self.listener = listener
        #: Seconds a client has to send a complete request; 0 = no limit.
        self.request_timeout = request_timeout
        #: Open connections allowed from one address; 0 = no limit.
        self.max_per_address = max_per_address
        self.open_by_address: Counter[str] = Counter()
        self.shutdown_count: Counter[str] = Counter()
        self._logged: dict[str, float] = {}

    def admit(self, host: str) -> bool:
        """May a new connection from `host` stay?  (If so it counts until `release`.)"""
        count = self.open_by_address[host]
        limit = self.max_per_address
        if limit and count >= limit:
            self._refused("max_conns_per_address",
                          "connection from %s refused: %d connections from that address "
                          "are open (max_connections_per_address)", host, limit)
            return False
        self.open_by_address[host] = count + 1
        return True

    def release(self, host: str) -> None:
        count = self.open_by_address[host] - 1
        if count > 0:
            self.open_by_address[host] = count
        else:
            del self.open_by_address[host]

    def timed_out(self, host: str) -> None:
        self._refused("request_timeout",
                      "connection from %s closed: no complete request within %gs "
                      "(request_timeout)", host, self.request_timeout)

    def _refused(self, kind: str, message: str, *args: Any) -> None:
        self.shutdown_count[kind] += 1
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_INTERVAL) >= LOG_INTERVAL:
            self._logged[kind] = now
            log.warning("%s: " + message + " (%d such since start)", self.listener, *args,
                        self.shutdown_count[kind])


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under an `HttpGuard` (`guarded_protocol` binds one)."""

    guard: ClassVar[HttpGuard]
    _host: str
    _admitted: bool
    _deadline: asyncio.TimerHandle | None
    _started: bool
    _closing: bool

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._host = self.client[0] if self.client else ""
        self._deadline = None
        self._started = self._closing = False
        self._admitted = self.guard.admit(self._host)
        if not self._admitted:
            self._close_with(TOO_MANY)
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._let_go()
        super().connection_lost(exc)

    def _let_go(self) -> None:
        """The connection no longer holds a place: neither in its address's count
        nor in the listener's connections (`max_connections`)."""
        if self._admitted:
            self._admitted = False
            self.guard.release(self._host)
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # answered already: dropped while the connection lingers
        self._started = True
        super().data_received(data)
        if self.conn.their_state not in _RECEIVING:
            self._disarm()  # the whole request is in: the API's time does not count

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state in _RECEIVING:
            self._arm()  # the next request's time starts now

    def _arm(self) -> None:
        self._disarm()
        self._started = bool(self.conn.trailing_data[0])  # a pipelined request begun
        timeout = self.guard.request_timeout
        if timeout > 0:
            self._deadline = self.loop.call_later(timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport.is_closing():
            return
        self.guard.timed_out(self._host)
        if self._started and self.conn.our_state is h11.IDLE:
            self._close_with(TIMED_OUT)  # a request was under way: tell the client why
        else:
            transport.close()

    def _close_with(self, answer: bytes) -> None:
        """Send `answer` and close: our side at once, the socket once the client
        closes too or after `LINGER` (the client's unsent bytes are read and
        dropped meanwhile; a plain close with unread data would reset the
        connection, and the client could lose the answer)."""
        self._closing = True
        self._let_go()
        transport = self.transport
        transport.write(answer)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._deadline = self.loop.call_later(LINGER, transport.close)


def guarded_protocol(guard: HttpGuard) -> type[GuardedH11Protocol]:
    """The protocol class a listener's uvicorn runs (uvicorn makes one per connection)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})
