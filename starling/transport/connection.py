"""The asyncio shell around a Channel: bytes from the socket to the decoder,
packets to the channel, and the channel's writes back to the socket.

Writes are coalesced: `write()` only appends to the connection's output list,
and a `WriteBatcher` flushes every connection written to once per event-loop
iteration.  A subscriber that receives a hundred messages from one read of a
publisher's socket then costs one send() system call, not a hundred.  Once the
list holds `WRITE_HIGH_WATER` bytes it goes to the socket at once, so a session
draining a large queue never joins it all into one buffer.

Flow control, out: the channel stops sending (its session queues, bounded:
docs/reliability.md) when the socket's write buffer passes its high-water mark
(asyncio's `pause_writing`) and drains the queue again once it is below the
low-water mark (`resume_writing`).  (Blocking the channel for the rest of the
loop turn after `WRITE_HIGH_WATER` bytes, as this once did, cut a reading
subscriber to ~4 MiB/s beside a heavy publisher on a busy machine: each refill
then waited for a loop turn; benchmarks/README.md, "Fairness".)

Fairness, in: at most `MAX_PACKETS_PER_TURN` packets of one connection are
handled per loop turn; the rest wait in a backlog (reading paused meanwhile,
order kept) and are handled in the next turns, after other connections.  And
once a connection has brought the listener's `read_budget` bytes (or
`MAX_PACKETS_PER_TURN` packets) in one loop turn, it yields: reading stops until
the next turn.  Without that, libuv read one busy socket up to 32 times in a row
(256 KiB each: 8 MB, ~10 ms of handling) before any other connection was
served (benchmarks/README.md, "Fairness").
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, cast

from starling.broker import Channel
from starling.mqtt import MQTTError, Packet, ProtocolError, settle_decoder, shared_decoder

from .tls import subject_of

if TYPE_CHECKING:
    from starling.broker import Broker

    from .config import ListenerConfig
    from .tls import TlsContext

log = logging.getLogger(__name__)

#: Write buffer high-water mark per connection, before the session queues; also the
#: most bytes joined for one connection before they are handed to the socket.
WRITE_HIGH_WATER = 256 * 1024
#: Seconds a connection the server closes stays half open, so the peer can read
#: what was sent last (a DISCONNECT's reason) before the socket goes (`close`).
LINGER = 1.0
#: Packets of one connection handled in one loop turn; the rest wait their turn.
MAX_PACKETS_PER_TURN = 64
# Bits of `MQTTConnection._flow`.
_SOCKET_FULL = 1  #: asyncio paused writing: the socket's buffer is over its high-water mark
_YIELDED = 2  #: used its read budget: reading resumes on the loop's next turn
_CHANNEL_PAUSED = 4  #: the channel asked to stop reading
_BACKLOG = 8  #: packets of earlier reads are still to be handled
_AUTHENTICATING = 16  #: holds one of the listener's `max_auth_pending` places


class ListenerSide(Protocol):
    """What a connection needs of the listener that accepted it: a `Listener` is
    one (declared here, so this module does not depend on the listener's)."""

    broker: Broker
    config: ListenerConfig
    name: str
    zone: str
    tls: TlsContext | None
    batcher: WriteBatcher
    read_turns: ReadTurns
    #: The broker's counters (a connection counts its bytes in them).
    counters: dict[str, int]
    #: Connections holding a place among the listener's `max_auth_pending`.
    auth_pending: int

    def admit_auth(self) -> bool: ...

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


class ReadTurns:
    """Gives the connections read from in a loop turn their whole read budget
    back on the next turn (one callback per turn, only for those read from)."""

    def __init__(self) -> None:
        self._spent: list[MQTTConnection] = []

    def spent(self, conn: MQTTConnection) -> None:
        if not self._spent:
            asyncio.get_running_loop().call_soon(self.new_turn)
        self._spent.append(conn)

    def new_turn(self) -> None:
        spent, self._spent = self._spent, []
        for conn in spent:
            conn.new_turn()


class MQTTConnection(asyncio.Protocol):
    """One MQTT connection over a stream transport (TCP or TLS)."""

    # Slots: one per client, so every field is per-client memory; what the
    # listener knows (broker, batcher, name) is reached through it.
    __slots__ = (
        "_backlog",
        "_flow",
        "_out",
        "_out_size",
        "_turn_bytes",
        "_turn_packets",
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
        self._out_size = 0
        #: `_SOCKET_FULL` | `_YIELDED` | `_CHANNEL_PAUSED` | `_BACKLOG` | `_AUTHENTICATING`
        self._flow = 0
        #: Bytes and packets read in this loop turn (`_spend`).
        self._turn_bytes = self._turn_packets = 0
        #: Packets decoded but not handled yet (then an MQTTError, if the bytes had one).
        self._backlog: deque[Packet | MQTTError] | None = None
        self.listener_ref = listener
        #: The client's address (interned: connections from one gateway share it).
        self.peerhost = ""
        self.transport: asyncio.Transport | None = None
        #: Shared with other connections while it holds nothing (`settle_decoder`).
        options = broker.zone_options(listener.zone)
        self.decoder = shared_decoder(options.max_packet_size, 0,
                                      options.allow_control_characters)
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
        state = channel.state
        if state == "closed":
            return  # closing (lingering): what still arrives is read and dropped
        # Reads close together share one float (`Clock.shared_monotonic`).
        channel.last_seen = channel.broker.clock.shared_monotonic()
        decoder = self.decoder
        if state == "new" and data and data[0] >> 4 != 1 and not decoder.buffered:
            channel.handle_error(ProtocolError("the first packet must be CONNECT"))
            return
        try:
            packets = decoder.feed(data)
        except MQTTError as exc:
            self.decoder = settle_decoder(decoder)
            if self._backlog is not None:
                self._backlog.append(exc)  # after what came before it
            else:
                channel.handle_error(exc)
            return
        self.decoder = settle_decoder(decoder)
        if len(packets) > MAX_PACKETS_PER_TURN or self._backlog is not None:
            self._queue(packets)
            return
        handle = channel.handle
        for packet in packets:
            handle(packet)
        error = self.decoder.pending_error
        if error is not None and channel.state != "closed":
            channel.handle_error(error)
        self._spend(len(data), len(packets))

    def _spend(self, size: int, packets: int) -> None:
        """Count what this read brought in this loop turn; past the read budget,
        yield: stop reading until the next turn, so the other connections are
        served first (libuv would otherwise read this socket again, up to 32
        times in a row)."""
        spent = self._turn_bytes + size
        handled = self._turn_packets + packets
        if spent < self.listener_ref.config.read_budget and handled < MAX_PACKETS_PER_TURN:
            if not self._turn_bytes and not self._turn_packets:
                self.listener_ref.read_turns.spent(self)
            self._turn_bytes, self._turn_packets = spent, handled
            return
        transport = self.transport
        if self._flow & _YIELDED or transport is None or transport.is_closing():
            return
        self._flow |= _YIELDED
        transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._end_yield)

    def new_turn(self) -> None:
        """The loop turned (`ReadTurns`): the read budget is whole again."""
        self._turn_bytes = self._turn_packets = 0

    def _end_yield(self) -> None:
        """The loop turned: read again (unless something else still holds reading)."""
        self._flow &= ~_YIELDED
        self._turn_bytes = self._turn_packets = 0
        if self._flow & (_CHANNEL_PAUSED | _BACKLOG):
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _queue(self, packets: list[Packet]) -> None:
        """More packets than one turn handles: keep them in the backlog, stop reading
        until it is worked off, and start on it now if it is new."""
        backlog = self._backlog
        fresh = backlog is None
        if backlog is None:
            backlog = self._backlog = deque()
        backlog.extend(packets)
        error = self.decoder.pending_error
        if error is not None:
            backlog.append(error)
        if fresh:
            self._flow |= _BACKLOG
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
            self._work_backlog()

    def _work_backlog(self) -> None:
        """Handle up to MAX_PACKETS_PER_TURN backlogged packets; come back next turn
        for the rest; read again once it is empty (unless the channel paused reading)."""
        backlog = self._backlog
        channel = self.channel
        if backlog is None:
            return
        if channel is None or channel.state == "closed" or self.transport is None:
            self._backlog = None
            return
        handle = channel.handle
        for _ in range(min(MAX_PACKETS_PER_TURN, len(backlog))):
            item = backlog.popleft()
            if isinstance(item, MQTTError):
                self._backlog = None
                channel.handle_error(item)
                return
            handle(item)
            if channel.state == "closed":
                self._backlog = None
                return
        if backlog:
            asyncio.get_running_loop().call_soon(self._work_backlog)
            return
        self._backlog = None
        self._flow &= ~_BACKLOG
        if not self._flow & (_CHANNEL_PAUSED | _YIELDED) and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None:
            self.channel.connection_lost()
        self.auth_done()
        self.listener_ref.connection_closed(self)
        self.transport = None

    def pause_writing(self) -> None:
        self._flow |= _SOCKET_FULL
        if self.channel is not None:
            self.channel.set_writable(False)

    def resume_writing(self) -> None:
        self._flow &= ~_SOCKET_FULL
        if self.channel is not None:
            self.channel.set_writable(True)

    # -- the channel's Connection interface -----------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is None:
            return
        out = self._out
        size = len(data)
        if out is None:
            self._out = [data]
            self._out_size = size
            self.listener_ref.batcher.mark(self)
        else:
            out.append(data)
            self._out_size += size
            if self._out_size >= WRITE_HIGH_WATER:
                # Hand it to the socket now rather than join more: if the socket
                # cannot take it, asyncio's pause_writing blocks the channel.
                self.flush()
        self.send_oct += size
        self.send_cnt += 1
        self.listener_ref.counters["bytes/sent"] += size

    def write_ahead(self, data: bytes, later: int) -> None:
        """`write`, but before the last `later` writes (still in `_out`: the batch
        leaves when the loop next turns)."""
        out = self._out
        if self.transport is None or out is None or len(out) < later:
            self.write(data)
            return
        out.insert(len(out) - later, data)
        size = len(data)
        self._out_size += size
        self.send_oct += size
        self.send_cnt += 1
        self.listener_ref.counters["bytes/sent"] += size

    def pause_reading(self) -> None:
        self._flow |= _CHANNEL_PAUSED
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._flow &= ~_CHANNEL_PAUSED
        if self._flow & (_BACKLOG | _YIELDED):
            return  # reading starts again once the backlog is handled / next turn
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def admit_auth(self) -> bool:
        if not self.listener_ref.admit_auth():
            return False
        self._flow |= _AUTHENTICATING
        return True

    def auth_done(self) -> None:
        if self._flow & _AUTHENTICATING:
            self._flow &= ~_AUTHENTICATING
            self.listener_ref.auth_pending -= 1

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
        self._out_size = 0
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

    def close(self, linger: float = LINGER) -> None:
        """Flush what is buffered, then close, gracefully on plain TCP: our side is
        shut down once the buffer is sent (the peer reads it, then EOF), and what
        the peer still sends is read and dropped until it closes too, `linger`
        seconds at most.  Closed at once with unread input, the socket would be
        reset, and a peer still answering earlier packets would lose the
        DISCONNECT that says why.  TLS closes at once (asyncio's TLS shutdown)."""
        self.flush()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if linger <= 0 or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()  # read (and drop) until the peer's EOF
        asyncio.get_running_loop().call_later(linger, transport.close)


class TLSConnection(MQTTConnection):
    """A connection on a TLS listener: room for what the client certificate says."""

    __slots__ = ("cert_clientid", "cert_username", "peercert")

    def __init__(self, listener: ListenerSide) -> None:
        super().__init__(listener)
        self.peercert = self.cert_username = self.cert_clientid = None

    def set_certificate(self, subject: str, username: str | None,
                        client_id: str | None) -> None:
        self.peercert, self.cert_username, self.cert_clientid = subject, username, client_id
