"""STOMP connections as ordinary clients of the broker (the client seam,
docs/architecture.md "Writing a gateway client").

`StompBrokerClient` is what the broker knows of one connection: a
`starling.broker.Client` whose outlet hands deliveries to the connection's
`StompClient` (MESSAGE frames).  `StompLink` is the other direction: the
`StompBroker` the conversation calls (authentication with login/passcode,
publish with the frame's headers as MQTT 5 properties, subscribe, ACKs).
`StompDefaultUser` is `stomp.default_user` as a source in the auth chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from starling.broker import AuthResult, Broker, ClientInfo, HookPoint, Message, Stop
from starling.mqtt import Properties, PropertyId, ReasonCode

from ..client import GatewayClient, GatewayLink
from .protocol import ConnectOutcome, ConnectRequest, Outgoing, StompClient

PROTOCOL: Final = "stomp"
_ACCEPTED: Final = frozenset({ReasonCode.SUCCESS, ReasonCode.NO_MATCHING_SUBSCRIBERS})
_REFUSALS: Final = {
    ReasonCode.NOT_AUTHORIZED: "not authorized",
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: "bad login or passcode",
    ReasonCode.BANNED: "banned",
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: "client-id not valid",
    ReasonCode.SERVER_BUSY: "server busy",
}


@dataclass(frozen=True, slots=True)
class StompDefaultUser:
    """``stomp.default_user.login/passcode`` as a `client.authenticate` callback
    ahead of the auth plugins, for STOMP clients only: that login with that
    passcode is accepted, with another passcode refused; other logins are left to
    the rest of the chain."""

    login: str | None
    passcode: str

    def authenticate(self, info: ClientInfo, acc: AuthResult) -> Stop | None:
        if self.login is None or info.protocol != PROTOCOL or info.username != self.login:
            return None
        if info.password != self.passcode.encode():
            return Stop(AuthResult(ReasonCode.BAD_USER_NAME_OR_PASSWORD, anonymous=False))
        return Stop(AuthResult(ReasonCode.SUCCESS, anonymous=False))

    def attach(self, broker: Broker) -> None:
        broker.hooks.add(HookPoint.CLIENT_AUTHENTICATE, self.authenticate, priority=1000)

    def detach(self, broker: Broker) -> None:
        broker.hooks.remove(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)


class StompBrokerClient(GatewayClient):
    """One STOMP connection, as the broker lists, kicks and delivers to it."""

    __slots__ = ("conversation",)
    protocol = PROTOCOL

    def __init__(self, broker: Broker, zone: str, peer: tuple[str, int], listener: str) -> None:
        super().__init__(broker, zone, peer, listener)
        self.conversation: StompClient | None = None

    @property
    def proto_name(self) -> str:
        return "STOMP"

    # -- the outlet ------------------------------------------------------------------------
    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool:
        conversation = self.conversation
        if conversation is None:
            return False
        props = message.properties
        content_type = props.get(PropertyId.CONTENT_TYPE) if props else None
        user = props.get(PropertyId.USER_PROPERTY) if props else None
        conversation.deliver(message.topic, message.payload, packet_id,
                             content_type=content_type if isinstance(content_type, str) else None,
                             headers=tuple(user) if user else (), dup=dup)
        self.count_delivery(qos)
        return True

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None:
        """Never asked: STOMP subscriptions are QoS 0 or 1."""

    def _close_transport(self) -> None:
        """The broker closed the client (kick, takeover, ban, shutdown): an ERROR
        frame tells the client why, and the socket closes."""
        if self.conversation is not None:
            self.conversation.kick(self.disconnect_reason or "closed")


class StompLink(GatewayLink[StompBrokerClient]):
    """The conversation's way to the broker (`StompBroker`), through its client."""

    __slots__ = ("allow_anonymous",)

    def __init__(self, client: StompBrokerClient, allow_anonymous: bool) -> None:
        super().__init__(client)
        self.allow_anonymous = allow_anonymous

    def bind(self, conversation: StompClient) -> None:
        self.client.conversation = conversation

    async def connect(self, request: ConnectRequest) -> ConnectOutcome:
        if request.login is None and not self.allow_anonymous:
            return ConnectOutcome(False, "login required (stomp.allow_anonymous is false)")
        client = self.client
        major, _, minor = request.version.partition(".")
        client.protocol_level = int(major) * 10 + int(minor)
        code, _ = await client.connect(
            request.client_id, username=request.login,
            password=request.passcode.encode() if request.passcode is not None else None,
            clean_start=True, keepalive=round(request.heartbeat_in))
        if code == ReasonCode.SUCCESS:
            return ConnectOutcome(True)
        return ConnectOutcome(False, _REFUSALS.get(code, code.name.lower().replace("_", " ")))

    async def publish(self, message: Outgoing) -> bool:
        self.client.counters["packets/publish/received"] += 1
        properties: Properties = {}
        if message.content_type is not None:
            properties[PropertyId.CONTENT_TYPE] = message.content_type
        if message.headers:
            properties[PropertyId.USER_PROPERTY] = list(message.headers)
        code = await self.client.publish(message.topic, message.payload, message.qos,
                                         message.retain, properties=properties)
        return code in _ACCEPTED

    def close(self, reason: str) -> None:
        if reason == "normal":
            self.client.disconnect()  # DISCONNECT: no will (STOMP has none anyway)
        else:
            self.client.close(reason)


@dataclass(frozen=True, slots=True)
class StompBrokerBackend:
    broker: Broker
    allow_anonymous: bool
    zone: str
    listener: str

    def link(self, peer: tuple[str, int]) -> StompLink:
        return StompLink(StompBrokerClient(self.broker, self.zone, peer, self.listener),
                         self.allow_anonymous)
