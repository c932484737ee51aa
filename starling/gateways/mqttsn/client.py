"""MQTT-SN clients as ordinary clients of the broker (the client seam,
docs/architecture.md "Writing a gateway client").

`SnBrokerClient` is what the broker knows of one MQTT-SN client: a
`starling.broker.Client` whose outlet hands deliveries to the client's
conversation (`SnClient`).  `SnLink` is the other direction: the
conversation's `SnBroker`, turning its requests into the client's flows
(authentication with the configured credentials, publish, subscribe, acks,
sleep as flow control) and the broker's reason codes into MQTT-SN return
codes.  `SnBrokerBackend` makes one of each per peer for the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from starling.broker import Broker, Message
from starling.mqtt import ReasonCode, Will

from ..client import GatewayClient, GatewayLink
from .messages import ReturnCode
from .protocol import ConnectOutcome, ConnectRequest, SnClient, WillSpec

#: The REST API's `proto_ver` of MQTT-SN 1.2.
PROTOCOL_VERSION: Final = 12
_ACCEPTED: Final = frozenset({ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS})
#: Refusals that mean "later" (MQTT-SN's "congestion"); any other is "not supported".
_BUSY: Final = frozenset({ReasonCode.SERVER_BUSY, ReasonCode.SERVER_UNAVAILABLE,
                          ReasonCode.QUOTA_EXCEEDED, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED})


@dataclass(frozen=True, slots=True)
class SnCredentials:
    """What MQTT-SN clients authenticate with (MQTT-SN's CONNECT carries none):
    `mqtt.sn.username/password`, or a client's own (`mqtt.sn.client.<n>.*`)."""

    default: tuple[str | None, str | None] = (None, None)
    per_client: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def lookup(self, client_id: str) -> tuple[str | None, bytes | None]:
        username, password = self.per_client.get(client_id, self.default)
        return username, password.encode() if password is not None else None


class SnBrokerClient(GatewayClient):
    """One MQTT-SN client, as the broker lists, kicks and delivers to it."""

    __slots__ = ("conversation",)
    protocol = "mqtt-sn"

    def __init__(self, broker: Broker, zone: str, peer: tuple[str, int], listener: str) -> None:
        super().__init__(broker, zone, peer, listener)
        self.protocol_level = PROTOCOL_VERSION
        self.conversation: SnClient | None = None

    @property
    def proto_name(self) -> str:
        return "MQTT-SN"

    # -- the outlet ------------------------------------------------------------------------
    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool:
        conversation = self.conversation
        if conversation is None or not conversation.deliver(
                message.topic, message.payload, qos, retain, packet_id, dup):
            return False  # the client's topic table is full: it cannot be named
        self.count_delivery(qos)
        return True

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None:
        if self.conversation is not None:
            self.conversation.send_pubrel(packet_id)

    def _close_transport(self) -> None:
        """The broker closed the client (kick, takeover, ban, shutdown): the
        device hears DISCONNECT and the gateway forgets the peer.  When the
        conversation itself ended the client, it is closed already."""
        if self.conversation is not None:
            self.conversation.kick(self.disconnect_reason or "closed")


class SnLink(GatewayLink[SnBrokerClient]):
    """The conversation's way to the broker (`SnBroker`), through its client."""

    __slots__ = ("credentials",)

    def __init__(self, client: SnBrokerClient, credentials: SnCredentials) -> None:
        super().__init__(client)
        self.credentials = credentials

    def bind(self, conversation: SnClient) -> None:
        self.client.conversation = conversation

    async def connect(self, request: ConnectRequest) -> ConnectOutcome:
        username, password = self.credentials.lookup(request.client_id)
        client = self.client
        will = request.will
        code, _ = await client.connect(
            request.client_id, username=username, password=password,
            clean_start=request.clean_session, keepalive=request.keepalive,
            expiry_interval=0.0 if request.clean_session
            else client.options.session_expiry_interval,
            will=Will(will.topic, will.payload, will.qos, will.retain) if will else None)
        if code == ReasonCode.SUCCESS:
            return ConnectOutcome(True)
        return ConnectOutcome(False, ReturnCode.CONGESTION if code in _BUSY
                              else ReturnCode.NOT_SUPPORTED, code.name.lower())

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                      msg_id: int) -> ReturnCode:
        self.client.counters["packets/publish/received"] += 1
        code = await self.client.publish(topic, payload, qos, retain,
                                         msg_id if qos == 2 else None)
        if code in _ACCEPTED:
            return ReturnCode.ACCEPTED
        return ReturnCode.CONGESTION if code in _BUSY else ReturnCode.NOT_SUPPORTED

    def release(self, msg_id: int) -> None:
        if self.live:
            self.client.release(msg_id)

    def pubrec(self, msg_id: int) -> None:
        if self.live:
            self.client.pubrec(msg_id)

    def pubcomp(self, msg_id: int) -> None:
        if self.live:
            self.client.pubcomp(msg_id)

    def set_will(self, will: WillSpec | None) -> None:
        self.client.will = (Will(will.topic, will.payload, will.qos, will.retain)
                            if will is not None else None)

    def pause(self) -> None:
        self.set_writable(False)

    def resume(self) -> None:
        self.set_writable(True)

    def pending(self) -> int:
        info = self.client.broker.session_info(self.client.client_id)
        return 0 if info is None else info.mqueue_len + info.inflight_len

    def close(self, reason: str, will: bool) -> None:
        if not will:
            self.client.will = None
        self.client.close(reason)


class SnBrokerBackend:
    """The gateway's broker side: a client per peer, and QoS -1 publishes."""

    def __init__(self, broker: Broker, credentials: SnCredentials, zone: str,
                 listener: str) -> None:
        self.broker = broker
        self.credentials = credentials
        self.zone = zone
        self.listener = listener

    def link(self, peer: tuple[str, int]) -> SnLink:
        return SnLink(SnBrokerClient(self.broker, self.zone, peer, self.listener),
                      self.credentials)

    async def publish_unconnected(self, topic: str, payload: bytes, retain: bool,
                                  peer: tuple[str, int]) -> bool:
        """A QoS -1 PUBLISH: published by the gateway itself at QoS 0 (no client to
        authenticate), through `message.publish`, rules and the retained store."""
        counters = self.broker.counters
        counters["messages/received"] += 1
        counters["messages/qos0/received"] += 1
        self.broker.publish(Message(topic, payload, 0, retain, "", None, peer[0]))
        return True
