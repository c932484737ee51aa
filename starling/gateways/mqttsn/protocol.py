"""One MQTT-SN client's conversation with the gateway (spec §6), without I/O.

`SnClient` takes decoded messages (`handle`), deliveries from its broker
session (`deliver`, `send_pubrel`) and the clock's verdict (`expire`); it
answers through `send` and reaches the broker through an `SnBroker`, the
per-client link the asyncio adapter builds on the broker's client seam.
`handle` awaits the link (authentication and ACL may do I/O); the adapter
hands it one message at a time, so a client's messages keep their order.

States (spec §6.14, figure 4)::

    new ─CONNECT─▶ (will_topic ─▶ will_msg ─▶) connecting ─▶ active
    active ─DISCONNECT(duration)─▶ asleep ─PINGREQ─▶ awake ─(buffer sent)─▶ asleep
    asleep/awake ─CONNECT─▶ active;  any ─▶ closed

Where EMQ X v3 differs, this follows the specification (docs/gateways.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from starling.mqtt import is_valid_topic_filter, is_valid_topic_name, is_wildcard

from .messages import (
    Connack,
    Connect,
    Disconnect,
    Message,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Regack,
    Register,
    ReturnCode,
    Suback,
    Subscribe,
    TopicIdType,
    Unsuback,
    Unsubscribe,
    WillMsg,
    WillMsgReq,
    WillMsgResp,
    WillMsgUpd,
    WillTopic,
    WillTopicReq,
    WillTopicResp,
    WillTopicUpd,
    short_name,
)
from .topics import PredefinedTopics, TopicRegistry

NEW: Final = "new"
WILL_TOPIC: Final = "will_topic"
WILL_MSG: Final = "will_msg"
CONNECTING: Final = "connecting"
ACTIVE: Final = "active"
ASLEEP: Final = "asleep"
AWAKE: Final = "awake"
CLOSED: Final = "closed"

#: MQTT-SN's only protocol id (spec §5.3.8).
PROTOCOL_ID: Final = 0x01


@dataclass(frozen=True, slots=True)
class WillSpec:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    client_id: str
    clean_session: bool
    keepalive: int
    will: WillSpec | None


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """The broker's answer to CONNECT; `return_code` is what CONNACK says when
    it is refused (NOT_SUPPORTED for refused credentials, a ban or a bad client
    id; CONGESTION when the node is at a limit)."""

    accepted: bool
    return_code: ReturnCode = ReturnCode.ACCEPTED
    reason: str = ""


class SnBroker(Protocol):
    """What a client's conversation needs from the broker (one per client)."""

    async def connect(self, request: ConnectRequest) -> ConnectOutcome: ...

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                      msg_id: int) -> ReturnCode:
        """Publish for the client: ACCEPTED, NOT_SUPPORTED (refused: ACL, topic) or
        CONGESTION (too many QoS 2 messages awaiting PUBREL).  A QoS 2 message is
        routed once until `release(msg_id)`, however often it is resent."""
        ...

    def release(self, msg_id: int) -> None:
        """PUBREL of an incoming QoS 2 message."""
        ...

    async def subscribe(self, topic_filter: str, qos: int) -> int | None:
        """Subscribe; the granted QoS, None when refused (ACL).  Retained messages
        follow on the event loop's next turn: after the SUBACK sent right away."""
        ...

    async def unsubscribe(self, topic_filter: str) -> None: ...

    def puback(self, msg_id: int) -> None: ...

    def pubrec(self, msg_id: int) -> None: ...

    def pubcomp(self, msg_id: int) -> None: ...

    def set_will(self, will: WillSpec | None) -> None: ...

    def pause(self) -> None:
        """The client sleeps: hold its deliveries (the session buffers them)."""
        ...

    def resume(self) -> None:
        """The client is awake: send what is held (deliveries come to `deliver`)."""
        ...

    def pending(self) -> int:
        """Deliveries still held or waiting for the client's acknowledgement."""
        ...

    def close(self, reason: str, will: bool) -> None:
        """The client is gone; publish its will if `will`."""
        ...


