"""emqx_coap as a plugin: its config keys, and its listeners opened on load and
closed on unload (docs/gateways.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from starling.config import parse_duration
from starling.plugins import ConfigKey, Plugin, PluginContext

from .hub import Hub
from .pubsub import PsTopics
from .sessions import CoapClients
from .site import CoapSite
from .transport import (
    CoapServer,
    parse_bind,
    parse_optional_bind,
    start_dtls_server,
    start_server,
)

#: Makes the hub a gateway's clients attach through: (context, protocol name) → Hub.
HubFactory = Callable[[PluginContext, str], Hub]


def parse_keepalive(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return seconds


def refuse_certificates(value: str) -> str:
    """DTLS with certificates is not available (aiocoap's DTLS server is tinydtls,
    pre-shared keys only): a config that asks for it is refused, not ignored."""
    if value.strip():
        raise ValueError("certificate DTLS is not supported (aiocoap's DTLS server takes "
                         "pre-shared keys only, from emqx_psk_file); leave it empty")
    return ""


def parse_stats(value: str) -> str:
    text = value.strip().lower()
    if text not in ("", "on", "off"):
        raise ValueError(f"expected on or off, got {value!r}")
    return text


class CoapPlugin(Plugin):
    SCHEMA: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("coap.port", "5683", "UDP listener: port or ip:port (0 = a free port).",
                  parse_bind),
        ConfigKey("coap.keepalive", "120s",
                  "A CoAP session ends this long after its last request.", parse_keepalive),
        ConfigKey("coap.enable_stats", "off",
                  "Accepted for EMQ X's conf files (CoAP clients are always counted).",
                  parse_stats, required=False),
        ConfigKey("coap.dtls.port", "",
                  "DTLS (pre-shared keys) listener: ip:port, 0 as port = a free one; "
                  "empty = none.", parse_optional_bind, required=False),
        ConfigKey("coap.dtls.certfile", "", "Not supported: DTLS takes pre-shared keys.",
                  refuse_certificates, required=False),
        ConfigKey("coap.dtls.keyfile", "", "Not supported: DTLS takes pre-shared keys.",
                  refuse_certificates, required=False),
    )

    def __init__(self, context: PluginContext, settings: Mapping[str, Any],
                 hub_factory: HubFactory) -> None:
        super().__init__(context, settings)
        self._hub_factory = hub_factory
        self.clients: CoapClients | None = None
        self.servers: list[CoapServer] = []

    @classmethod
    def factory(cls, hub_factory: HubFactory) -> Callable[[PluginContext, Mapping[str, Any]],
                                                          Plugin]:
        def make(context: PluginContext, settings: Mapping[str, Any]) -> Plugin:
            return cls(context, settings, hub_factory)
        return make

    async def load(self) -> None:
        settings = self.settings
        self.clients = CoapClients(self._hub_factory(self.context, "coap"),
                                   settings["coap.keepalive"])
        site = CoapSite(self.clients, PsTopics(), time.monotonic)
        try:
            host, port = settings["coap.port"]
            self.servers.append(await start_server("coap", site, host, port))
            dtls = settings["coap.dtls.port"]
            if dtls is not None:
                self.servers.append(await start_dtls_server(
                    "coap-dtls", site, dtls[0], dtls[1], self.context.broker.psk_key))
        except BaseException:
            await self.unload()
            raise

    async def unload(self) -> None:
        if self.clients is not None:
            await self.clients.close()
        for server in reversed(self.servers):
            await server.close()
        self.servers.clear()
