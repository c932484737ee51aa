"""CoAP over DTLS with X.509 certificates (``coaps://``): an aiocoap message
interface on an asyncio UDP endpoint, one `dtls_session.DtlsSession` per peer.

aiocoap's own DTLS server (tinydtls) takes pre-shared keys only; this
interface plugs into aiocoap below its message layer, as aiocoap's transports
do, so the CoAP site, retransmissions, deduplication, observe and block-wise
transfer are aiocoap's, unchanged: datagrams are opened here and their
plaintext handed to aiocoap's message manager, and what aiocoap sends to a
`DtlsPeer` is sealed in that peer's session.  A peer address stands for one
DTLS association: a client that handshakes again from the same ``ip:port``
is a new remote to aiocoap (RFC 7252 §9.1.2), and the old one is dropped.

The table of peers is bounded: at most `DtlsLimits.per_address` associations
per IP address and `DtlsLimits.total` in all (a ClientHello past either is
ignored, logged); a peer that sends nothing for `idle_timeout` seconds, or
does not finish its handshake within `handshake_timeout`, is dropped.  Only a
client that returned the cookie exchange's cookie (so receives at its
address) gets an entry at all.

The server does not open associations: a request to a peer whose association
is gone fails (an LwM2M device is answered through the one it registered on).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import Any

import aiocoap
import aiocoap.error
import aiocoap.interfaces
from aiocoap.util import hostportjoin
from OpenSSL import SSL

from starling.transport import TlsOptions

from .dtls_config import DtlsLimits
from .dtls_session import (
    Address,
    CookieJar,
    DtlsClosed,
    DtlsError,
    DtlsSession,
    is_client_hello,
    server_context,
)

log = logging.getLogger(__name__)

#: Seconds between two log lines about handshakes refused for the bounds.
REFUSAL_LOG_INTERVAL = 60.0


class DtlsPeer(aiocoap.interfaces.EndpointAddress):  # type: ignore[misc]  # untyped library
    """One DTLS association, as aiocoap's remote; equal only to itself."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False

    def __init__(self, interface: X509DtlsInterface, sockaddr: Address,
                 session: DtlsSession) -> None:
        self.interface = interface
        self.sockaddr = sockaddr
        self.session = session
        self.last_seen = interface.loop.time()
        self.started = self.last_seen
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<DtlsPeer {self.hostinfo}{' closed' if self.closed else ''}>"

    @property
    def hostinfo(self) -> str:
        return str(hostportjoin(self.sockaddr[0], self.sockaddr[1]))

    @property
    def hostinfo_local(self) -> str:
        return self.interface.hostinfo_local

    @property
    def uri_base(self) -> str:
        return f"coaps://{self.hostinfo}"

    @property
    def uri_base_local(self) -> str:
        return f"coaps://{self.hostinfo_local}"

    @property
    def blockwise_key(self) -> object:
        return self

    @property
    def authenticated_claims(self) -> list[str]:
        """The client certificate's subject, when it sent one (verified with verify_peer)."""
        subject = self.session.peer_subject()
        return [] if subject is None else [subject]


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, interface: X509DtlsInterface) -> None:
        self.interface = interface

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.interface.datagram_received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("DTLS listener: %s", exc)


