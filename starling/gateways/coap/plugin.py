"""emqx_coap as a plugin: its config keys, and its listeners opened on load and
closed on unload (docs/gateways.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from starling.plugins import ConfigKey, Plugin, PluginContext, parse_switch, parse_timeout

from ..config import parse_listen
from .hub import Hub
from .pubsub import PsTopics
from .sessions import CoapClients
from .site import CoapSite
from .transport import (
    CoapServer,
    parse_optional_listen,
    start_dtls_server,
    start_server,
)

#: Makes the hub a gateway's clients attach through: (context, protocol name) → Hub.
HubFactory = Callable[[PluginContext, str], Hub]


def refuse_certificates(value: str) -> str:
    """DTLS with certificates is not available (aiocoap's DTLS server is tinydtls,
    pre-shared keys only): a config that asks for it is refused, not ignored."""
    if value.strip():
        raise ValueError("certificate DTLS is not supported (aiocoap's DTLS server takes "
                         "pre-shared keys only, from emqx_psk_file); leave it empty")
    return ""


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

    async def close_servers(self) -> None:
        for server in reversed(self.servers):
            await server.close()
        self.servers.clear()


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
                  "DTLS (pre-shared keys) listener: ip:port, 0 as port = a free one; "
                  "empty = none.", parse_optional_listen, required=False),
        ConfigKey("coap.dtls.certfile", "", "Not supported: DTLS takes pre-shared keys.",
                  refuse_certificates, required=False),
        ConfigKey("coap.dtls.keyfile", "", "Not supported: DTLS takes pre-shared keys.",
                  refuse_certificates, required=False),
    )

    clients: CoapClients | None = None

    async def load(self) -> None:
        settings = self.settings
        self.clients = CoapClients(self.hub_factory(self.context, "coap"),
                                   settings["coap.keepalive"])
        site = CoapSite(self.clients, PsTopics(), time.monotonic)
        try:
            host, port = settings["coap.port"]
            self.servers.append(await start_server("coap:udp:default", site, host, port))
            dtls = settings["coap.dtls.port"]
            if dtls is not None:
                self.servers.append(await start_dtls_server(
                    "coap:dtls:default", site, dtls[0], dtls[1], self.context.broker.psk_key))
        except BaseException:
            await self.unload()
            raise

    async def unload(self) -> None:
        if self.clients is not None:
            await self.clients.close()
        await self.close_servers()
