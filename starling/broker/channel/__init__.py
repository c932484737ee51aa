"""The MQTT channel: one per network connection.

The transport shell (starling.transport) owns the socket; it feeds decoded
packets to `Channel.handle()` and reports errors and EOF.  The channel owns
everything MQTT: the CONNECT handshake, keepalive, acknowledgements, and the
link between the connection and its `Session`.  It writes through the small
`Connection` interface and never sees a socket.  It is a `Client` (what every
protocol shares: authentication, the session, ACL, the will) and the `Outlet`
its session delivers through.

One module per flow, as Mosquitto's handle_*.c (docs/architecture.md):
`base` (state, waits, writing, closing), `acks` (replies in order, held for
their commit), `connect`, `publish` (in), `deliver` (out), `subscribe`,
`keepalive`.  `Channel` puts them together and dispatches each packet.

States: NEW (waiting for CONNECT) → CONNECTING (authentication running) →
CONNECTED → CLOSED.  `_terminate()` runs exactly once, whatever closed the
connection, and is where the will is published and the session let go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starling.mqtt import Auth, Connect, MQTTError, Packet, PacketType, UnsupportedProtocolVersion

from .. import metrics as m
from ..client import CONNECTED, CONNECTING, NEW
from .base import HOLD_LIMIT, ChannelBase, Connection, clients_log
from .connect import ConnectFlow
from .deliver import DeliveryFlow
from .publish import PublishFlow
from .subscribe import SubscribeFlow

__all__ = ["HOLD_LIMIT", "Channel", "ChannelBase", "Connection"]

log = logging.getLogger(__name__)


class Channel(ConnectFlow, PublishFlow, SubscribeFlow, DeliveryFlow):
    """An MQTT client's connection: every flow, and the packet dispatch."""

    __slots__ = ()

    def handle(self, packet: Packet) -> None:
        """One decoded packet from the client."""
        self.recv_pkt += 1
        self.counters[m.PACKETS_RECEIVED] += 1
        state = self.state
        if state == CONNECTED:
            if self._busy:
                self._hold(packet)  # keep order behind the packet being answered
                return
            handler = _HANDLERS.get(packet.type)
            if handler is None:
                # CONNECT twice [MQTT-3.1.0-2], or a packet only servers send.
                self._protocol_violation(f"unexpected {packet.type.name}")
                return
            handler(self, packet)
        elif state == NEW:
            if not isinstance(packet, Connect):
                self._protocol_violation(f"{packet.type.name} before CONNECT")  # [MQTT-3.1.0-1]
                return
            self._on_connect(packet)
        elif state == CONNECTING:
            if isinstance(packet, Connect):
                self._protocol_violation("second CONNECT")
                return
            if isinstance(packet, Auth) and self._auth_method is not None:
                self._auth_packet(packet)
                return
            self._hold(packet)

    def handle_error(self, error: MQTTError) -> None:
        """The decoder refused the client's bytes: answer if the spec says how, close."""
        self.counters[m.PACKETS_MALFORMED] += 1
        clients_log.warning("%s from %s: malformed input, connection closed: %s",
                            self._named(), self.peerhost, error)
        if self.state == NEW and isinstance(error, UnsupportedProtocolVersion):
            # Answered in 3.1.1 form: the client does not speak our 5.0 [MQTT-3.1.2-2].
            self._write_connack(False, 1, level=4)
        elif self.state == CONNECTED and self.protocol_level == 5:
            self._send_disconnect(error.reason_code, str(error))
        self.close("frame_error")


#: What a connected channel does with each packet type: one table for every
#: channel (a per-channel table of bound methods cost ~1 KiB per connection).
_HANDLERS: dict[PacketType, Callable[[Channel, Any], None]] = {
    PacketType.PUBLISH: Channel._on_publish,
    PacketType.PUBACK: Channel._on_puback,
    PacketType.PUBREC: Channel._on_pubrec,
    PacketType.PUBREL: Channel._on_pubrel,
    PacketType.PUBCOMP: Channel._on_pubcomp,
    PacketType.SUBSCRIBE: Channel._on_subscribe,
    PacketType.UNSUBSCRIBE: Channel._on_unsubscribe,
    PacketType.PINGREQ: Channel._on_pingreq,
    PacketType.DISCONNECT: Channel._on_disconnect,
    PacketType.AUTH: Channel._on_auth,
}
