"""emqx_sn: the MQTT-SN gateway as a plugin (docs/gateways.md, "MQTT-SN").

Loaded, it binds its UDP socket on ``mqtt.sn.port`` (the bound port is
logged like the MQTT listeners'); unloaded, every client is sent DISCONNECT
and leaves the broker, and the socket is closed.  Config keys are EMQ X
v3.2's ``etc/plugins/emqx_sn.conf`` plus a few of Starling's own (per-client
credentials and the per-peer limits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starling.config import parse_duration
from starling.plugins import (
    ConfigKey,
    Plugin,
    PluginContext,
    PluginListener,
    parse_nonnegative_duration,
    parse_nonnegative_int,
    parse_positive_int,
    parse_switch,
)

from ..config import family, non_empty, parse_listen, text
from .client import SnBrokerBackend, SnCredentials
from .gateway import REFUSED, SnGateway, SnGatewayConfig
from .protocol import SnSettings
from .topics import LAST_ID, PredefinedTopics

PLUGIN = "emqx_sn"


def _gateway_id(value: str) -> int:
    number = parse_nonnegative_int(value)
    if number > 255:
        raise ValueError(f"a gateway id is 0-255, got {value!r}")
    return number


def _advertise_to(value: str) -> tuple[str, int] | None:
    """``off``, a host (the gateway's own port is used), or host:port."""
    text = value.strip()
    if text in ("", "off"):
        return None
    if ":" in text and not text.startswith("["):
        return parse_listen(text)
    return text.strip("[]"), 0


class SnPlugin(Plugin):
    SCHEMA = (
        ConfigKey("mqtt.sn.port", "1884",
                  "UDP port (or IP:Port) of the gateway; 0 picks a free one (logged).",
                  parse_listen),
        ConfigKey("mqtt.sn.advertise_duration", "15s",
                  "Period of the ADVERTISE broadcast (its Duration field, in seconds as the "
                  "spec says); 0 = no ADVERTISE.", parse_nonnegative_duration),
        ConfigKey("mqtt.sn.advertise_address", "255.255.255.255",
                  "Where ADVERTISE goes: a broadcast address (the gateway's port) or "
                  "host:port; off = nowhere.", _advertise_to),
        ConfigKey("mqtt.sn.gateway_id", "1", "Gateway id in ADVERTISE and GWINFO (0-255).",
                  _gateway_id),
        ConfigKey("mqtt.sn.enable_stats", "off",
                  "Accepted for EMQ X's conf files; connection stats are always current.",
                  parse_switch),
        ConfigKey("mqtt.sn.enable_qos3", "off",
                  "Accept QoS -1 PUBLISH (from peers without a connection too).",
                  parse_switch),
        ConfigKey("mqtt.sn.idle_timeout", "30s",
                  "A peer that does not complete its CONNECT within this is dropped.",
                  parse_duration),
        ConfigKey("mqtt.sn.predefined.topic.$id", "",
                  "The topic name of predefined topic id $id (1-65534; 0 is reserved "
                  "and ignored).", text, required=False),
        ConfigKey("mqtt.sn.username", "",
                  "User name every MQTT-SN client authenticates with (MQTT-SN's CONNECT "
                  "has none); empty = none.", text, required=False),
        ConfigKey("mqtt.sn.password", "",
                  "Password that goes with mqtt.sn.username.", text, required=False),
        ConfigKey("mqtt.sn.client.$id.clientid", "",
                  "A client with its own credentials (mqtt.sn.client.$id.username / "
                  ".password), instead of mqtt.sn.username / password.", non_empty,
                  required=False),
        ConfigKey("mqtt.sn.client.$id.username", "",
                  "User name of client mqtt.sn.client.$id.clientid.", text, required=False),
        ConfigKey("mqtt.sn.client.$id.password", "",
                  "Password of client mqtt.sn.client.$id.clientid.", text, required=False),
        ConfigKey("mqtt.sn.max_topics_per_client", "1000",
                  "Topic ids one client may have registered (either way).",
                  parse_positive_int),
        ConfigKey("mqtt.sn.peer_rate_limit", "1000",
                  "Datagrams a second one peer (ip:port) may send; more are dropped and "
                  "counted. 0 = no limit.", parse_nonnegative_int),
        ConfigKey("mqtt.sn.max_clients", "1024000",
                  "Most clients at once; a CONNECT beyond is answered CONNACK congestion.",
                  parse_positive_int),
        ConfigKey("mqtt.sn.zone", "external", "Zone of MQTT-SN clients (zone.<name>.*).",
                  non_empty),
    )

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.gateway: SnGateway | None = None

    def predefined(self) -> PredefinedTopics:
        topics: dict[int, str] = {}
        for raw_id, name in family(self.settings, "mqtt.sn.predefined.topic.").items():
            key = f"mqtt.sn.predefined.topic.{raw_id}"
            if not raw_id.isdigit() or int(raw_id) > LAST_ID:
                raise ValueError(f"{key}: the topic id must be 1-{LAST_ID}")
            if int(raw_id) == 0:
                continue  # EMQ X's conf file ships "0 = reserved"
            if not name or "+" in name or "#" in name:
                raise ValueError(f"{key}: {name!r} is not a topic name")
            topics[int(raw_id)] = name
        return PredefinedTopics(topics)

    def credentials(self) -> SnCredentials:
        s = self.settings
        default = (s["mqtt.sn.username"] or None, s["mqtt.sn.password"] or None)
        entries = family(s, "mqtt.sn.client.")
        per_client: dict[str, tuple[str | None, str | None]] = {}
        for key, client_id in entries.items():
            label, _, field = key.rpartition(".")
            if field != "clientid":
                continue
            per_client[client_id] = (entries.get(f"{label}.username") or None,
                                     entries.get(f"{label}.password") or None)
        return SnCredentials(default, per_client)

    def gateway_config(self) -> SnGatewayConfig:
        s = self.settings
        host, port = s["mqtt.sn.port"]
        options = self.context.broker.zone_options(s["mqtt.sn.zone"])
        settings = SnSettings(self.predefined(),
                              max_topics=s["mqtt.sn.max_topics_per_client"],
                              enable_qos3=s["mqtt.sn.enable_qos3"],
                              keepalive_multiplier=options.keepalive_multiplier,
                              idle_timeout=s["mqtt.sn.idle_timeout"])
        return SnGatewayConfig(host, port, settings, gateway_id=s["mqtt.sn.gateway_id"],
                               advertise_interval=s["mqtt.sn.advertise_duration"],
                               advertise_to=s["mqtt.sn.advertise_address"],
                               peer_rate=float(s["mqtt.sn.peer_rate_limit"]),
                               max_clients=s["mqtt.sn.max_clients"])

    async def load(self) -> None:
        config = self.gateway_config()
        broker = self.context.broker
        backend = SnBrokerBackend(broker, self.credentials(), self.settings["mqtt.sn.zone"],
                                  config.name)
        self.gateway = SnGateway(config, backend, broker.counters)
        await self.gateway.start()
        self.context.listeners[config.name] = self.describe

    def describe(self) -> PluginListener:
        """The UDP listener as GET /listeners shows it: connected peers, and CONNECTs
        refused over max_clients as `max_conns`."""
        gateway = self.gateway
        assert gateway is not None
        name = gateway.config.name
        refused = gateway.counters[REFUSED]
        return PluginListener(name.rsplit(":", 1)[0], name, *gateway.bound,
                              gateway.config.max_clients, gateway.connected,
                              {"max_conns": refused} if refused else {})

    async def unload(self) -> None:
        gateway, self.gateway = self.gateway, None
        if gateway is not None:
            self.context.listeners.pop(gateway.config.name, None)
            await gateway.stop()
