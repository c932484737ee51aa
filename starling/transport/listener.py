"""Listeners: bind an address (port 0 picks a free one), accept, count.

A listener is named like EMQ X's: ``mqtt:tcp:default``, ``mqtt:tcp:internal``.
Beyond `max_connections` a new connection is closed at once and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

from starling.broker import Broker

from .connection import MQTTConnection, WriteBatcher

log = logging.getLogger(__name__)
#: Shown at any log level: scripts read bound ports from it.
startup_log = logging.getLogger("starling.startup")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str  #: e.g. "mqtt:tcp:default"
    host: str
    port: int
    zone: str = "external"
    max_connections: int = 1024000
    acceptors: int = 8  #: reported for EMQ X compatibility; asyncio has one accept loop
    backlog: int = 1024


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
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[MQTTConnection] = set()
        self.shutdown_count: Counter[str] = Counter()
        self.refused = 0
        self.bound: tuple[str, int] = (config.host, config.port)
        self.batcher = WriteBatcher()

    @property
    def current_connections(self) -> int:
        return len(self.connections)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: MQTTConnection(self.broker, self, self.batcher),
            self.config.host, self.config.port,
            backlog=self.config.backlog, reuse_address=True)
        addr = self.server.sockets[0].getsockname()
        self.bound = (addr[0], addr[1])
        # Scripts and tests read the real port from this line; keep its shape.
        startup_log.info("listener %s on %s:%d", self.name, addr[0], addr[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for conn in list(self.connections):
                conn.close()
            await self.server.wait_closed()
            self.server = None

    def connection_opened(self, conn: MQTTConnection) -> None:
        if len(self.connections) >= self.config.max_connections:
            self.refused += 1
            conn.close()
            return
        self.connections.add(conn)

    def connection_closed(self, conn: MQTTConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            channel = conn.channel
            reason = (channel.disconnect_reason if channel is not None else "") or "closed"
            self.shutdown_count[reason] += 1
