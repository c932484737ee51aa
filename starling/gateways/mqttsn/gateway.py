"""The MQTT-SN gateway's asyncio shell: one UDP socket, one `SnClient` per peer.

A peer (ip:port) gets state only once it sends CONNECT; until then its
datagrams are answered without any (SEARCHGW → GWINFO; QoS -1 PUBLISH when
`enable_qos3` is on) or dropped.  What one peer can cost is bounded: a token
bucket of `peer_rate` datagrams a second, an inbox of `INBOX_LIMIT` messages
waiting while an earlier one awaits the broker, and its client's topic table
and QoS 2 window.  Every datagram that is refused is counted, never raised:
one client's garbage or flood does not reach another client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..inbox import Inbox
from .codec import MqttSnError, decode, encode
from .messages import Advertise, Connack, Connect, GwInfo, Message, Publish, ReturnCode, SearchGw
from .protocol import SnBroker, SnClient, SnSettings, topic_of

log = logging.getLogger(__name__)
#: Shown at any log level: scripts and tests read the bound port from it.
startup_log = logging.getLogger("starling.startup")

#: Messages of one peer waiting while an earlier one is handled.
INBOX_LIMIT = 64

#: The gateway's counters (broker metrics, docs/metrics.md).
MALFORMED = "gateway/mqttsn/malformed"  #: not an MQTT-SN message, or one not supported
DROPPED = "gateway/mqttsn/dropped"  #: no connection, inbox full, or undeliverable
RATE_LIMITED = "gateway/mqttsn/rate_limited"  #: over mqtt.sn.peer_rate_limit
REFUSED = "gateway/mqttsn/refused"  #: CONNECT over mqtt.sn.max_clients
COUNTERS = (MALFORMED, DROPPED, RATE_LIMITED, REFUSED)


class SnLink(SnBroker, Protocol):
    """The broker side of one client, as the gateway's backend makes it."""

    def bind(self, client: SnClient) -> None:
        """The client it delivers to (set once, right after it is made)."""
        ...

    def received(self, size: int, packets: int = 1) -> None:
        """A datagram of `size` bytes came from the client."""
        ...

    def sent(self, size: int) -> None:
        """A datagram of `size` bytes went to the client."""
        ...


class SnBackend(Protocol):
    """What the gateway needs from the broker."""

    def link(self, peer: tuple[str, int]) -> SnLink: ...

    async def publish_unconnected(self, topic: str, payload: bytes, retain: bool,
                                  peer: tuple[str, int]) -> bool:
        """A QoS -1 PUBLISH from a peer without a connection (spec §6.8)."""
        ...


@dataclass(frozen=True, slots=True)
class SnGatewayConfig:
    host: str
    port: int
    settings: SnSettings
    gateway_id: int = 1
    #: Seconds between ADVERTISE broadcasts; 0 = none.
    advertise_interval: float = 0.0
    #: Where ADVERTISE goes (a broadcast address, or any host:port).
    advertise_to: tuple[str, int] | None = None
    #: Datagrams a second one peer may send (burst: as many); 0 = no limit.
    peer_rate: float = 0.0
    #: Most peers with state (connected, connecting or asleep).
    max_clients: int = 1024000
    name: str = "mqttsn:udp:default"


