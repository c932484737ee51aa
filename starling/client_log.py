"""Each client's life in the log, as Mosquitto and EMQ X operators expect it:
connected, refused (with the CONNACK code and why), disconnected (with why:
a DISCONNECT, the socket closed, a kick, a takeover, a timeout, bad input).

All of it goes to the logger ``starling.clients`` at `info` (bad input, which
the broker core reports itself, at `warning`); ``log.clients = off`` silences
that logger.  It is written from the client hooks, with what `ClientInfo`
says, and the hooks are only registered when a line would be written: at
``log.level = warning`` (or with ``log.clients = off``) a connect costs
nothing more.  Nothing is logged per message.
"""

from __future__ import annotations

import logging

from starling.broker import Broker, ClientInfo, HookPoint
from starling.mqtt import ReasonCode, connack_code_for

#: The logger of every client line (the core's bad-input warnings included).
LOGGER = "starling.clients"
log = logging.getLogger(LOGGER)

#: How each `client.disconnected` reason reads in the log, and its level.
REASONS: dict[str, tuple[str, int]] = {
    "normal": ("sent DISCONNECT", logging.INFO),
    "closed": ("closed the connection", logging.INFO),
    "kicked": ("kicked (management API or ctl)", logging.INFO),
    "banned": ("disconnected: a ban now covers it", logging.INFO),
    "takeovered": ("taken over by a new connection with the same client id", logging.INFO),
    "discarded": ("discarded: a new connection started a clean session", logging.INFO),
    "keepalive_timeout": ("silent past its keepalive: disconnected", logging.INFO),
    "shutdown": ("disconnected: the node is stopping", logging.INFO),
    "frame_error": ("disconnected: it sent malformed data", logging.WARNING),
    "protocol_error": ("disconnected: it broke the protocol", logging.WARNING),
    "not_authorized": ("disconnected: ACL denied it (acl_deny_action = disconnect)",
                       logging.INFO),
}


def who(client: ClientInfo) -> str:
    user = f"user {client.username!r}" if client.username is not None else "no user name"
    return f"{user}, {client.peerhost}:{client.peerport} via {client.listener or client.protocol}"


def protocol(client: ClientInfo) -> str:
    if client.protocol != "mqtt":
        return f"{client.proto_name} {client.proto_ver}"
    return {3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0"}.get(
        client.proto_ver, f"MQTT level {client.proto_ver}")


def reason_words(reason: ReasonCode) -> str:
    return reason.name.lower().replace("_", " ")


class ClientLog:
    def __init__(self, broker: Broker, enabled: bool) -> None:
        self.broker = broker
        self.enabled = enabled
        self._attached = False

    def start(self) -> None:
        """Register the hooks, if a line would be written at all."""
        if not self.enabled or not log.isEnabledFor(logging.INFO) or self._attached:
            return
        hooks = self.broker.hooks
        hooks.add(HookPoint.CLIENT_CONNACK, self.on_connack)
        hooks.add(HookPoint.CLIENT_CONNECTED, self.on_connected)
        hooks.add(HookPoint.CLIENT_DISCONNECTED, self.on_disconnected)
        self._attached = True

    def stop(self) -> None:
        if not self._attached:
            return
        hooks = self.broker.hooks
        hooks.remove(HookPoint.CLIENT_CONNACK, self.on_connack)
        hooks.remove(HookPoint.CLIENT_CONNECTED, self.on_connected)
        hooks.remove(HookPoint.CLIENT_DISCONNECTED, self.on_disconnected)
        self._attached = False

    # -- the hooks ---------------------------------------------------------------------------
    def on_connack(self, client: ClientInfo, reason: ReasonCode) -> None:
        if reason == ReasonCode.SUCCESS:
            return
        code = connack_code_for(reason, client.proto_ver) if client.protocol == "mqtt" \
            else int(reason)
        log.info("client %r refused: %s (CONNACK %s): %s, %s", client.client_id,
                 reason_words(reason), f"0x{code:02X}" if client.proto_ver >= 5 else code,
                 who(client), protocol(client))

    def on_connected(self, client: ClientInfo) -> None:
        log.info("client %r connected: %s, %s, keepalive %ds, %s", client.client_id,
                 who(client), protocol(client), client.keepalive,
                 "clean start" if client.clean_start else "persistent session")

    def on_disconnected(self, client: ClientInfo, reason: str) -> None:
        words, level = REASONS.get(reason, (f"disconnected: {reason}", logging.INFO))
        log.log(level, "client %r %s: %s", client.client_id, words, who(client))
