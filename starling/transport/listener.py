"""Listeners: bind an address (port 0 picks a free one), accept, count.

A listener is named like EMQ X's: ``mqtt:tcp:default``, ``mqtt:tcp:internal``.
Beyond `max_connections` a new connection is closed at once and counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter

from starling.broker import Broker

from .config import ListenerConfig
from .connection import WRITE_HIGH_WATER, MQTTConnection, ReadTurns, TLSConnection, WriteBatcher
from .lean import AVAILABLE as lean_available
from .lean import LeanServer, bind
from .tls import TlsContext
from .ws import WSConnection

log = logging.getLogger(__name__)
#: Shown at any log level: scripts read bound ports from it.
startup_log = logging.getLogger("starling.startup")


class BindError(OSError):
    """A listener could not bind: ``listener <name>: cannot bind <host>:<port>: <why>``."""

    @classmethod
    def of(cls, name: str, host: str, port: int, exc: OSError) -> BindError:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        shown = f"[{host}]" if ":" in host else host
        return cls(exc.errno or 0, f"listener {name}: cannot bind {shown}:{port}: "
                   f"{why[:1].lower()}{why[1:]}")

    def __str__(self) -> str:
        return str(self.strerror)


def parse_bind(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`"0.0.0.0:1883"`, `"1883"` or `"[::1]:1883"` → (host, port)."""
    value = value.strip()
    if value.isdigit():
        return default_host, int(value)
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad bind address {value!r}: expected HOST:PORT or PORT")
    return host.strip("[]") or default_host, int(port)


class Listener:
    def __init__(self, broker: Broker, config: ListenerConfig) -> None:
        self.broker = broker
        self.config = config
        self.name = config.name
        self.zone = config.zone
        self.server: asyncio.base_events.Server | LeanServer | None = None
        #: Open connections (a dict as an ordered set: ~30 bytes an entry, a set ~100).
        self.connections: dict[MQTTConnection, None] = {}
        self.shutdown_count: Counter[str] = Counter()
        self.refused = 0
        #: Connections waiting for the authentication chain now (`max_auth_pending`).
        self.auth_pending = 0
        self.bound: tuple[str, int] = (config.host, config.port)
        self.batcher = WriteBatcher()
        self.read_turns = ReadTurns()
        #: The broker's counters (connections count their bytes in them).
        self.counters = broker.counters
        self.tls = (TlsContext(config.tls, broker.psk_key) if config.tls is not None
                    else None)
        self._rate_tokens = float(config.max_conn_rate)
        self._rate_time = time.monotonic()

    @property
    def lean(self) -> bool:
        """Plain TCP served by `LeanServer` (`transport = "lean"`) rather than the
        event loop's transports, where there is an epoll.  TLS and WebSocket always
        use the loop's."""
        return (self.config.transport == "lean" and self.config.kind == "tcp"
                and self.tls is None and lean_available)

    @property
    def current_connections(self) -> int:
        return len(self.connections)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        factory: type[MQTTConnection] = MQTTConnection
        if self.config.kind in ("ws", "wss"):
            factory = WSConnection
        elif self.tls is not None:
            factory = TLSConnection
        config = self.config
        # Port 0 picks a free port the first time; a listener stopped and started
        # again (API, ctl) comes back on the port its clients already know.
        port = config.port or self.bound[1]
        try:
            if self.lean:
                self.server = LeanServer(
                    loop, lambda: factory(self),
                    bind(config.host, port, reuse_port=config.reuse_port),
                    config.backlog, WRITE_HIGH_WATER)
            else:
                self.server = await loop.create_server(
                    lambda: factory(self),
                    config.host, port, backlog=config.backlog,
                    reuse_address=True, reuse_port=config.reuse_port or None,
                    ssl=self.tls.context if self.tls is not None else None)
        except OSError as exc:
            raise BindError.of(self.name, config.host, port, exc) from None
        if self.tls is not None:
            self.tls.start_watching()
        addr = self.server.sockets[0].getsockname()
        self.bound = (addr[0], addr[1])
        # Scripts and tests read the real port from this line; keep its shape.
        startup_log.info("listener %s on %s:%d", self.name, addr[0], addr[1])

    async def stop(self) -> None:
        if self.tls is not None:
            self.tls.stop_watching()
        if self.server is not None:
            self.server.close()
            for conn in list(self.connections):
                conn.close(linger=0)  # stopping: no time to wait for anyone
            await self.server.wait_closed()
            self.server = None

    def connection_opened(self, conn: MQTTConnection) -> None:
        if len(self.connections) >= self.config.max_connections:
            reason = "max_conns"
        elif not self._rate_ok():
            reason = "conn_rate_limited"
        else:
            self.connections[conn] = None
            return
        # Counted with the other ways connections end, so /listeners shows it.
        self.refused += 1
        self.shutdown_count[reason] += 1
        conn.refuse()

    def _rate_ok(self) -> bool:
        """`max_conn_rate`: a token bucket (as EMQ X's esockd) holding at most that many
        connections, refilled at that many per second.  A fixed one-second window
        would let twice the rate through around a window's edge."""
        limit = self.config.max_conn_rate
        if not limit:
            return True
        now = time.monotonic()
        self._rate_tokens = min(float(limit),
                                self._rate_tokens + (now - self._rate_time) * limit)
        self._rate_time = now
        if self._rate_tokens < 1.0:
            return False
        self._rate_tokens -= 1.0
        return True

    def admit_auth(self) -> bool:
        """A place among the connections waiting for authentication, if one is free."""
        limit = self.config.max_auth_pending
        if limit and self.auth_pending >= limit:
            return False
        self.auth_pending += 1
        return True

    def connection_closed(self, conn: MQTTConnection) -> None:
        if conn in self.connections:
            del self.connections[conn]
            channel = conn.channel
            reason = (channel.disconnect_reason if channel is not None else "") or "closed"
            self.shutdown_count[reason] += 1