class Peer:
    """One connected (or connecting, or sleeping) address."""

    __slots__ = ("address", "client", "inbox", "link", "stamp", "timer", "tokens")

    def __init__(self, address: tuple[str, int], rate: float) -> None:
        self.address = address
        self.client: SnClient | None = None
        self.link: SnLink | None = None
        self.inbox: Inbox[Message] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tokens = rate
        self.stamp = time.monotonic()

    def allow(self, rate: float) -> bool:
        """The token bucket: at most `rate` datagrams a second, bursts of `rate`."""
        if not rate:
            return True
        now = time.monotonic()
        self.tokens = min(rate, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class SnGateway(asyncio.DatagramProtocol):
    def __init__(self, config: SnGatewayConfig, backend: SnBackend,
                 counters: MutableMapping[str, int] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.peers: dict[tuple[str, int], Peer] = {}
        #: The broker's metrics: the gateway's counters and bytes/received, bytes/sent.
        self.counters: MutableMapping[str, int] = Counter() if counters is None else counters
        for name in COUNTERS:
            self.counters.setdefault(name, 0)
        self.bound: tuple[str, int] = (config.host, config.port)
        self.transport: asyncio.DatagramTransport | None = None
        self._advertise: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.config.host, self.config.port),
            allow_broadcast=self.config.advertise_to is not None)
        self.transport = transport
        host, port = transport.get_extra_info("sockname")[:2]
        self.bound = (host, port)
        # Scripts and tests read the real port from this line; keep its shape.
        startup_log.info("listener %s on %s:%d", self.config.name, host, port)
        if self.config.advertise_interval > 0 and self.config.advertise_to is not None:
            self._send_advertise()

    async def stop(self) -> None:
        """Close the socket; every client is disconnected (without its will) and
        told so by DISCONNECT."""
        if self._advertise is not None:
            self._advertise.cancel()
            self._advertise = None
        for peer in list(self.peers.values()):
            if peer.client is not None:
                peer.client.shutdown("gateway_stopped")
        self.peers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    @property
    def connected(self) -> int:
        return len(self.peers)

    # -- datagrams in ----------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        address = (addr[0], addr[1])
        self.counters["bytes/received"] += len(data)
        peer = self.peers.get(address)
        if peer is not None and not peer.allow(self.config.peer_rate):
            self.counters[RATE_LIMITED] += 1
            return
        try:
            message = decode(data)
        except MqttSnError as exc:
            self.counters[MALFORMED] += 1
            log.debug("mqtt-sn datagram from %s:%d dropped: %s", address[0], address[1], exc)
            return
        if peer is None:
            self._stateless(message, address, data)
            return
        assert peer.inbox is not None and peer.link is not None
        peer.link.received(len(data))
        if not peer.inbox.put(message):
            self.counters[DROPPED] += 1

    def _stateless(self, message: Message, address: tuple[str, int], data: bytes) -> None:
        """A datagram from an address without a connection."""
        if isinstance(message, Connect):
            if len(self.peers) >= self.config.max_clients:
                self.counters[REFUSED] += 1
                self._send(Connack(ReturnCode.CONGESTION), address)
                return
            peer = self._new_peer(address)
            assert peer.inbox is not None and peer.link is not None
            peer.link.received(len(data))
            peer.inbox.put(message)
        elif isinstance(message, SearchGw):
            self._send(GwInfo(self.config.gateway_id), address)
        elif (isinstance(message, Publish) and message.qos == -1
              and self.config.settings.enable_qos3):
            topic = topic_of(message, self.config.settings.predefined)
            if topic is None:
                self.counters[DROPPED] += 1
                return
            self._track(self.backend.publish_unconnected(topic, message.data, message.retain,
                                                         address))
        else:
            self.counters[DROPPED] += 1  # not connected: nothing to answer with

    def _track(self, work: Awaitable[object]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("mqtt-sn gateway: QoS -1 publish failed")
        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def error_received(self, exc: Exception) -> None:
        log.debug("mqtt-sn gateway socket error: %s", exc)

    # -- peers -----------------------------------------------------------------------------
    def _new_peer(self, address: tuple[str, int]) -> Peer:
        peer = Peer(address, self.config.peer_rate)
        link = self.backend.link(address)
        client = SnClient(self.config.settings, link,
                          lambda message: self._send(message, address, link),
                          lambda _client: self._forget(peer))
        link.bind(client)
        peer.client = client
        peer.link = link
        peer.inbox = Inbox(lambda message: self._handle(peer, message), INBOX_LIMIT)
        self.peers[address] = peer
        self._arm(peer)
        return peer

    async def _handle(self, peer: Peer, message: Message) -> None:
        client = peer.client
        assert client is not None
        await client.handle(message)
        if client.replaced_by_connect and isinstance(message, Connect):
            # CONNECT while connected: a new connection from this address.
            fresh = self._new_peer(peer.address)
            assert fresh.inbox is not None
            fresh.inbox.put(message)
            return
        if self.peers.get(peer.address) is peer:
            self._arm(peer)

    def _arm(self, peer: Peer) -> None:
        """(Re)start the peer's timer if its deadline is earlier than the timer's."""
        client = peer.client
        assert client is not None
        deadline = client.deadline()
        if deadline is None:
            return
        timer = peer.timer
        if timer is not None and not timer.cancelled() and timer.when() <= deadline:
            return  # fires first; `_expire` looks again then
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, deadline - time.monotonic())
        peer.timer = loop.call_at(when, self._expire, peer)

    def _expire(self, peer: Peer) -> None:
        peer.timer = None
        client = peer.client
        if client is None or self.peers.get(peer.address) is not peer:
            return
        if not client.expire():
            self._arm(peer)

    def _forget(self, peer: Peer) -> None:
        """The peer's client is closed: its state goes (a new CONNECT starts over)."""
        if self.peers.get(peer.address) is peer:
            del self.peers[peer.address]
        if peer.timer is not None:
            peer.timer.cancel()
            peer.timer = None
        if peer.inbox is not None:
            peer.inbox.close()

    # -- datagrams out ---------------------------------------------------------------------
    def _send(self, message: Message, address: tuple[str, int],
              link: SnLink | None = None) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            data = encode(message)
        except ValueError:
            self.counters[DROPPED] += 1  # over MQTT-SN's 64 KiB
            return
        transport.sendto(data, address)
        self.counters["bytes/sent"] += len(data)
        if link is not None:
            link.sent(len(data))

    def _send_advertise(self) -> None:
        config = self.config
        assert config.advertise_to is not None
        host, port = config.advertise_to
        duration = min(int(config.advertise_interval), 0xFFFF)
        # Port 0: the gateway's own (EMQ X broadcasts to the port it listens on).
        self._send(Advertise(config.gateway_id, duration), (host, port or self.bound[1]))
        self._advertise = asyncio.get_running_loop().call_later(
            config.advertise_interval, self._send_advertise)

