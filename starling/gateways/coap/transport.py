"""CoAP listeners on aiocoap, shared by emqx_coap and emqx_lwm2m.

aiocoap binds its UDP sockets with SO_REUSEPORT, so a second server on a
port already served would silently share its datagrams; `start_server`
first binds a plain socket to refuse a port in use, as EMQ X's `eaddrinuse`.
Port 0 picks a free port; the port bound is read back and logged as
``listener <name> on <host>:<port>``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiocoap
import aiocoap.util
from aiocoap.util import socknumbers

from starling.plugins import PluginUnavailable
from starling.transport import TlsOptions

from ..config import parse_listen
from .dtls_config import DtlsLimits

log = logging.getLogger(__name__)


class ListenerError(PluginUnavailable):
    """A listener that cannot start (the message names the config key's value)."""


@dataclass(slots=True)
class CoapServer:
    name: str
    host: str
    port: int
    context: aiocoap.Context

    async def close(self) -> None:
        await self.context.shutdown()
        log.info("listener %s on %s:%d closed", self.name, self.host, self.port)


def parse_optional_listen(value: str) -> tuple[str, int] | None:
    """As the gateways' `parse_listen` (port or ip:port, 0 = a free port); empty
    means no listener."""
    return parse_listen(value) if value.strip() else None


async def start_server(name: str, site: Any, host: str, port: int) -> CoapServer:
    """Serve `site` (an aiocoap resource) on UDP `host`:`port`."""
    if port:
        _refuse_busy_port(name, host, port)
    try:
        context = await aiocoap.Context.create_server_context(
            site, bind=(host, port), transports=["udp6"], loggername=f"coap.{name}")
    except OSError as exc:
        raise ListenerError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = _socket(context)
    if sock is not None:
        _ignore_icmp_errors(sock)
    bound = int(sock.getsockname()[1]) if sock is not None else port
    log.info("listener %s on %s:%d", name, host, bound)
    return CoapServer(name, host, bound, context)


class PskCredentials:
    """aiocoap's server credentials for DTLS with pre-shared keys: the keys come from
    `lookup` (the broker's PSK table, emqx_psk_file), asked per handshake."""

    def __init__(self, lookup: Callable[[str], bytes | None]) -> None:
        self.lookup = lookup

    def find_dtls_psk(self, identity: bytes) -> tuple[bytes, str]:
        name = identity.decode("utf-8", "replace")
        key = self.lookup(name)
        if key is None:
            raise KeyError(name)
        return key, f"psk:{name}"


async def start_dtls_server(name: str, site: Any, host: str, port: int,
                            psk: Callable[[str], bytes | None]) -> CoapServer:
    """Serve `site` over DTLS with pre-shared keys (aiocoap's tinydtls server: PSK
    only, one address)."""
    try:
        if ipaddress.ip_address(host).is_unspecified:
            raise ListenerError(f"{name}: aiocoap's DTLS server listens on one address; "
                                f"give ip:port, not {host}:{port}")
    except ValueError:
        raise ListenerError(f"{name}: {host!r} is not an IP address") from None
    if importlib.util.find_spec("DTLSSocket") is None:  # tinydtls, for aiocoap's DTLS
        raise ListenerError(f"{name}: DTLS needs the DTLSSocket package "
                            "(pip install 'starling-mqtt[dtls]')")
    port = port or _free_udp_port(host)
    _refuse_busy_port(name, host, port)
    try:
        # aiocoap's DTLS transport binds the port it is given + 1 (5683 → 5684).
        context = await aiocoap.Context.create_server_context(
            site, bind=(host, port - 1), transports=["tinydtls_server"],
            server_credentials=PskCredentials(psk), loggername=f"coap.{name}")
    except OSError as exc:
        raise ListenerError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None
    log.info("listener %s on %s:%d", name, host, port)
    return CoapServer(name, host, port, context)


async def start_certificate_dtls_server(name: str, site: Any, host: str, port: int,
                                        options: TlsOptions,
                                        limits: DtlsLimits | None = None) -> CoapServer:
    """Serve `site` over DTLS with X.509 certificates (`dtls_x509`, on pyOpenSSL)."""
    try:
        from .dtls_x509 import start_x509_dtls_interface
    except ImportError:
        raise ListenerError(f"{name}: certificate DTLS needs the pyOpenSSL package "
                            "(pip install 'starling-mqtt[dtls]')") from None
    if port:
        _refuse_busy_port(name, host, port)
    context = aiocoap.Context(serversite=site, loggername=f"coap.{name}")
    try:
        bound = await start_x509_dtls_interface(context, name, host, port, options,
                                                limits or DtlsLimits())
    except OSError as exc:
        raise ListenerError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None
    log.info("listener %s on %s:%d", name, host, bound)
    return CoapServer(name, host, bound, context)


def _free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _refuse_busy_port(name: str, host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise ListenerError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def _socket(context: aiocoap.Context) -> socket.socket | None:
    """The UDP socket of aiocoap's udp6 transport."""
    for interface in context.request_interfaces:
        transport = getattr(getattr(interface, "token_interface", None), "message_interface",
                            None)
        with contextlib.suppress(AttributeError):
            sock = transport.transport.get_extra_info("socket")  # type: ignore[union-attr]
            if isinstance(sock, socket.socket):
                return sock
    return None


def _ignore_icmp_errors(sock: socket.socket) -> None:
    """Switch off the ICMP error queue aiocoap asks for (IP_RECVERR) on Linux.

    Under uvloop (the node's loop) an ICMP "port unreachable" from a client
    that went away (a CoAP client exiting right after its last request) leaves
    aiocoap's reader stuck, and the listener stops answering everyone.  Without
    the error queue, a peer that went away is noticed by retransmission
    timeouts instead, as on platforms without RECVERR."""
    if socknumbers.HAS_RECVERR:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IPV6, socknumbers.IPV6_RECVERR, 0)
            sock.setsockopt(socket.IPPROTO_IP, socknumbers.IP_RECVERR, 0)


def is_secure(remote: Any) -> bool:
    """Whether an aiocoap remote address came over DTLS (``coaps``)."""
    return getattr(remote, "scheme", "coap") == "coaps"


def peer_of(remote: Any) -> tuple[str, int]:
    """(ip, port) of an aiocoap remote address, IPv4-mapped addresses as IPv4."""
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr is not None:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return str(address), int(sockaddr[1])
    host, port = aiocoap.util.hostportsplit(remote.hostinfo)
    default = aiocoap.COAPS_PORT if getattr(remote, "scheme", "coap") == "coaps" else \
        aiocoap.COAP_PORT
    return host, int(port or default)
