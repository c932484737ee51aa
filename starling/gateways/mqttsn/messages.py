"""The MQTT-SN 1.2 messages as value objects (spec §5.2-5.4).

Field names follow the specification.  A message that names a topic carries
a `TopicIdType` and either a topic id (normal or predefined) or, for short
topic names, the two characters packed into the id field as the spec does.
QoS is -1..2: the wire value 3 means QoS -1 (publish without a connection).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar


class MsgType(IntEnum):
    ADVERTISE = 0x00
    SEARCHGW = 0x01
    GWINFO = 0x02
    CONNECT = 0x04
    CONNACK = 0x05
    WILLTOPICREQ = 0x06
    WILLTOPIC = 0x07
    WILLMSGREQ = 0x08
    WILLMSG = 0x09
    REGISTER = 0x0A
    REGACK = 0x0B
    PUBLISH = 0x0C
    PUBACK = 0x0D
    PUBCOMP = 0x0E
    PUBREC = 0x0F
    PUBREL = 0x10
    SUBSCRIBE = 0x12
    SUBACK = 0x13
    UNSUBSCRIBE = 0x14
    UNSUBACK = 0x15
    PINGREQ = 0x16
    PINGRESP = 0x17
    DISCONNECT = 0x18
    WILLTOPICUPD = 0x1A
    WILLTOPICRESP = 0x1B
    WILLMSGUPD = 0x1C
    WILLMSGRESP = 0x1D
    ENCAPSULATED = 0xFE


class ReturnCode(IntEnum):
    ACCEPTED = 0x00
    CONGESTION = 0x01
    INVALID_TOPIC_ID = 0x02
    NOT_SUPPORTED = 0x03


class TopicIdType(IntEnum):
    NORMAL = 0
    PREDEFINED = 1
    SHORT = 2
    RESERVED = 3


def short_name(topic_id: int) -> str | None:
    """The two-octet topic name a short topic id packs, None if not UTF-8."""
    try:
        return topic_id.to_bytes(2, "big").decode("utf-8")
    except UnicodeDecodeError:
        return None


def short_id(name: str) -> int | None:
    """The topic id field for a topic name of two UTF-8 octets, None otherwise."""
    raw = name.encode("utf-8", "surrogatepass")
    return int.from_bytes(raw, "big") if len(raw) == 2 else None


@dataclass(frozen=True, slots=True)
class Advertise:
    type: ClassVar[MsgType] = MsgType.ADVERTISE
    gw_id: int
    duration: int


@dataclass(frozen=True, slots=True)
class SearchGw:
    type: ClassVar[MsgType] = MsgType.SEARCHGW
    radius: int


@dataclass(frozen=True, slots=True)
class GwInfo:
    type: ClassVar[MsgType] = MsgType.GWINFO
    gw_id: int
    gw_add: bytes = b""  #: only when a client answers on a gateway's behalf


@dataclass(frozen=True, slots=True)
class Connect:
    type: ClassVar[MsgType] = MsgType.CONNECT
    client_id: str
    duration: int  #: keepalive, seconds
    clean_session: bool = True
    will: bool = False
    protocol_id: int = 0x01


@dataclass(frozen=True, slots=True)
class Connack:
    type: ClassVar[MsgType] = MsgType.CONNACK
    return_code: ReturnCode


@dataclass(frozen=True, slots=True)
class WillTopicReq:
    type: ClassVar[MsgType] = MsgType.WILLTOPICREQ


@dataclass(frozen=True, slots=True)
class WillTopic:
    """`topic` None: the empty WILLTOPIC (no will, spec §5.4.7)."""

    type: ClassVar[MsgType] = MsgType.WILLTOPIC
    topic: str | None
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class WillMsgReq:
    type: ClassVar[MsgType] = MsgType.WILLMSGREQ


@dataclass(frozen=True, slots=True)
class WillMsg:
    type: ClassVar[MsgType] = MsgType.WILLMSG
    payload: bytes


@dataclass(frozen=True, slots=True)
class Register:
    type: ClassVar[MsgType] = MsgType.REGISTER
    topic_id: int  #: 0 from a client; the assigned id from the gateway
    msg_id: int
    topic_name: str


@dataclass(frozen=True, slots=True)
class Regack:
    type: ClassVar[MsgType] = MsgType.REGACK
    topic_id: int
    msg_id: int
    return_code: ReturnCode


@dataclass(frozen=True, slots=True)
class Publish:
    type: ClassVar[MsgType] = MsgType.PUBLISH
    topic_id_type: TopicIdType
    topic_id: int
    msg_id: int
    data: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True, slots=True)
class Puback:
    type: ClassVar[MsgType] = MsgType.PUBACK
    topic_id: int
    msg_id: int
    return_code: ReturnCode


@dataclass(frozen=True, slots=True)
class Pubrec:
    type: ClassVar[MsgType] = MsgType.PUBREC
    msg_id: int


@dataclass(frozen=True, slots=True)
class Pubrel:
    type: ClassVar[MsgType] = MsgType.PUBREL
    msg_id: int


@dataclass(frozen=True, slots=True)
class Pubcomp:
    type: ClassVar[MsgType] = MsgType.PUBCOMP
    msg_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """`topic_name` for type NORMAL (a filter, wildcards allowed), else `topic_id`."""

    type: ClassVar[MsgType] = MsgType.SUBSCRIBE
    topic_id_type: TopicIdType
    msg_id: int
    topic_name: str = ""
    topic_id: int = 0
    qos: int = 0
    dup: bool = False


@dataclass(frozen=True, slots=True)
class Suback:
    type: ClassVar[MsgType] = MsgType.SUBACK
    qos: int
    topic_id: int
    msg_id: int
    return_code: ReturnCode


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    type: ClassVar[MsgType] = MsgType.UNSUBSCRIBE
    topic_id_type: TopicIdType
    msg_id: int
    topic_name: str = ""
    topic_id: int = 0


@dataclass(frozen=True, slots=True)
class Unsuback:
    type: ClassVar[MsgType] = MsgType.UNSUBACK
    msg_id: int


@dataclass(frozen=True, slots=True)
class Pingreq:
    """`client_id` is only sent by a sleeping client waking up (spec §6.14)."""

    type: ClassVar[MsgType] = MsgType.PINGREQ
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class Pingresp:
    type: ClassVar[MsgType] = MsgType.PINGRESP


@dataclass(frozen=True, slots=True)
class Disconnect:
    """`duration` set: the client goes to sleep for that many seconds (§6.14)."""

    type: ClassVar[MsgType] = MsgType.DISCONNECT
    duration: int | None = None


@dataclass(frozen=True, slots=True)
class WillTopicUpd:
    """`topic` None: the empty WILLTOPICUPD, which deletes the will."""

    type: ClassVar[MsgType] = MsgType.WILLTOPICUPD
    topic: str | None
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class WillTopicResp:
    type: ClassVar[MsgType] = MsgType.WILLTOPICRESP
    return_code: ReturnCode


@dataclass(frozen=True, slots=True)
class WillMsgUpd:
    type: ClassVar[MsgType] = MsgType.WILLMSGUPD
    payload: bytes


@dataclass(frozen=True, slots=True)
class WillMsgResp:
    type: ClassVar[MsgType] = MsgType.WILLMSGRESP
    return_code: ReturnCode


Message = (Advertise | SearchGw | GwInfo | Connect | Connack | WillTopicReq | WillTopic
           | WillMsgReq | WillMsg | Register | Regack | Publish | Puback | Pubrec | Pubrel
           | Pubcomp | Subscribe | Suback | Unsubscribe | Unsuback | Pingreq | Pingresp
           | Disconnect | WillTopicUpd | WillTopicResp | WillMsgUpd | WillMsgResp)
