"""emqx_stomp: the STOMP gateway as a plugin (docs/gateways.md, "STOMP").

Loaded, it listens on ``stomp.listener`` (TCP, or TLS with
``stomp.listener.ssl = on``; the bound port is logged like the MQTT
listeners'); unloaded, every connection gets an ERROR frame and is closed,
and the listener stops.  Config keys are EMQ X v3.2's
``etc/plugins/emqx_stomp.conf`` plus a few of Starling's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starling.config import parse_bool, parse_duration
from starling.plugins import (
    ConfigKey,
    Plugin,
    PluginContext,
    PluginListener,
    parse_choice,
    parse_nonnegative_int,
    parse_positive_int,
    parse_switch,
)
from starling.transport import TlsOptions

from ..config import non_empty, parse_listen, text
from .client import StompBrokerBackend, StompDefaultUser
from .codec import FrameLimits
from .gateway import REFUSED, StompGatewayConfig, StompServer

PLUGIN = "emqx_stomp"


class StompPlugin(Plugin):
    SCHEMA = (
        ConfigKey("stomp.listener", "61613",
                  "TCP port (or IP:Port) of the listener; 0 picks a free one (logged).",
                  parse_listen),
        ConfigKey("stomp.listener.acceptors", "4",
                  "Reported for EMQ X compatibility (asyncio has one accept loop).",
                  parse_positive_int),
        ConfigKey("stomp.listener.max_clients", "512",
                  "Most connections at once; more are closed at once and counted.",
                  parse_positive_int),
        ConfigKey("stomp.listener.ssl", "off", "TLS on the listener (STOMP over TLS).",
                  parse_switch),
        ConfigKey("stomp.listener.ssl.keyfile", "", "Private key (PEM) of the TLS listener.",
                  text, required=False),
        ConfigKey("stomp.listener.ssl.certfile", "", "Certificate (PEM) of the TLS listener.",
                  text, required=False),
        ConfigKey("stomp.listener.ssl.cacertfile", "",
                  "CA certificates (PEM) that client certificates are checked against.",
                  text, required=False),
        ConfigKey("stomp.listener.ssl.verify", "verify_none",
                  "verify_peer: ask for a client certificate.",
                  parse_choice("verify_none", "verify_peer")),
        ConfigKey("stomp.listener.ssl.fail_if_no_peer_cert", "false",
                  "With verify_peer: refuse clients without a certificate.", parse_bool),
        ConfigKey("stomp.listener.ssl.tls_versions", "tlsv1.2,tlsv1.3",
                  "TLS versions offered.", non_empty),
        ConfigKey("stomp.listener.ssl.ciphers", "", "OpenSSL cipher list; empty = default.",
                  text, required=False),
        ConfigKey("stomp.default_user.login", "guest",
                  "A login accepted with stomp.default_user.passcode without asking the "
                  "auth chain (empty = none).", text, required=False),
        ConfigKey("stomp.default_user.passcode", "guest",
                  "Passcode of stomp.default_user.login.", text, required=False),
        ConfigKey("stomp.allow_anonymous", "true",
                  "Accept a CONNECT without a login header (then the auth chain decides, as "
                  "for an MQTT client without a user name).", parse_bool),
        ConfigKey("stomp.frame.max_headers", "10", "Most headers in a frame.",
                  parse_positive_int),
        ConfigKey("stomp.frame.max_header_length", "1024", "Longest header line, in bytes.",
                  parse_positive_int),
        ConfigKey("stomp.frame.max_body_length", "8192", "Largest frame body, in bytes.",
                  parse_positive_int),
        ConfigKey("stomp.max_redeliveries", "3",
                  "Times a NACKed (or resent) MESSAGE goes again before it is dropped.",
                  parse_nonnegative_int),
        ConfigKey("stomp.idle_timeout", "20s",
                  "A connection that sends no CONNECT within this is closed.", parse_duration),
        ConfigKey("stomp.zone", "external", "Zone of STOMP clients (zone.<name>.*).",
                  non_empty),
    )

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.server: StompServer | None = None
        self.default_user = StompDefaultUser(settings["stomp.default_user.login"] or None,
                                             settings["stomp.default_user.passcode"])

    def tls(self) -> TlsOptions | None:
        s = self.settings
        if not s["stomp.listener.ssl"]:
            return None
        certfile = s["stomp.listener.ssl.certfile"]
        if not certfile:
            raise ValueError("stomp.listener.ssl.certfile: needed when stomp.listener.ssl "
                             "is on")
        return TlsOptions(certfile, s["stomp.listener.ssl.keyfile"],
                          s["stomp.listener.ssl.cacertfile"], s["stomp.listener.ssl.verify"],
                          s["stomp.listener.ssl.fail_if_no_peer_cert"],
                          s["stomp.listener.ssl.ciphers"], s["stomp.listener.ssl.tls_versions"])

    def server_config(self) -> StompGatewayConfig:
        s = self.settings
        host, port = s["stomp.listener"]
        tls = self.tls()
        limits = FrameLimits(s["stomp.frame.max_headers"], s["stomp.frame.max_header_length"],
                             s["stomp.frame.max_body_length"])
        return StompGatewayConfig(host, port, limits, max_clients=s["stomp.listener.max_clients"],
                                  idle_timeout=s["stomp.idle_timeout"],
                                  max_redeliveries=s["stomp.max_redeliveries"], tls=tls,
                                  name="stomp:ssl:default" if tls else "stomp:tcp:default")

    async def load(self) -> None:
        s = self.settings
        broker = self.context.broker
        config = self.server_config()
        backend = StompBrokerBackend(broker, s["stomp.allow_anonymous"], s["stomp.zone"],
                                     config.name)
        self.server = StompServer(config, backend, broker.counters)
        self.default_user.attach(broker)
        try:
            await self.server.start()
        except BaseException:
            self.default_user.detach(broker)
            raise
        self.context.listeners[config.name] = self.describe

    def describe(self) -> PluginListener:
        """The listener as GET /listeners shows it (refusals over max_clients as
        `max_conns`, as an MQTT listener counts them)."""
        server = self.server
        assert server is not None
        name = server.config.name
        refused = server.counters[REFUSED]
        return PluginListener(name.rsplit(":", 1)[0], name, *server.bound,
                              server.config.max_clients, len(server.connections),
                              {"max_conns": refused} if refused else {})

    async def unload(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            self.context.listeners.pop(server.config.name, None)
            await server.stop()
        self.default_user.detach(self.context.broker)
