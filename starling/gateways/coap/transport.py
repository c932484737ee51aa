"""CoAP listeners on aiocoap, shared by emqx_coap and emqx_lwm2m.

aiocoap binds its UDP sockets with SO_REUSEPORT, so a second server on a
port already served would silently share its datagrams; `start_server`
first binds a plain socket to refuse a port in use, as EMQ X's `eaddrinuse`.
Port 0 picks a free port; the port bound is read back and logged as
``listener <name> on <host>:<port>``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any

import aiocoap

log = logging.getLogger(__name__)


class ListenerError(Exception):
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


async def start_server(name: str, site: Any, host: str, port: int) -> CoapServer:
    """Serve `site` (an aiocoap resource) on UDP `host`:`port`."""
    if port:
        _refuse_busy_port(name, host, port)
    try:
        context = await aiocoap.Context.create_server_context(
            site, bind=(host, port), transports=["udp6"], loggername=f"coap.{name}")
    except OSError as exc:
        raise ListenerError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = _bound_port(context) or port
    log.info("listener %s on %s:%d", name, host, bound)
    return CoapServer(name, host, bound, context)


def _refuse_busy_port(name: str, host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise ListenerError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None
    finally:
        probe.close()


def _bound_port(context: aiocoap.Context) -> int | None:
    for interface in context.request_interfaces:
        transport = getattr(getattr(interface, "token_interface", None), "message_interface",
                            None)
        sock = None
        with contextlib.suppress(AttributeError):
            sock = transport.transport.get_extra_info("socket")  # type: ignore[union-attr]
        if sock is not None:
            return int(sock.getsockname()[1])
    return None


def peer_of(remote: Any) -> tuple[str, int]:
    """(ip, port) of an aiocoap remote address, IPv4-mapped addresses as IPv4."""
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr is not None:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return str(address), int(sockaddr[1])
    host, port = aiocoap.util.hostportsplit(remote.hostinfo)
    return host, int(port or aiocoap.COAP_PORT)