@dataclass(frozen=True, slots=True)
class SnSettings:
    predefined: PredefinedTopics
    #: Most topic ids one client may register (each way).
    max_topics: int = 1000
    #: Accept QoS -1 PUBLISH (`mqtt.sn.enable_qos3`).
    enable_qos3: bool = False
    #: A silent client is lost after keepalive x this (MQTT's 1.5).
    keepalive_multiplier: float = 1.5
    #: A peer that never completes CONNECT is dropped after this many seconds.
    idle_timeout: float = 30.0


def topic_of(message: Publish, registry: TopicRegistry | PredefinedTopics) -> str | None:
    """The topic a PUBLISH names, None if unknown.  Normal-type ids are looked up
    like predefined ones first (as EMQ X does for paho clients)."""
    kind = message.topic_id_type
    if kind == TopicIdType.SHORT:
        return short_name(message.topic_id)
    if kind == TopicIdType.RESERVED:
        return None
    if isinstance(registry, PredefinedTopics):
        return registry.names.get(message.topic_id)
    return registry.name_of(message.topic_id)


class SnClient:
    """The gateway's side of one client (one UDP peer address)."""

    def __init__(self, settings: SnSettings, link: SnBroker, send: Callable[[Message], None],
                 on_closed: Callable[[SnClient], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.link = link
        self.send = send
        self._on_closed = on_closed
        self.clock = clock
        self.state: str = NEW
        self.client_id = ""
        self.registry = TopicRegistry(settings.predefined, settings.max_topics)
        self.keepalive = 0
        self.sleep_duration = 0
        self.last_heard = clock()
        #: Set when closed by a CONNECT that starts a new connection from this peer.
        self.replaced_by_connect = False
        self.close_reason = ""
        self._request: Connect | None = None
        self._will_topic: WillTopic | None = None
        self._will: WillSpec | None = None
        self._register_id = 0

    # -- input ---------------------------------------------------------------------------
    async def handle(self, message: Message) -> None:
        """One message from the client."""
        self.last_heard = self.clock()
        state = self.state
        if state == CLOSED:
            return
        if isinstance(message, Connect):
            await self._on_connect(message)
        elif state == WILL_TOPIC:
            if isinstance(message, WillTopic):
                await self._on_will_topic(message)
        elif state == WILL_MSG:
            if isinstance(message, WillMsg):
                assert self._will_topic is not None and self._will_topic.topic is not None
                t = self._will_topic
                self._will = WillSpec(t.topic or "", message.payload, max(t.qos, 0), t.retain)
                await self._connect()
        elif state in (ACTIVE, ASLEEP, AWAKE):
            await self._connected(message)

    async def _connected(self, message: Message) -> None:
        match message:
            case Publish():
                await self._on_publish(message)
            case Puback():
                self._on_puback(message)
            case Pubrec():
                self.link.pubrec(message.msg_id)
                self.send(Pubrel(message.msg_id))
            case Pubcomp():
                self.link.pubcomp(message.msg_id)
                self._maybe_back_to_sleep()
            case Pubrel():
                self.link.release(message.msg_id)
                self.send(Pubcomp(message.msg_id))
            case Register():
                self._on_register(message)
            case Regack():
                if message.return_code != ReturnCode.ACCEPTED:
                    self.registry.forget(message.topic_id)
            case Subscribe():
                await self._on_subscribe(message)
            case Unsubscribe():
                await self._on_unsubscribe(message)
            case Pingreq():
                self._on_pingreq(message)
            case Disconnect():
                self._on_disconnect(message)
            case WillTopicUpd():
                self._on_will_topic_update(message)
            case WillMsgUpd():
                self._on_will_msg_update(message)
            case _:
                pass  # gateway-to-client messages from a client: nothing to do

    # -- connecting ----------------------------------------------------------------------
    async def _on_connect(self, message: Connect) -> None:
        if self.state in (ASLEEP, AWAKE):
            # Back from sleep: the connection goes on, its flags do not apply (§6.14).
            self.state = ACTIVE
            self.link.resume()
            self.send(Connack(ReturnCode.ACCEPTED))
            return
        if self.state in (ACTIVE, CONNECTING):
            # A new connection from the same peer: this one ends, without its will.
            self.replaced_by_connect = True
            self._close("reconnect", will=False)
            return
        if message.protocol_id != PROTOCOL_ID or not message.client_id:
            self.send(Connack(ReturnCode.NOT_SUPPORTED))
            self._close("bad_connect", will=False)
            return
        self._request = message
        self.client_id = message.client_id
        self.keepalive = message.duration
        self._will = None
        if message.will:
            self.state = WILL_TOPIC
            self.send(WillTopicReq())
        else:
            await self._connect()

    async def _on_will_topic(self, message: WillTopic) -> None:
        if message.topic is None:  # the empty WILLTOPIC: no will after all
            await self._connect()
            return
        if not is_valid_topic_name(message.topic):
            self.send(Connack(ReturnCode.NOT_SUPPORTED))
            self._close("bad_will_topic", will=False)
            return
        self._will_topic = message
        self.state = WILL_MSG
        self.send(WillMsgReq())

    async def _connect(self) -> None:
        request = self._request
        assert request is not None
        self.state = CONNECTING
        outcome = await self.link.connect(ConnectRequest(
            request.client_id, request.clean_session, request.duration, self._will))
        if self.state != CONNECTING:
            return  # closed meanwhile
        if not outcome.accepted:
            self.send(Connack(outcome.return_code))
            self.state = CLOSED
            self.close_reason = outcome.reason or "refused"
            self._on_closed(self)
            return
        self.state = ACTIVE
        self.registry.clear()  # ids are per connection (§6.9); the client registers again
        self.send(Connack(ReturnCode.ACCEPTED))

    # -- publish from the client ---------------------------------------------------------
    async def _on_publish(self, m: Publish) -> None:
        if m.qos == -1 and not self.settings.enable_qos3:
            return
        topic = topic_of(m, self.registry)
        if topic is None:
            # Unknown id: tell the client, so it can register again (§6.5).
            code = (ReturnCode.NOT_SUPPORTED if m.topic_id_type == TopicIdType.RESERVED
                    else ReturnCode.INVALID_TOPIC_ID)
            if m.qos >= 0:
                self.send(Puback(m.topic_id, m.msg_id, code))
            return
        qos = max(m.qos, 0)  # the broker refuses a topic that is not a name (short "a#")
        code = await self.link.publish(topic, m.data, qos, m.retain, m.msg_id)
        if self.state == CLOSED or qos == 0:
            return
        if qos == 2 and code == ReturnCode.ACCEPTED:
            self.send(Pubrec(m.msg_id))
        else:
            self.send(Puback(m.topic_id, m.msg_id, code))

    def _on_puback(self, m: Puback) -> None:
        if m.return_code == ReturnCode.ACCEPTED:
            self.link.puback(m.msg_id)
            self._maybe_back_to_sleep()
        elif m.return_code == ReturnCode.INVALID_TOPIC_ID:
            # The client lost our registration: register again; the message stays
            # in flight and is sent again.
            name = self.registry.name_of(m.topic_id)
            if name is not None and name not in self.settings.predefined.ids:
                self._send_register(m.topic_id, name)

    def _on_register(self, m: Register) -> None:
        name = m.topic_name
        if not is_valid_topic_name(name):
            self.send(Regack(0, m.msg_id, ReturnCode.NOT_SUPPORTED))
            return
        topic_id = self.registry.register(name)
        if topic_id is None:
            self.send(Regack(0, m.msg_id, ReturnCode.CONGESTION))
            return
        self.send(Regack(topic_id, m.msg_id, ReturnCode.ACCEPTED))

    # -- subscriptions -------------------------------------------------------------------
    def _filter_of(self, kind: TopicIdType, name: str, topic_id: int,
                   ) -> tuple[str | None, int, ReturnCode]:
        """(topic filter, topic id for SUBACK, return code) of a SUBSCRIBE topic."""
        if kind == TopicIdType.NORMAL:
            if not is_valid_topic_filter(name):
                return None, 0, ReturnCode.NOT_SUPPORTED
            if is_wildcard(name):
                return name, 0, ReturnCode.ACCEPTED
            own = self.registry.register(name)
            if own is None:
                return None, 0, ReturnCode.CONGESTION
            return name, own, ReturnCode.ACCEPTED
        if kind == TopicIdType.PREDEFINED:
            predefined = self.settings.predefined.names.get(topic_id)
            if predefined is None:
                return None, 0, ReturnCode.INVALID_TOPIC_ID
            return predefined, topic_id, ReturnCode.ACCEPTED
        if kind == TopicIdType.SHORT:
            short = short_name(topic_id)
            if short is None or not is_valid_topic_filter(short):
                return None, 0, ReturnCode.INVALID_TOPIC_ID
            return short, 0, ReturnCode.ACCEPTED
        return None, 0, ReturnCode.NOT_SUPPORTED

    async def _on_subscribe(self, m: Subscribe) -> None:
        topic_filter, topic_id, code = self._filter_of(m.topic_id_type, m.topic_name,
                                                       m.topic_id)
        if topic_filter is None:
            self.send(Suback(0, 0, m.msg_id, code))
            return
        granted = await self.link.subscribe(topic_filter, min(max(m.qos, 0), 2))
        if self.state == CLOSED:
            return
        if granted is None:
            self.send(Suback(0, 0, m.msg_id, ReturnCode.NOT_SUPPORTED))
            return
        self.send(Suback(granted, topic_id, m.msg_id, ReturnCode.ACCEPTED))

    async def _on_unsubscribe(self, m: Unsubscribe) -> None:
        kind = m.topic_id_type
        name: str | None = None
        if kind == TopicIdType.NORMAL:
            name = m.topic_name
        elif kind == TopicIdType.PREDEFINED:
            name = self.settings.predefined.names.get(m.topic_id)
        elif kind == TopicIdType.SHORT:
            name = short_name(m.topic_id)
        if name:
            await self.link.unsubscribe(name)
        if self.state != CLOSED:
            self.send(Unsuback(m.msg_id))

    # -- keepalive, sleep, disconnect ----------------------------------------------------
    def _on_pingreq(self, m: Pingreq) -> None:
        if self.state == ACTIVE:
            self.send(Pingresp())
            return
        if m.client_id is not None and m.client_id != self.client_id:
            return  # another client's wake-up: not ours
        # Awake: send what was buffered, then PINGRESP and asleep again (§6.14).
        self.state = AWAKE
        self.link.resume()
        self._maybe_back_to_sleep()

    def _maybe_back_to_sleep(self) -> None:
        """In the awake state, once every buffered message is delivered and
        acknowledged: PINGRESP, and asleep again."""
        if self.state == AWAKE and self.link.pending() == 0:
            self.state = ASLEEP
            self.link.pause()
            self.send(Pingresp())

    def _on_disconnect(self, m: Disconnect) -> None:
        self.send(Disconnect())
        if not m.duration:  # none, or 0: no sleep
            self._close("normal", will=False)
            return
        self.sleep_duration = m.duration
        if self.state != ASLEEP:
            self.state = ASLEEP
            self.link.pause()

    def _on_will_topic_update(self, m: WillTopicUpd) -> None:
        if m.topic is None:
            self._will = None
        elif not is_valid_topic_name(m.topic):
            self.send(WillTopicResp(ReturnCode.NOT_SUPPORTED))
            return
        else:
            payload = self._will.payload if self._will is not None else b""
            self._will = WillSpec(m.topic, payload, max(m.qos, 0), m.retain)
        self.link.set_will(self._will)
        self.send(WillTopicResp(ReturnCode.ACCEPTED))

    def _on_will_msg_update(self, m: WillMsgUpd) -> None:
        if self._will is None:
            self.send(WillMsgResp(ReturnCode.NOT_SUPPORTED))  # no will topic to go with it
            return
        self._will = WillSpec(self._will.topic, m.payload, self._will.qos, self._will.retain)
        self.link.set_will(self._will)
        self.send(WillMsgResp(ReturnCode.ACCEPTED))

    # -- the clock -----------------------------------------------------------------------
    def deadline(self) -> float | None:
        """When the client is lost if it stays silent; None: never."""
        s = self.settings
        if self.state in (NEW, WILL_TOPIC, WILL_MSG):
            return self.last_heard + s.idle_timeout
        if self.state in (ASLEEP, AWAKE):
            return self.last_heard + self.sleep_duration * s.keepalive_multiplier
        if self.state == ACTIVE and self.keepalive:
            return self.last_heard + self.keepalive * s.keepalive_multiplier
        return None

    def expire(self) -> bool:
        """Close the client if it has been silent past its deadline (its will is
        published, spec §6.3); True if it was closed."""
        deadline = self.deadline()
        if self.state == CLOSED or deadline is None or self.clock() < deadline:
            return False
        if self.state in (NEW, WILL_TOPIC, WILL_MSG):
            self._close("idle_timeout", will=False)
        else:
            self._close("asleep_timeout" if self.state in (ASLEEP, AWAKE)
                        else "keepalive_timeout", will=True)
        return True

    # -- output from the broker ----------------------------------------------------------
    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool, msg_id: int,
                dup: bool = False) -> bool:
        """Send a message from the client's session; False if it cannot be named
        for this client (its topic table is full) and is dropped."""
        address = self.registry.address(topic)
        if address is None:
            topic_id = self.registry.register(topic)
            if topic_id is None:
                return False
            # Register first; the PUBLISH follows at once (the client is expected to
            # take REGISTER before a PUBLISH that uses the id, as datagrams arrive).
            self._send_register(topic_id, topic)
            address = (TopicIdType.NORMAL, topic_id)
        kind, topic_id = address
        self.send(Publish(kind, topic_id, msg_id if qos else 0, payload, qos=qos,
                          retain=retain, dup=dup))
        return True

    def send_pubrel(self, msg_id: int) -> None:
        self.send(Pubrel(msg_id))

    def _send_register(self, topic_id: int, name: str) -> None:
        self._register_id = self._register_id % 0xFFFF + 1
        self.send(Register(topic_id, self._register_id, name))

    def kick(self, reason: str) -> None:
        """The broker ends the connection (kick, takeover, ban): tell the client."""
        if self.state == CLOSED:
            return
        if self.state not in (NEW, WILL_TOPIC, WILL_MSG):
            self.send(Disconnect())
        self.state = CLOSED
        self.close_reason = reason
        self._on_closed(self)

    def shutdown(self, reason: str) -> None:
        """The gateway stops: DISCONNECT to the client, which leaves without its will."""
        if self.state not in (NEW, WILL_TOPIC, WILL_MSG, CLOSED):
            self.send(Disconnect())
        self._close(reason, will=False)

    def _close(self, reason: str, will: bool) -> None:
        if self.state == CLOSED:
            return
        connected = self.state not in (NEW, WILL_TOPIC, WILL_MSG)
        self.state = CLOSED
        self.close_reason = reason
        if connected:
            self.link.close(reason, will)
        self._on_closed(self)
