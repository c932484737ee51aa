"""The gateways' `Hub` on the broker's client seam: each CoAP session and each
LwM2M device is a `starling.broker.Client` (docs/architecture.md, "Writing a
gateway client"), so the broker authenticates, checks, lists, delivers to and
kicks it as it does an MQTT connection."""

from __future__ import annotations

from typing import ClassVar

from starling.broker import Broker, Message
from starling.mqtt import ReasonCode
from starling.plugins import PluginContext

from ..client import GatewayClient
from .hub import AttachRefused, ClientDetails, Outlet

#: Refused connects → the reasons a gateway answers (`AttachRefused`).
_REFUSALS = {ReasonCode.BANNED: "banned",
             ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: "bad_client_id"}
_PUBLISHED = (ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS)


class CoapBrokerClient(GatewayClient):
    """A CoAP session as the broker sees it; deliveries go to its `Outlet`.

    CoAP has no acknowledgement a broker could wait for (a notification's ACK
    is the CoAP stack's), so QoS 1/2 deliveries are acknowledged as soon as
    they are handed to the gateway, as EMQ X's adapter did."""

    __slots__ = ("outlet",)
    protocol: ClassVar[str] = "coap"
    #: As the API's `proto_name` shows it.
    display_name: ClassVar[str] = "CoAP"

    def __init__(self, broker: Broker, outlet: Outlet, peer: tuple[str, int],
                 secure: bool = False) -> None:
        super().__init__(broker, "external", peer,
                         f"{self.protocol}:{'dtls' if secure else 'udp'}:default")
        self.outlet = outlet
        self.protocol_level = 1

    @property
    def proto_name(self) -> str:
        return self.display_name

    def _close_transport(self) -> None:
        self.outlet.closed(self.disconnect_reason or "closed")

    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool:
        self.outlet.deliver(message.topic, message.payload, qos, retain)
        self.count_delivery(qos)
        if qos == 1:
            self.puback(packet_id)
        elif qos == 2 and self.pubrec(packet_id) is not None:
            self.pubcomp(packet_id)
        return True

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None:
        self.pubcomp(packet_id)


class Lwm2mBrokerClient(CoapBrokerClient):
    __slots__ = ()
    protocol: ClassVar[str] = "lwm2m"
    display_name: ClassVar[str] = "LwM2M"


CLIENT_CLASSES: dict[str, type[CoapBrokerClient]] = {"coap": CoapBrokerClient, "lwm2m": Lwm2mBrokerClient}


class BrokerAttachment:
    """`Attachment` over a connected `GatewayClient`."""

    def __init__(self, client: CoapBrokerClient) -> None:
        self.client = client

    async def publish(self, topic: str, payload: bytes, qos: int = 0,
                      retain: bool = False) -> bool:
        return await self.client.publish(topic, payload, qos, retain) in _PUBLISHED

    async def subscribe(self, topic_filter: str, qos: int) -> bool:
        return await self.client.subscribe(topic_filter, qos) < 0x80

    def unsubscribe(self, topic_filter: str) -> None:
        self.client.unsubscribe(topic_filter)

    def set_peer(self, peer: tuple[str, int]) -> None:
        self.client._peer = peer

    def close(self, reason: str) -> None:
        if reason == "deregistered":
            self.client.disconnect()  # the device said goodbye
        else:
            self.client.close(reason)


class BrokerHub:
    """Attaches a gateway's devices to `broker` as clients of `protocol`."""

    def __init__(self, broker: Broker, protocol: str) -> None:
        self.broker = broker
        self.client_class = CLIENT_CLASSES[protocol]

    async def attach(self, details: ClientDetails, outlet: Outlet) -> BrokerAttachment:
        client = self.client_class(self.broker, outlet, details.peer, details.secure)
        reason, _ = await client.connect(details.client_id, username=details.username,
                                         password=details.password,
                                         keepalive=details.keepalive)
        if reason != ReasonCode.SUCCESS:
            raise AttachRefused(_REFUSALS.get(reason, "not_authorized"))
        return BrokerAttachment(client)


def broker_hub(context: PluginContext, protocol: str) -> BrokerHub:
    """The plugins' hub factory: the node's broker."""
    return BrokerHub(context.broker, protocol)