class X509DtlsInterface(aiocoap.interfaces.MessageInterface):  # type: ignore[misc]
    """aiocoap's message interface for a DTLS listener with certificates."""

    def __init__(self, mman: Any, name: str, context: SSL.Context,
                 limits: DtlsLimits) -> None:
        self.mman: Any = mman
        self.name = name
        self.context = context
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.peers: dict[Address, DtlsPeer] = {}
        self.per_address: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None
        self.hostinfo_local = ""
        self.refused = 0
        self._refusal_logged = -REFUSAL_LOG_INTERVAL
        self._sweeper: asyncio.TimerHandle | None = None

    async def bind(self, host: str, port: int) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: _Endpoint(self), local_addr=(host, port), family=family)
        self.transport = transport
        bound = int(transport.get_extra_info("sockname")[1])
        self.hostinfo_local = str(hostportjoin(host, bound))
        self._schedule_sweep()
        return bound

    # -- datagrams in ----------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Address) -> None:
        peer = self.peers.get(addr)
        if peer is None or (peer.session.established and is_client_hello(data)):
            self._hello(data, addr, peer)
            return
        peer.last_seen = self.loop.time()
        try:
            plaintexts = peer.session.receive(data)
        except DtlsError as exc:
            self._flush(peer)
            self.drop(peer, f"DTLS: {exc}", failed=not isinstance(exc, DtlsClosed))
            return
        self._flush(peer)
        for plaintext in plaintexts:
            self._dispatch(peer, plaintext)

    def _hello(self, data: bytes, addr: Address, old: DtlsPeer | None) -> None:
        """A ClientHello from a new peer, or from one starting over: the cookie
        exchange, then a new association if the cookie came back."""
        if not is_client_hello(data):
            return  # a record of an association we no longer keep
        accepted = DtlsSession.accept(self.context, addr, data, self.limits.mtu)
        if accepted.session is not None and old is None and not self._room_for(addr):
            return
        self._sendto(accepted.replies, addr)
        if accepted.session is None:
            return
        if old is not None:
            self.drop(old, "new handshake from the same address")
        peer = DtlsPeer(self, addr, accepted.session)
        self.peers[addr] = peer
        self.per_address[addr[0]] += 1
        self._arm(peer)

    def _room_for(self, addr: Address) -> bool:
        if self.per_address[addr[0]] >= self.limits.per_address:
            why = f"{addr[0]} has {self.limits.per_address} DTLS sessions already"
        elif len(self.peers) >= self.limits.total:
            why = f"{self.limits.total} DTLS sessions already"
        else:
            return True
        self.refused += 1
        now = self.loop.time()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:  # a flood logs a line a minute
            self._refusal_logged = now
            log.warning("listener %s: handshake from %s:%d refused: %s (%d refused so far)",
                        self.name, addr[0], addr[1], why, self.refused)
        return False

    def _dispatch(self, peer: DtlsPeer, plaintext: bytes) -> None:
        if self.mman is None:
            return
        try:
            message = aiocoap.Message.decode(plaintext, remote=peer)
        except aiocoap.error.UnparsableMessage:
            log.info("listener %s: unparsable CoAP message from %s ignored", self.name,
                     peer.hostinfo)
            return
        self.mman.dispatch_message(message)

    # -- datagrams out ---------------------------------------------------------------
    def _sendto(self, datagrams: list[bytes], addr: Address) -> None:
        if self.transport is not None:
            for datagram in datagrams:
                self.transport.sendto(datagram, addr)

    def _flush(self, peer: DtlsPeer) -> None:
        self._sendto(peer.session.outgoing(), peer.sockaddr)
        if not peer.closed:
            self._arm(peer)

    def _arm(self, peer: DtlsPeer) -> None:
        """Call OpenSSL back when its handshake retransmission timer runs out."""
        if peer.timer is not None:
            peer.timer.cancel()
            peer.timer = None
        delay = peer.session.timeout()
        if delay is not None:
            peer.timer = self.loop.call_later(max(delay, 0.0), self._retransmit, peer)

    def _retransmit(self, peer: DtlsPeer) -> None:
        peer.timer = None
        try:
            peer.session.on_timeout()
        except DtlsError as exc:
            self.drop(peer, f"DTLS: {exc}", failed=True)
            return
        self._flush(peer)

    # -- the peer table --------------------------------------------------------------
    def drop(self, peer: DtlsPeer, reason: str, notify: bool = True,
             failed: bool = False) -> None:
        """Forget `peer`; aiocoap fails what is pending with it (observations end).
        A failure (a refused certificate, a handshake that timed out) is logged at
        info, an ordinary end at debug."""
        if peer.closed:
            return
        peer.closed = True
        if peer.timer is not None:
            peer.timer.cancel()
        if self.peers.get(peer.sockaddr) is peer:
            del self.peers[peer.sockaddr]
            self.per_address[peer.sockaddr[0]] -= 1
            if not self.per_address[peer.sockaddr[0]]:
                del self.per_address[peer.sockaddr[0]]
        log.log(logging.INFO if failed else logging.DEBUG,
                "listener %s: DTLS session with %s ended: %s", self.name, peer.hostinfo, reason)
        if notify and self.mman is not None:
            self.mman.dispatch_error(aiocoap.error.NetworkError(reason), peer)

    def _schedule_sweep(self) -> None:
        every = max(0.2, min(self.limits.idle_timeout, self.limits.handshake_timeout) / 4)
        self._sweeper = self.loop.call_later(every, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for peer in list(self.peers.values()):
            if not peer.session.established:
                if now - peer.started >= self.limits.handshake_timeout:
                    self.drop(peer, "handshake not finished", failed=True)
            elif now - peer.last_seen >= self.limits.idle_timeout:
                self._close(peer, "idle")
        self._schedule_sweep()

    def _close(self, peer: DtlsPeer, reason: str, notify: bool = True) -> None:
        """End an association politely: close_notify, then forget it."""
        peer.session.close()
        self._sendto(peer.session.outgoing(), peer.sockaddr)
        self.drop(peer, reason, notify)

    # -- aiocoap's MessageInterface --------------------------------------------------
    def send(self, message: aiocoap.Message) -> None:
        peer = message.remote
        if not isinstance(peer, DtlsPeer) or peer.closed:
            log.debug("listener %s: %r not sent, its DTLS session is gone", self.name,
                      message)
            if isinstance(peer, DtlsPeer) and self.mman is not None:
                self.loop.call_soon(self.mman.dispatch_error,
                                    aiocoap.error.NetworkError("DTLS session ended"), peer)
            return
        try:
            peer.session.send(message.encode())
        except DtlsError as exc:
            self.drop(peer, f"DTLS: {exc}")
            return
        self._flush(peer)

    async def recognize_remote(self, remote: Any) -> bool:
        return isinstance(remote, DtlsPeer) and remote.interface is self

    async def determine_remote(self, message: Any) -> None:
        """None: this interface never opens an association of its own."""
        return None

    async def shutdown(self) -> None:
        self.mman = None
        if self._sweeper is not None:
            self._sweeper.cancel()
        for peer in list(self.peers.values()):
            self._close(peer, "listener closed", notify=False)
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def start_x509_dtls_interface(context: aiocoap.Context, name: str, host: str, port: int,
                                    options: TlsOptions, limits: DtlsLimits) -> int:
    """Add a certificate DTLS listener on `host`:`port` to `context`; the port bound.
    `ValueError` (the files, the ciphers) or `OSError` (the address) when it cannot."""
    ssl_context = server_context(options, CookieJar())
    bound = 0

    async def make(mman: Any) -> X509DtlsInterface:
        nonlocal bound
        interface = X509DtlsInterface(mman, name, ssl_context, limits)
        bound = await interface.bind(host, port)
        return interface

    # aiocoap's own transports are added this way (its Context.create_server_context).
    await context._append_tokenmanaged_messagemanaged_transport(make)
    return bound

