"""emqx_lwm2m as a plugin: its config keys, the object definitions read at load,
and its listeners opened on load and closed on unload (docs/gateways.md)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starling.config import parse_duration
from starling.plugins import (
    ConfigKey,
    PluginUnavailable,
    parse_nonnegative_duration,
    parse_switch,
)
from starling.transport import TlsOptions

from ..coap.dtls_config import DtlsKeys
from ..coap.plugin import GatewayPlugin
from ..coap.transport import CoapServer, parse_optional_listen, start_server
from ..config import parse_listen
from .objectdb import ObjectDatabase, load_directory, standard_objects
from .server import Lwm2mServer, Lwm2mSettings
from .topics import TopicTemplates


def parse_lifetime(value: str) -> int:
    seconds = parse_duration(value)
    if seconds < 0 or seconds != int(seconds):
        raise ValueError(f"expected whole seconds of 0 or more, got {value!r}")
    return int(seconds)


def parse_xml_dir(value: str) -> str:
    """Checked when set, so a wrong folder is refused naming the key."""
    text = value.strip()
    if text and not Path(text).is_dir():
        raise ValueError(f"{text!r} is not a directory")
    return text


def parse_topic(value: str) -> str:
    if "#" in value[:-1] or "+" in value.replace("%", ""):
        raise ValueError(f"only a trailing '#' wildcard is allowed, got {value!r}")
    return value


#: emqx_lwm2m's DTLS keys: the files as EMQ X v3.2 named them (``lwm2m.certfile``),
#: the rest under ``lwm2m.dtls.`` with the port.
DTLS = DtlsKeys.under("lwm2m.dtls", files="lwm2m")
#: A DTLS session of a device is kept this long without a datagram at least.
MIN_DTLS_IDLE = 60.0


class Lwm2mPlugin(GatewayPlugin):
    SCHEMA: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("lwm2m.port", "5683", "UDP listener: port or ip:port (0 = a free port).",
                  parse_listen),
        ConfigKey("lwm2m.lifetime_min", "1s", "Shortest registration lifetime accepted.",
                  parse_lifetime),
        ConfigKey("lwm2m.lifetime_max", "86400s", "Longest registration lifetime accepted.",
                  parse_lifetime),
        ConfigKey("lwm2m.qmode_time_window", "22",
                  "Seconds after registration from which a queue-mode device's commands "
                  "wait for its next uplink.", parse_nonnegative_duration),
        ConfigKey("lwm2m.auto_observe", "off",
                  "on: observe every object instance a device registers.", parse_switch),
        ConfigKey("lwm2m.mountpoint", "lwm2m/%e/",
                  "Topic prefix (%e endpoint name, %a device IP address).", str),
        ConfigKey("lwm2m.topics.command", "dn/#", "Commands to a device (subscribed).",
                  parse_topic),
        ConfigKey("lwm2m.topics.response", "up/resp", "Answers of a device.", parse_topic),
        ConfigKey("lwm2m.topics.notify", "up/notify", "Notifications of a device.",
                  parse_topic),
        ConfigKey("lwm2m.topics.register", "up/resp", "Register messages.", parse_topic),
        ConfigKey("lwm2m.topics.update", "up/resp", "Update messages.", parse_topic),
        ConfigKey("lwm2m.xml_dir", "",
                  "Folder of object definitions (OMA XML); empty = the OMA objects 0-7 "
                  "shipped with Starling.", parse_xml_dir, required=False),
        ConfigKey("lwm2m.dtls.port", "",
                  "DTLS listener (coaps): port or ip:port; empty = none, or lwm2m.port + 1 "
                  "when lwm2m.certfile is set (EMQ X).", parse_optional_listen,
                  required=False),
        *DTLS.schema(),
    )

    server: Lwm2mServer | None = None

    def lwm2m_settings(self) -> Lwm2mSettings:
        s = self.settings
        if s["lwm2m.lifetime_min"] > s["lwm2m.lifetime_max"]:
            raise PluginUnavailable("lwm2m.lifetime_min is above lwm2m.lifetime_max")
        xml_dir = s["lwm2m.xml_dir"]
        objects: ObjectDatabase = load_directory(Path(xml_dir)) if xml_dir else \
            standard_objects()
        topics = TopicTemplates(s["lwm2m.mountpoint"], s["lwm2m.topics.command"],
                                s["lwm2m.topics.response"], s["lwm2m.topics.notify"],
                                s["lwm2m.topics.register"], s["lwm2m.topics.update"])
        return Lwm2mSettings(objects, topics, s["lwm2m.lifetime_min"],
                             s["lwm2m.lifetime_max"], s["lwm2m.qmode_time_window"],
                             s["lwm2m.auto_observe"])

    def dtls_listen(self, certificates: TlsOptions | None) -> tuple[str, int] | None:
        """`lwm2m.dtls.port`; unset with certificates, lwm2m.port + 1 as EMQ X did."""
        dtls: tuple[str, int] | None = self.settings["lwm2m.dtls.port"]
        if dtls is None and certificates is not None:
            host, port = self.settings["lwm2m.port"]
            if port == 65535:
                raise PluginUnavailable("lwm2m.dtls.port: needed, lwm2m.port + 1 is no port")
            dtls = (host, port + 1 if port else 0)
        return dtls

    async def load(self) -> None:
        settings = self.lwm2m_settings()
        certificates = self.certificates(DTLS)
        dtls = self.dtls_listen(certificates)
        self.server = Lwm2mServer(self.hub_factory(self.context, "lwm2m"), settings)
        try:
            host, port = self.settings["lwm2m.port"]
            site = self.server.listener()
            udp = await start_server("lwm2m:udp:default", site, host, port)
            site.context = udp.context
            self.listening(udp)
            if dtls is not None:
                secure = self.server.listener()
                # A device updates its registration within its lifetime; a DTLS
                # session silent for longer serves no registration any more.
                idle = max(float(settings.lifetime_max), MIN_DTLS_IDLE)
                server = await self.start_dtls("lwm2m:dtls:default", secure, dtls,
                                               certificates, idle)
                secure.context = server.context
        except BaseException:
            await self.unload()
            raise

    async def unload(self) -> None:
        if self.server is not None:
            await self.server.close()
        await self.close_servers()

    def connections_on(self, server: CoapServer) -> int:
        """Devices registered through `server` (each is answered through the one it used)."""
        if self.server is None:
            return 0
        return sum(1 for device in self.server.devices.values()
                   if device.context is server.context)
