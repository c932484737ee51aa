"""emqx_coap as a plugin: its config keys, and its listeners opened on load and
closed on unload (docs/gateways.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from starling.plugins import (
    ConfigKey,
    Plugin,
    PluginContext,
    PluginListener,
    PluginUnavailable,
    parse_switch,
    parse_timeout,
)
from starling.transport import TlsOptions

from ..config import parse_listen
from .dtls_config import DtlsKeys, DtlsLimits
from .hub import Hub
from .pubsub import PsTopics
from .sessions import CoapClients
from .site import CoapSite
from .transport import (
    CoapServer,
    parse_optional_listen,
    start_certificate_dtls_server,
    start_dtls_server,
    start_server,
)

#: Makes the hub a gateway's clients attach through: (context, protocol name) → Hub.
HubFactory = Callable[[PluginContext, str], Hub]


class GatewayPlugin(Plugin):
    """A gateway plugin: its clients attach through the hub `hub_factory` makes."""

    def __init__(self, context: PluginContext, settings: Mapping[str, Any],
                 hub_factory: HubFactory) -> None:
        super().__init__(context, settings)
        self.hub_factory = hub_factory
        self.servers: list[CoapServer] = []

    @classmethod
    def factory(cls, hub_factory: HubFactory) -> Callable[[PluginContext, Mapping[str, Any]],
                                                          Plugin]:
        def make(context: PluginContext, settings: Mapping[str, Any]) -> Plugin:
            return cls(context, settings, hub_factory)
        return make

    def certificates(self, keys: DtlsKeys) -> TlsOptions | None:
        """The DTLS listener's certificates, None for pre-shared keys; keys that do
        not fit together refuse the load, named."""
        try:
            return keys.options(self.settings)
        except ValueError as exc:
            raise PluginUnavailable(str(exc)) from None

    async def start_dtls(self, name: str, site: Any, listen: tuple[str, int],
                         certificates: TlsOptions | None, idle_timeout: float) -> CoapServer:
        """The DTLS listener: X.509 certificates when given, else pre-shared keys
        (the broker's PSK table, emqx_psk_file)."""
        host, port = listen
        if certificates is None:
            server = await start_dtls_server(name, site, host, port,
                                             self.context.broker.psk_key)
        else:
            server = await start_certificate_dtls_server(
                name, site, host, port, certificates, DtlsLimits(idle_timeout=idle_timeout))
        return self.listening(server)

    def listening(self, server: CoapServer) -> CoapServer:
        """Keep `server` to close on unload, and show it in GET /listeners."""
        self.servers.append(server)
        protocol = server.name.rsplit(":", 1)[0]

        def describe() -> PluginListener:
            # UDP has no connection limit of its own here: max_conns 0.
            return PluginListener(protocol, server.name, server.host, server.port, 0,
                                  self.connections_on(server))
        self.context.listeners[server.name] = describe
        return server

    def connections_on(self, server: CoapServer) -> int:
        """The gateway's clients that came through `server`."""
        raise NotImplementedError

    async def close_servers(self) -> None:
        for server in reversed(self.servers):
            self.context.listeners.pop(server.name, None)
            await server.close()
        self.servers.clear()


#: emqx_coap's DTLS keys, as EMQ X v3.2 named them.
DTLS = DtlsKeys.under("coap.dtls")


class CoapPlugin(GatewayPlugin):
    SCHEMA: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("coap.port", "5683", "UDP listener: port or ip:port (0 = a free port).",
                  parse_listen),
        ConfigKey("coap.keepalive", "120s",
                  "A CoAP session ends this long after its last request.", parse_timeout),
        ConfigKey("coap.enable_stats", "off",
                  "Accepted for EMQ X's conf files (CoAP clients are always counted).",
                  parse_switch, required=False),
        ConfigKey("coap.dtls.port", "",
                  "DTLS listener (coaps): port or ip:port, 0 as port = a free one; "
                  "empty = none.", parse_optional_listen, required=False),
        *DTLS.schema(),
    )

    clients: CoapClients | None = None

    async def load(self) -> None:
        settings = self.settings
        certificates = self.certificates(DTLS)
        dtls = settings["coap.dtls.port"]
        if certificates is not None and dtls is None:
            raise PluginUnavailable("coap.dtls.certfile is set but coap.dtls.port is empty "
                                    "(no DTLS listener to use it)")
        self.clients = CoapClients(self.hub_factory(self.context, "coap"),
                                   settings["coap.keepalive"])
        site = CoapSite(self.clients, PsTopics(), time.monotonic)
        try:
            host, port = settings["coap.port"]
            self.listening(await start_server("coap:udp:default", site, host, port))
            if dtls is not None:
                # A DTLS session idle past the keepalive serves no CoAP session any more.
                await self.start_dtls("coap:dtls:default", site, dtls, certificates,
                                      settings["coap.keepalive"])
        except BaseException:
            await self.unload()
            raise

    async def unload(self) -> None:
        if self.clients is not None:
            await self.clients.close()
        await self.close_servers()

    def connections_on(self, server: CoapServer) -> int:
        if self.clients is None:
            return 0
        return self.clients.count(secure=server.name.startswith("coap:dtls:"))
