"""The STOMP gateway's asyncio shell: a TCP (or TLS) listener, one
`StompConnection` per socket, each driving a `StompClient`.

Bytes go through the frame parser into the client's inbox, one frame handled
at a time; past `PAUSE_AT` waiting frames the socket is no longer read (TCP
pushes back) until the inbox is down to `RESUME_AT`.  A frame the parser
refuses is answered with ERROR and the connection is closed and counted.
Timers: CONNECT must arrive within `idle_timeout`; after it, the negotiated
heart-beats (a newline when nothing else was written, and the connection
closed after twice the client's interval without a byte).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Protocol, cast

from starling.transport import TlsContext, TlsOptions

from ..inbox import Inbox
from .codec import Frame, FrameError, FrameLimits, FrameParser, encode
from .protocol import CLOSED, CONNECTED, StompBroker, StompClient

log = logging.getLogger(__name__)
#: Shown at any log level: scripts and tests read the bound port from it.
startup_log = logging.getLogger("starling.startup")

PAUSE_AT, RESUME_AT = 64, 16
#: The inbox entry that stands for bytes the parser refused (no frame has this
#: command: the parser takes upper-case letters only).
PARSE_ERROR = "parse error"
#: The gateway's counters (broker metrics, docs/metrics.md).
MALFORMED = "gateway/stomp/malformed"  #: connections closed for bytes that are not a frame
REFUSED = "gateway/stomp/refused"  #: connections over stomp.listener.max_clients
COUNTERS = (MALFORMED, REFUSED)

_client_ids = itertools.count(1)


def new_client_id() -> str:
    """A client id for a connection whose CONNECT names none (`client-id`)."""
    return f"stomp-{os.getpid():x}-{next(_client_ids)}"


class StompLink(StompBroker, Protocol):
    """The broker side of one connection, as the gateway's backend makes it."""

    def bind(self, client: StompClient) -> None: ...

    def received(self, size: int, packets: int = 1) -> None:
        """`size` bytes came from the client, completing `packets` frames."""
        ...

    def sent(self, size: int) -> None:
        """A frame of `size` bytes went to the client."""
        ...

    def set_writable(self, writable: bool) -> None:
        """The socket's write buffer is over (False) or back under (True) its mark."""
        ...


class StompBackend(Protocol):
    def link(self, peer: tuple[str, int]) -> StompLink: ...


@dataclass(frozen=True, slots=True)
class StompGatewayConfig:
    host: str
    port: int
    limits: FrameLimits = field(default_factory=FrameLimits)
    max_clients: int = 512
    idle_timeout: float = 20.0
    max_redeliveries: int = 3
    tls: TlsOptions | None = None
    name: str = "stomp:tcp:default"


class StompServer:
    def __init__(self, config: StompGatewayConfig, backend: StompBackend,
                 counters: MutableMapping[str, int] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.connections: set[StompConnection] = set()
        #: The broker's metrics: the gateway's counters and bytes/received, bytes/sent.
        self.counters: MutableMapping[str, int] = Counter() if counters is None else counters
        for name in COUNTERS:
            self.counters.setdefault(name, 0)
        self.bound: tuple[str, int] = (config.host, config.port)
        self.tls = TlsContext(config.tls) if config.tls is not None else None
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StompConnection(self), self.config.host, self.config.port,
            reuse_address=True, ssl=self.tls.context if self.tls is not None else None)
        if self.tls is not None:
            self.tls.start_watching()
        host, port = self._server.sockets[0].getsockname()[:2]
        self.bound = (host, port)
        # Scripts and tests read the real port from this line; keep its shape.
        startup_log.info("listener %s on %s:%d", self.config.name, host, port)

    async def stop(self) -> None:
        """Stop accepting; every connection is closed (told by an ERROR frame)."""
        if self.tls is not None:
            self.tls.stop_watching()
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self.connections):
            conn.shutdown("gateway_stopped")
        await server.wait_closed()


