"""emqx_lwm2m as a plugin: its config keys, the object definitions read at load,
and its listeners opened on load and closed on unload (docs/gateways.md)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from starling.config import parse_duration
from starling.plugins import ConfigKey, parse_nonnegative_duration, parse_switch

from ..coap.plugin import GatewayPlugin, refuse_certificates
from ..coap.transport import (
    parse_optional_listen,
    start_dtls_server,
    start_server,
)
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
                  "DTLS (pre-shared keys) listener: ip:port; empty = none.",
                  parse_optional_listen, required=False),
        ConfigKey("lwm2m.certfile", "", "Not supported: DTLS takes pre-shared keys.",
                  refuse_certificates, required=False),
        ConfigKey("lwm2m.keyfile", "", "Not supported: DTLS takes pre-shared keys.",
                  refuse_certificates, required=False),
    )

    server: Lwm2mServer | None = None

    def lwm2m_settings(self) -> Lwm2mSettings:
        s = self.settings
        if s["lwm2m.lifetime_min"] > s["lwm2m.lifetime_max"]:
            raise ValueError("lwm2m.lifetime_min is above lwm2m.lifetime_max")
        xml_dir = s["lwm2m.xml_dir"]
        objects: ObjectDatabase = load_directory(Path(xml_dir)) if xml_dir else \
            standard_objects()
        topics = TopicTemplates(s["lwm2m.mountpoint"], s["lwm2m.topics.command"],
                                s["lwm2m.topics.response"], s["lwm2m.topics.notify"],
                                s["lwm2m.topics.register"], s["lwm2m.topics.update"])
        return Lwm2mSettings(objects, topics, s["lwm2m.lifetime_min"],
                             s["lwm2m.lifetime_max"], s["lwm2m.qmode_time_window"],
                             s["lwm2m.auto_observe"])

    async def load(self) -> None:
        self.server = Lwm2mServer(self.hub_factory(self.context, "lwm2m"),
                                  self.lwm2m_settings())
        try:
            host, port = self.settings["lwm2m.port"]
            site = self.server.listener()
            udp = await start_server("lwm2m:udp:default", site, host, port)
            site.context = udp.context
            self.servers.append(udp)
            dtls = self.settings["lwm2m.dtls.port"]
            if dtls is not None:
                secure = self.server.listener()
                server = await start_dtls_server("lwm2m:dtls:default", secure, dtls[0], dtls[1],
                                                 self.context.broker.psk_key)
                secure.context = server.context
                self.servers.append(server)
        except BaseException:
            await self.unload()
            raise

    async def unload(self) -> None:
        if self.server is not None:
            await self.server.close()
        await self.close_servers()
