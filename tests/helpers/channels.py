"""A real `Channel` and a real `Broker`, driven without sockets, sleeps or waits.

The channel writes through `FakeConnection`, an in-memory `Connection` that
keeps what it is given; the test sends raw bytes (built with `packets.py` /
`packets5.py`, independent of Starling's codec), which go through the real
decoder into `Channel.handle` as the transport would feed them, and reads back
the packets the channel wrote, parsed by the same independent helpers.  The
broker runs on a `ManualClock`: the keepalive, retry_interval, the will delay
and the housekeeping tick fire when the test moves the clock, not when time
passes.  Tasks (authentication hooks, awaited ACL answers) and store commits
run on the real event loop when the test awaits `world.settle()`.

    async def test_ping(world: ChannelWorld) -> None:      # fixture in tests/broker/channel
        client = world.connect("c1")                       # CONNECT, CONNACK checked
        client.send(gen_pingreq())
        assert client.read() == [Packet(PINGRESP, 0, b"")]
        world.clock.advance(90)                            # 1.5 x keepalive 60 later
        assert client.closed

Tests using it are `async def` (tests/broker/channel/conftest.py runs them).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starling.broker import Broker, BrokerOptions, Channel, Clock, Journal, parse_acl
from starling.mqtt import Decoder, MQTTError, ProtocolError
from starling.store import SQLiteStore

from .packets import CONNACK, Packet, gen_connect
from .packets5 import gen_connect5, parse_connack5


class ManualTimer:
    """A pending call of `ManualClock.call_later`."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]):
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """Time that moves only when `advance()` is called; timers fire then, in order.

    It starts at the system's monotonic and wall time, so what the core still
    reads from the system clock (retained-message and ACL-cache expiry) agrees
    with it until the test moves it.  Tasks and `call_soon` go to the running
    event loop, as with the default clock."""

    def __init__(self, start: float | None = None) -> None:
        super().__init__()
        self.now = self.start = time.monotonic() if start is None else start
        self.wall_start = time.time()
        self.monotonic = lambda: self.now
        self.time = lambda: self.wall_start + (self.now - self.start)
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, callback: Callable[..., object],
                   *args: Any) -> ManualTimer:
        timer = ManualTimer(self.now + max(0.0, delay), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, running each timer due meanwhile at its own time."""
        target = self.now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, when)
            timer.callback(*timer.args)
        self.now = target

    def pending(self) -> list[float]:
        """Seconds from now until each timer still armed, soonest first."""
        return sorted(when - self.now for when, _, t in self._timers if not t.cancelled)


class FakeConnection:
    """The `Connection` a channel writes through, in memory."""

    peercert: str | None = None
    cert_username: str | None = None
    cert_clientid: str | None = None

    def __init__(self, peerhost: str = "127.0.0.1", port: int = 50000,
                 listener: str = "mqtt:tcp:test", max_auth_pending: int = 0) -> None:
        self.peerhost = peerhost
        self.port = port
        self._listener = listener
        #: Places for connections waiting on authentication (0: unlimited), as a
        #: listener's `max_auth_pending`; this connection alone takes them here.
        self.max_auth_pending = max_auth_pending
        self.auth_pending = 0
        self.out = bytearray()
        self._sizes: list[int] = []  # of each write, for `write_ahead`
        self.closed = False
        self.reading = True

    @property
    def peername(self) -> tuple[str, int]:
        return (self.peerhost, self.port)

    @property
    def listener(self) -> str:
        return self._listener

    def write(self, data: bytes) -> None:
        if not self.closed:  # a closed socket takes nothing more
            self.out += data
            self._sizes.append(len(data))

    def write_ahead(self, data: bytes, later: int) -> None:
        if not self.closed:
            at = len(self.out) - sum(self._sizes[len(self._sizes) - later:])
            self.out[at:at] = data
            self._sizes.insert(len(self._sizes) - later, len(data))

    def take(self) -> bytes:
        """What was written since the last take."""
        data, self.out = bytes(self.out), bytearray()
        self._sizes.clear()
        return data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def admit_auth(self) -> bool:
        if self.max_auth_pending and self.auth_pending >= self.max_auth_pending:
            return False
        self.auth_pending += 1
        return True

    def auth_done(self) -> None:
        self.auth_pending = max(0, self.auth_pending - 1)

    def io_stats(self) -> dict[str, int]:
        return {"recv_oct": 0, "recv_cnt": 0, "send_oct": len(self.out), "send_cnt": 0,
                "send_pend": 0}


def split_packets(data: bytes) -> list[Packet]:
    """The complete MQTT packets in `data` (fixed header, remaining length, body)."""
    packets: list[Packet] = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        length, multiplier, i = 0, 1, pos + 1
        while True:
            digit = data[i]
            length += (digit & 0x7F) * multiplier
            i += 1
            if not digit & 0x80:
                break
            multiplier *= 128
        packets.append(Packet(first >> 4, first & 0x0F, bytes(data[i:i + length])))
        pos = i + length
    return packets


class ChannelClient:
    """One client: a real `Channel` on a `FakeConnection`, bytes in, packets out."""

    def __init__(self, broker: Broker, zone: str = "external", **conn: Any) -> None:
        self.broker = broker
        self.conn = FakeConnection(**conn)
        self.channel = Channel(broker, self.conn, zone)
        self.decoder = Decoder(broker.zone_options(zone).max_packet_size)
        #: Packets parsed by `read_one` / `ChannelWorld.connect` and not read yet.
        self.unread: list[Packet] = []

    def send(self, data: bytes) -> None:
        """Bytes from the client, handled as `MQTTConnection.feed` handles a read."""
        channel = self.channel
        channel.last_seen = self.broker.clock.shared_monotonic()
        if channel.state == "new" and data and data[0] != 0x10 and not self.decoder.buffered:
            channel.handle_error(ProtocolError("the first packet must be CONNECT"))
            return
        try:
            packets = self.decoder.feed(data)
        except MQTTError as exc:
            channel.handle_error(exc)
            return
        for packet in packets:
            channel.handle(packet)
        error = self.decoder.pending_error
        if error is not None and channel.state != "closed":
            channel.handle_error(error)

    def read(self) -> list[Packet]:
        """Every packet written to the client since the last read."""
        data = self.conn.take()
        packets, self.unread = self.unread + split_packets(data), []
        return packets

    def read_one(self) -> Packet:
        """The next packet written to the client (there must be one)."""
        packets = self.read()
        assert packets, "expected a packet, got nothing"
        self.unread = packets[1:]
        return packets[0]

    def drop(self) -> None:
        """The client's socket goes away without DISCONNECT."""
        self.conn.closed = True
        self.channel.connection_lost()

    @property
    def closed(self) -> bool:
        """Did the channel close its connection?"""
        return self.conn.closed


class ChannelWorld:
    """A started `Broker` on a `ManualClock`, and clients on fake connections.

    `store_dir`: a SQLite store there, in durable mode (acknowledgements then
    wait for their commit); without it, the memory store.  `acl`: the text of an
    ACL file (docs/acl.md), attached as a node attaches its acl.conf."""

    def __init__(self, options: BrokerOptions | None = None, *, store_dir: Path | None = None,
                 acl: str | None = None, zones: dict[str, BrokerOptions] | None = None) -> None:
        self.clock = ManualClock()
        journal = None
        if store_dir is not None:
            store = SQLiteStore(store_dir / "starling.db")
            store.open()
            journal = Journal(store, "durable")
        self.broker = Broker(options, journal, zones, clock=self.clock)
        if acl is not None:
            self.broker.acl.replace(parse_acl(acl))
            self.broker.acl.attach(self.broker.hooks)
        self.clients: list[ChannelClient] = []

    async def __aenter__(self) -> ChannelWorld:
        await self.broker.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.stop()
        self.broker.journal.store.close()

    def client(self, zone: str = "external", **conn: Any) -> ChannelClient:
        client = ChannelClient(self.broker, zone, **conn)
        self.clients.append(client)
        return client

    def connect(self, client_id: str, level: int = 4, *, clean: bool = True,
                keepalive: int = 60, props: Any = (), **kw: Any) -> ChannelClient:
        """A client that sent CONNECT and got a CONNACK accepting it."""
        client = self.client()
        if level == 5:
            client.send(gen_connect5(client_id, clean, keepalive, props, **kw))
        else:
            client.send(gen_connect(client_id, clean, keepalive, proto_level=level, **kw))
        connack = client.read_one()
        assert connack.type == CONNACK, str(connack)
        code = parse_connack5(connack).rc if level == 5 else connack.body[1]
        assert code == 0, f"CONNACK refused: {connack}"
        return client

    async def settle(self, turns: int = 20) -> None:
        """Let the event loop run what is ready: tasks, `call_soon`, store commits."""
        for _ in range(turns):
            await asyncio.sleep(0)