class StompConnection(asyncio.Protocol):
    def __init__(self, server: StompServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = FrameParser(server.config.limits)
        self.client: StompClient | None = None
        self.link: StompLink | None = None
        self.inbox: Inbox[Frame] = Inbox(self._handle, limit=1 << 62)
        self.paused = False
        #: The parser refused the stream: nothing more is read from it.
        self.broken = False
        self.last_read = self.last_write = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._beat: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        server = self.server
        if len(server.connections) >= server.config.max_clients:
            server.counters[REFUSED] += 1
            transport.abort()
            self.transport = None
            return
        peer = transport.get_extra_info("peername") or ("", 0)
        link = server.backend.link((peer[0], peer[1]))
        self.client = StompClient(link, self._send, self._closed, client_id=new_client_id(),
                                  max_redeliveries=server.config.max_redeliveries)
        link.bind(self.client)
        self.link = link
        server.connections.add(self)
        self._timer = asyncio.get_running_loop().call_later(server.config.idle_timeout,
                                                            self._idle)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or client.state == CLOSED or self.broken:
            return
        self.last_read = time.monotonic()
        self.server.counters["bytes/received"] += len(data)
        try:
            frames = self.parser.feed(data)
        except FrameError as exc:
            self.server.counters[MALFORMED] += 1
            frames = []
            error: FrameError | None = exc
        else:
            error = None
        assert self.link is not None
        self.link.received(len(data), len(frames))
        for frame in frames:
            self.inbox.put(frame)
        if error is not None:
            # Frames before the bad bytes are handled first; then ERROR and close.
            self.broken = True
            self.inbox.put(Frame(PARSE_ERROR, [("message", str(error))]))
            self.transport_pause()
        elif len(self.inbox) >= PAUSE_AT:
            self.transport_pause()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.server.connections.discard(self)
        self.inbox.close()
        if self.client is not None and self.client.state != CLOSED:
            self.client.close("closed")
        self.transport = None

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.set_writable(False)

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.set_writable(True)

    # -- frames ----------------------------------------------------------------------------
    async def _handle(self, frame: Frame) -> None:
        client = self.client
        assert client is not None
        if frame.command == PARSE_ERROR:
            client.error(frame.get("message") or "malformed frame")
            return
        was_connected = client.state == CONNECTED
        await client.handle(frame)
        if client.state == CONNECTED:
            self.parser.escapes = client.escapes
            if not was_connected:
                self._connected(client)
        if self.paused and len(self.inbox) <= RESUME_AT and client.state != CLOSED:
            self.paused = False
            if self.transport is not None:
                self.transport.resume_reading()

    def transport_pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _send(self, frame: Frame) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        client = self.client
        data = encode(frame, escapes=client.escapes if client is not None else False)
        transport.write(data)
        self.last_write = time.monotonic()
        self.server.counters["bytes/sent"] += len(data)
        if self.link is not None:
            self.link.sent(len(data))

    def _closed(self, client: StompClient) -> None:
        """The client is done (DISCONNECT, ERROR, kick): close once written."""
        self._cancel_timers()
        self.server.connections.discard(self)
        if self.transport is not None:
            self.transport.close()

    def shutdown(self, reason: str) -> None:
        if self.client is not None:
            self.client.shutdown(reason)

    # -- timers ----------------------------------------------------------------------------
    def _cancel_timers(self) -> None:
        for timer in (self._timer, self._beat):
            if timer is not None:
                timer.cancel()
        self._timer = self._beat = None

    def _idle(self) -> None:
        """No CONNECT within `idle_timeout`: close."""
        self._timer = None
        if self.client is not None and self.client.state != CONNECTED:
            self.client.close("idle_timeout")
            if self.transport is not None:
                self.transport.close()

    def _connected(self, client: StompClient) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        if client.heartbeat_in:
            self._timer = loop.call_later(client.heartbeat_in, self._check_incoming)
        if client.heartbeat_out:
            self._beat = loop.call_later(client.heartbeat_out, self._heartbeat)

    def _check_incoming(self) -> None:
        client = self.client
        if client is None or client.state != CONNECTED:
            return
        silent = time.monotonic() - self.last_read
        if silent >= 2 * client.heartbeat_in:
            client.close("heartbeat_timeout")
            return
        self._timer = asyncio.get_running_loop().call_later(client.heartbeat_in,
                                                            self._check_incoming)

    def _heartbeat(self) -> None:
        client = self.client
        transport = self.transport
        if client is None or client.state != CONNECTED or transport is None:
            return
        if time.monotonic() - self.last_write >= client.heartbeat_out * 0.9:
            transport.write(b"\n")
            self.last_write = time.monotonic()
            self.server.counters["bytes/sent"] += 1
        self._beat = asyncio.get_running_loop().call_later(client.heartbeat_out,
                                                           self._heartbeat)
