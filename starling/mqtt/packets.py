"""The fifteen MQTT control packets as value objects.

One model serves MQTT 3.1, 3.1.1 and 5.0: fields that only exist in 5.0
(reason codes on acknowledgements, properties) default to "absent" and the
encoder leaves them out for older levels.  Packets are slotted but not frozen:
PUBLISH is built once per message on the hot path and frozen dataclasses cost
an ``object.__setattr__`` per field.

Each packet's `type` is a property, not a class variable: mypyc (which compiles
this module, starling/compiled.py) takes a ClassVar of a dataclass for a field.
Code that dispatches on the packet type keys its table by the class instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final

from .constants import PacketType
from .properties import Properties

_CONNECT: Final = PacketType.CONNECT
_CONNACK: Final = PacketType.CONNACK
_PUBLISH: Final = PacketType.PUBLISH
_PUBACK: Final = PacketType.PUBACK
_PUBREC: Final = PacketType.PUBREC
_PUBREL: Final = PacketType.PUBREL
_PUBCOMP: Final = PacketType.PUBCOMP
_SUBSCRIBE: Final = PacketType.SUBSCRIBE
_SUBACK: Final = PacketType.SUBACK
_UNSUBSCRIBE: Final = PacketType.UNSUBSCRIBE
_UNSUBACK: Final = PacketType.UNSUBACK
_PINGREQ: Final = PacketType.PINGREQ
_PINGRESP: Final = PacketType.PINGRESP
_DISCONNECT: Final = PacketType.DISCONNECT
_AUTH: Final = PacketType.AUTH


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    client_id: str = ""
    protocol_level: int = 4
    protocol_name: str = "MQTT"
    clean_start: bool = True
    keepalive: int = 60
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _CONNECT


@dataclass(slots=True)
class Connack:
    session_present: bool = False
    reason_code: int = 0  #: v3 return code or v5 reason code, as the level needs
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _CONNACK


class Publish:
    """PUBLISH: built once per message received, so a class of its own rather than a
    dataclass (mypyc compiles a dataclass's generated ``__init__`` as interpreted code:
    eight times the cost of this one).  Equality and repr as a dataclass's."""

    __slots__ = ("dup", "packet_id", "payload", "properties", "qos", "retain", "topic")

    def __init__(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
                 dup: bool = False, packet_id: int | None = None,
                 properties: Properties | None = None) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self.properties: Properties = {} if properties is None else properties

    @property
    def type(self) -> PacketType:
        return _PUBLISH

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Publish):
            return NotImplemented
        return (self.topic == other.topic and self.payload == other.payload
                and self.qos == other.qos and self.retain == other.retain
                and self.dup == other.dup and self.packet_id == other.packet_id
                and self.properties == other.properties)

    def __repr__(self) -> str:
        return (f"Publish(topic={self.topic!r}, payload={self.payload!r}, qos={self.qos!r}, "
                f"retain={self.retain!r}, dup={self.dup!r}, packet_id={self.packet_id!r}, "
                f"properties={self.properties!r})")


class _Ack:
    """PUBACK, PUBREC, PUBREL and PUBCOMP: a packet identifier, and in MQTT 5.0 a
    reason code and properties.  One of them per QoS 1/2 message and hop, so, as
    `Publish`, a plain class (equality and repr as a dataclass's)."""

    __slots__ = ("packet_id", "properties", "reason_code")

    def __init__(self, packet_id: int, reason_code: int = 0,
                 properties: Properties | None = None) -> None:
        self.packet_id = packet_id
        self.reason_code = reason_code
        self.properties: Properties = {} if properties is None else properties

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Ack)
        return (self.packet_id == other.packet_id and self.reason_code == other.reason_code
                and self.properties == other.properties)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(packet_id={self.packet_id!r}, "
                f"reason_code={self.reason_code!r}, properties={self.properties!r})")


class Puback(_Ack):
    __slots__ = ()

    @property
    def type(self) -> PacketType:
        return _PUBACK


class Pubrec(_Ack):
    __slots__ = ()

    @property
    def type(self) -> PacketType:
        return _PUBREC


class Pubrel(_Ack):
    __slots__ = ()

    @property
    def type(self) -> PacketType:
        return _PUBREL


class Pubcomp(_Ack):
    __slots__ = ()

    @property
    def type(self) -> PacketType:
        return _PUBCOMP


_ACK_FIELDS: Final = ("packet_id", "reason_code", "properties")
#: The fields of the plain-class packets, in their constructor's order.
_PLAIN_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    Publish: ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties"),
    Puback: _ACK_FIELDS, Pubrec: _ACK_FIELDS, Pubrel: _ACK_FIELDS, Pubcomp: _ACK_FIELDS,
}


def packet_fields(packet: Any) -> tuple[str, ...]:
    """The field names of any packet, in order: `dataclasses.fields` for those that are
    dataclasses, the constructor's order for the plain classes (PUBLISH and the
    acknowledgements), which `dataclasses.fields` refuses."""
    names = _PLAIN_FIELDS.get(type(packet))
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(packet))
    return names


@dataclass(slots=True, frozen=True)
class SubscriptionOptions:
    """The options byte of one SUBSCRIBE entry (3.x only ever sets `qos`)."""

    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    subscriptions: list[tuple[str, SubscriptionOptions]]
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _SUBSCRIBE


@dataclass(slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int]
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _SUBACK


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _UNSUBSCRIBE


@dataclass(slots=True)
class Unsuback:
    packet_id: int
    reason_codes: list[int] = field(default_factory=list)  #: MQTT 5.0 only
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _UNSUBACK


@dataclass(slots=True)
class Pingreq:

    @property
    def type(self) -> PacketType:
        return _PINGREQ


@dataclass(slots=True)
class Pingresp:

    @property
    def type(self) -> PacketType:
        return _PINGRESP


@dataclass(slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _DISCONNECT


@dataclass(slots=True)
class Auth:
    reason_code: int = 0
    properties: Properties = field(default_factory=dict)

    @property
    def type(self) -> PacketType:
        return _AUTH


Packet = (
    Connect | Connack | Publish | Puback | Pubrec | Pubrel | Pubcomp | Subscribe | Suback
    | Unsubscribe | Unsuback | Pingreq | Pingresp | Disconnect | Auth
)
