"""A listener's settings (`listeners.<kind>.<name>.*`, docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from .tls import TlsOptions


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str  #: e.g. "mqtt:tcp:default"
    host: str
    port: int
    zone: str = "external"
    max_connections: int = 1024000
    acceptors: int = 8  #: reported for EMQ X compatibility; asyncio has one accept loop
    backlog: int = 4096  #: listen(2) backlog (capped by net.core.somaxconn)
    kind: str = "tcp"  #: tcp | ssl | ws | wss
    tls: TlsOptions | None = None
    path: str = "/mqtt"  #: WebSocket endpoint
    proxy_address_header: str = ""  #: e.g. X-Forwarded-For, when behind a proxy
    peer_cert_as_username: str = ""  #: "", "cn" or "dn"
    peer_cert_as_clientid: str = ""
    max_conn_rate: int = 0  #: new connections per second; 0 = unlimited
    #: CONNECTs waiting for the authentication chain at once; 0 = unlimited
    max_auth_pending: int = 1024
    #: Bytes one connection may bring before it yields the loop to the others
    read_budget: int = 64 * 1024
    reuse_port: bool = False  #: SO_REUSEPORT: share the port with other processes
    #: Plain TCP: "lean" (one epoll, a small transport per socket) or "loop" (the event
    #: loop's own transports); TLS and WebSocket listeners always use the loop's.  The
    #: node turns the setting's "auto" into one of them (`Node._transport`).
    transport: str = "lean"

    @property
    def protocol(self) -> str:
        return f"mqtt:{self.kind}"
