"""The asyncio shell around a Channel: bytes from the socket to the decoder,
packets to the channel, and the channel's writes back to the socket.

Writes are coalesced: `write()` only appends to the connection's output list,
and a `WriteBatcher` flushes every connection written to once per event-loop
iteration.  A subscriber that receives a hundred messages from one read of a
publisher's socket then costs one send() system call, not a hundred.

Flow control: asyncio calls `pause_writing` when the socket's write buffer
passes its high-water mark; the channel then stops sending and lets its
session queue (bounded), and `resume_writing` drains the queue again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any, Protocol, cast

from starling.broker import Channel
from starling.mqtt import MQTTError, ProtocolError, settle_decoder, shared_decoder

from .tls import subject_of

if TYPE_CHECKING:
    from starling.broker import Broker

    from .config import ListenerConfig
    from .tls import TlsContext

log = logging.getLogger(__name__)

#: Write buffer high-water mark per connection, before the session queues.
WRITE_HIGH_WATER = 256 * 1024


class ListenerSide(Protocol):
    """What a connection needs of the listener that accepted it: a `Listener` is
    one (declared here, so this module does not depend on the listener's)."""

    broker: Broker
    config: ListenerConfig
    name: str
    zone: str
    tls: TlsContext | None
    batcher: WriteBatcher
    #: The broker's counters (a connection counts its bytes in them).
    counters: dict[str, int]

    def connection_opened(self, conn: MQTTConnection) -> None: ...

    def connection_closed(self, conn: MQTTConnection) -> None: ...


class WriteBatcher:
    """Flushes the output of every connection written to, once per loop iteration."""

    def __init__(self) -> None:
        self._dirty: list[MQTTConnection] = []
        self._scheduled = False

    def mark(self, conn: MQTTConnection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


class MQTTConnection(asyncio.Protocol):
    """One MQTT connection over a stream transport (TCP or TLS)."""

    # Slots: one per client, so every field is per-client memory; what the
    # listener knows (broker, batcher, name) is reached through it.
    __slots__ = (
        "_out",
        "channel",
        "decoder",
        "listener_ref",
        "peerhost",
        "recv_cnt",
        "recv_oct",
        "send_cnt",
        "send_oct",
        "transport",
    )

    #: Subject of the client certificate, and the identities taken from it
    #: (peer_cert_as_username/clientid): slots of `TLSConnection` (and of the
    #: WebSocket shell); a plain TCP connection has none and reads these defaults.
    peercert: str | None = None
    cert_username: str | None = None
    cert_clientid: str | None = None

    def __init__(self, listener: ListenerSide) -> None:
        broker = listener.broker
        #: Bytes written since the last flush; None when there are none.
        self._out: list[bytes] | None = None
        self.listener_ref = listener
        #: The client's address (interned: connections from one gateway share it).
        self.peerhost = ""
        self.transport: asyncio.Transport | None = None
        #: Shared with other connections while it holds nothing (`settle_decoder`).
        self.decoder = shared_decoder(broker.zone_options(listener.zone).max_packet_size)
        self.channel: Channel | None = None
        self.recv_oct = self.send_oct = 0
        self.recv_cnt = self.send_cnt = 0

    # -- asyncio.Protocol -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peerhost = sys.intern(peer[0])
        # TCP_NODELAY (small MQTT packets must not wait for Nagle's algorithm) is set
        # by uvloop and by asyncio on every TCP transport they make.
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)
        if self.listener_ref.tls is not None:
            self._take_certificate(transport.get_extra_info("peercert"))
        self.channel = Channel(self.listener_ref.broker, self, self.listener_ref.zone)
        self.listener_ref.connection_opened(self)

    def _take_certificate(self, peercert: Any) -> None:
        identity = subject_of(peercert)
        if identity is None:
            return
        dn, cn = identity
        config = self.listener_ref.config
        use = {"cn": cn, "dn": dn}
        self.set_certificate(dn, use.get(config.peer_cert_as_username),
                             use.get(config.peer_cert_as_clientid))

    def set_certificate(self, subject: str, username: str | None,
                        client_id: str | None) -> None:
        """Keep what the client certificate says (TLS connections only)."""
        raise TypeError("a plain TCP connection has no client certificate")

    @property
    def listener(self) -> str:
        return self.listener_ref.name

    @property
    def peername(self) -> tuple[str, int]:
        """(host, port); the port is read from the transport when asked (uvloop keeps
        the address in the transport, even once closed), not kept per connection."""
        port = 0
        if self.transport is not None:
            peer = self.transport.get_extra_info("peername")
            if peer:
                port = peer[1]
        return (self.peerhost, port)

    def data_received(self, data: bytes) -> None:
        channel = self.channel
        if channel is None:
            return  # refused
        size = len(data)
        self.recv_oct += size
        self.recv_cnt += 1
        self.listener_ref.counters["bytes/received"] += size
        if channel.limiter is not None:
            channel.limiter.received(size)
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """MQTT bytes from the client (the WebSocket shell unwraps frames first)."""
        channel = self.channel
        assert channel is not None
        # Reads close together share one float (`Clock.shared_monotonic`).
        channel.last_seen = channel.broker.clock.shared_monotonic()
        decoder = self.decoder
        if channel.state == "new" and data and data[0] != 0x10 and not decoder.buffered:
            channel.handle_error(ProtocolError("the first packet must be CONNECT"))
            return
        try:
            packets = decoder.feed(data)
        except MQTTError as exc:
            self.decoder = settle_decoder(decoder)
            channel.handle_error(exc)
            return
        self.decoder = settle_decoder(decoder)
        handle = channel.handle
        for packet in packets:
            handle(packet)
        error = self.decoder.pending_error
        if error is not None and channel.state != "closed":
            channel.handle_error(error)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None:
            self.channel.connection_lost()
        self.listener_ref.connection_closed(self)
        self.transport = None

    def pause_writing(self) -> None:
        if self.channel is not None:
            self.channel.set_writable(False)

    def resume_writing(self) -> None:
        if self.channel is not None:
            self.channel.set_writable(True)

    # -- the channel's Connection interface -----------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is None:
            return
        out = self._out
        if out is None:
            self._out = [data]
            self.listener_ref.batcher.mark(self)
        else:
            out.append(data)
        size = len(data)
        self.send_oct += size
        self.send_cnt += 1
        self.listener_ref.counters["bytes/sent"] += size

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def io_stats(self) -> dict[str, int]:
        transport = self.transport
        pending = sum(map(len, self._out or ()))
        if transport is not None:
            pending += transport.get_write_buffer_size()
        return {"recv_oct": self.recv_oct, "recv_cnt": self.recv_cnt, "send_oct": self.send_oct,
                "send_cnt": self.send_cnt, "send_pend": pending}

    def flush(self) -> None:
        out = self._out
        if out is None:
            return
        self._out = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.send_bytes(out[0] if len(out) == 1 else b"".join(out))

    def send_bytes(self, data: bytes) -> None:
        """Put MQTT bytes on the wire (the WebSocket shell frames them first)."""
        assert self.transport is not None
        self.transport.write(data)

    def refuse(self) -> None:
        """Over the listener's limits: drop the connection before any MQTT."""
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close("refused")
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Flush what is buffered, then close."""
        self.flush()
        if self.transport is not None:
            self.transport.close()


class TLSConnection(MQTTConnection):
    """A connection on a TLS listener: room for what the client certificate says."""

    __slots__ = ("cert_clientid", "cert_username", "peercert")

    def __init__(self, listener: ListenerSide) -> None:
        super().__init__(listener)
        self.peercert = self.cert_username = self.cert_clientid = None

    def set_certificate(self, subject: str, username: str | None,
                        client_id: str | None) -> None:
        self.peercert, self.cert_username, self.cert_clientid = subject, username, client_id
