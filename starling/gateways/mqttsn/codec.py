"""MQTT-SN 1.2 wire format, sans I/O: one datagram in, one message out, and back.

Every MQTT-SN message is one datagram (spec §5.1).  The length field is one
octet, or ``0x01`` followed by two octets when the message is 256 octets or
longer; it counts itself, and must equal the datagram's size.  Anything that
does not fit the layout of its type raises `MalformedMessage`; a type the
gateway does not handle (forwarder encapsulation, or an unknown one) raises
`UnsupportedMessage`.  The caller drops such datagrams and counts them.
"""

from __future__ import annotations

from collections.abc import Callable

from .messages import (
    Advertise,
    Connack,
    Connect,
    Disconnect,
    GwInfo,
    Message,
    MsgType,
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
    SearchGw,
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
)

#: The largest message the 3-octet length form can describe.
MAX_MESSAGE_SIZE = 0xFFFF

_DUP, _RETAIN, _WILL, _CLEAN = 0x80, 0x10, 0x08, 0x04


class MqttSnError(Exception):
    """Root of what the codec raises for a datagram it cannot take."""


class MalformedMessage(MqttSnError):
    """The bytes do not form a valid message."""


class UnsupportedMessage(MqttSnError):
    """A well-framed message of a type the gateway does not handle."""


# -- flags (spec §5.3.4) ---------------------------------------------------------------
def qos_of(flags: int) -> int:
    """QoS from a flags octet; the wire value 3 is QoS -1."""
    qos = (flags >> 5) & 0x03
    return -1 if qos == 3 else qos


def flags_byte(*, qos: int = 0, retain: bool = False, dup: bool = False, will: bool = False,
               clean: bool = False, topic_id_type: int = 0) -> int:
    return ((_DUP if dup else 0) | ((3 if qos == -1 else qos) << 5)
            | (_RETAIN if retain else 0) | (_WILL if will else 0) | (_CLEAN if clean else 0)
            | (topic_id_type & 0x03))


# -- decoding --------------------------------------------------------------------------
def decode(datagram: bytes) -> Message:
    """The message a datagram carries."""
    size = len(datagram)
    if size < 2:
        raise MalformedMessage(f"datagram of {size} bytes is too short for a message")
    if datagram[0] == 0x01:
        if size < 4:
            raise MalformedMessage("3-octet length form without its length")
        length = int.from_bytes(datagram[1:3], "big")
        start = 3
    else:
        length = datagram[0]
        start = 1
    if length != size:
        raise MalformedMessage(f"length field says {length} bytes, the datagram has {size}")
    kind = datagram[start]
    body = datagram[start + 1:]
    parse = _PARSERS.get(kind)
    if parse is None:
        name = "forwarder encapsulation" if kind == MsgType.ENCAPSULATED else f"type 0x{kind:02x}"
        raise UnsupportedMessage(f"{name} is not supported")
    try:
        return parse(body)
    except (IndexError, ValueError) as exc:  # short bodies, bad UTF-8, bad return codes
        raise MalformedMessage(f"{MsgType(kind).name}: {exc}") from None


def _u16(body: bytes, at: int) -> int:
    if len(body) < at + 2:
        raise ValueError("message too short")
    return int.from_bytes(body[at:at + 2], "big")


def _exactly(body: bytes, size: int) -> bytes:
    if len(body) != size:
        raise ValueError(f"body of {len(body)} bytes, expected {size}")
    return body


def _text(raw: bytes) -> str:
    return raw.decode("utf-8")  # UnicodeDecodeError is a ValueError


def _advertise(b: bytes) -> Message:
    _exactly(b, 3)
    return Advertise(b[0], _u16(b, 1))


def _searchgw(b: bytes) -> Message:
    return SearchGw(_exactly(b, 1)[0])


def _gwinfo(b: bytes) -> Message:
    return GwInfo(b[0], bytes(b[1:]))


def _connect(b: bytes) -> Message:
    flags, protocol_id, duration = b[0], b[1], _u16(b, 2)
    return Connect(_text(b[4:]), duration, clean_session=bool(flags & _CLEAN),
                   will=bool(flags & _WILL), protocol_id=protocol_id)


def _connack(b: bytes) -> Message:
    return Connack(ReturnCode(_exactly(b, 1)[0]))


def _empty(make: Callable[[], Message]) -> Callable[[bytes], Message]:
    def parse(b: bytes) -> Message:
        _exactly(b, 0)
        return make()
    return parse


def _willtopic(b: bytes) -> Message:
    if not b:
        return WillTopic(None)
    return WillTopic(_text(b[1:]), qos_of(b[0]), bool(b[0] & _RETAIN))


def _willtopicupd(b: bytes) -> Message:
    if not b:
        return WillTopicUpd(None)
    return WillTopicUpd(_text(b[1:]), qos_of(b[0]), bool(b[0] & _RETAIN))


def _register(b: bytes) -> Message:
    return Register(_u16(b, 0), _u16(b, 2), _text(b[4:]))


def _regack(b: bytes) -> Message:
    _exactly(b, 5)
    return Regack(_u16(b, 0), _u16(b, 2), ReturnCode(b[4]))


def _publish(b: bytes) -> Message:
    flags = b[0]
    return Publish(TopicIdType(flags & 0x03), _u16(b, 1), _u16(b, 3), bytes(b[5:]),
                   qos=qos_of(flags), retain=bool(flags & _RETAIN), dup=bool(flags & _DUP))


def _puback(b: bytes) -> Message:
    _exactly(b, 5)
    return Puback(_u16(b, 0), _u16(b, 2), ReturnCode(b[4]))


def _msg_id_only(make: Callable[[int], Message]) -> Callable[[bytes], Message]:
    def parse(b: bytes) -> Message:
        return make(_u16(_exactly(b, 2), 0))
    return parse


def _topic_field(kind: TopicIdType, raw: bytes) -> tuple[str, int]:
    """(topic name, topic id) of a SUBSCRIBE / UNSUBSCRIBE topic field."""
    if kind == TopicIdType.NORMAL:
        return _text(raw), 0
    return "", _u16(_exactly(raw, 2), 0)


def _subscribe(b: bytes) -> Message:
    flags = b[0]
    kind = TopicIdType(flags & 0x03)
    name, topic_id = _topic_field(kind, b[3:])
    return Subscribe(kind, _u16(b, 1), name, topic_id, qos=qos_of(flags),
                     dup=bool(flags & _DUP))


def _suback(b: bytes) -> Message:
    _exactly(b, 6)
    return Suback(qos_of(b[0]), _u16(b, 1), _u16(b, 3), ReturnCode(b[5]))


def _unsubscribe(b: bytes) -> Message:
    kind = TopicIdType(b[0] & 0x03)
    name, topic_id = _topic_field(kind, b[3:])
    return Unsubscribe(kind, _u16(b, 1), name, topic_id)


def _pingreq(b: bytes) -> Message:
    return Pingreq(_text(b) if b else None)


def _disconnect(b: bytes) -> Message:
    if not b:
        return Disconnect()
    return Disconnect(_u16(_exactly(b, 2), 0))


def _return_code_only(make: Callable[[ReturnCode], Message]) -> Callable[[bytes], Message]:
    def parse(b: bytes) -> Message:
        return make(ReturnCode(_exactly(b, 1)[0]))
    return parse


_PARSERS: dict[int, Callable[[bytes], Message]] = {
    MsgType.ADVERTISE: _advertise,
    MsgType.SEARCHGW: _searchgw,
    MsgType.GWINFO: _gwinfo,
    MsgType.CONNECT: _connect,
    MsgType.CONNACK: _connack,
    MsgType.WILLTOPICREQ: _empty(WillTopicReq),
    MsgType.WILLTOPIC: _willtopic,
    MsgType.WILLMSGREQ: _empty(WillMsgReq),
    MsgType.WILLMSG: lambda b: WillMsg(bytes(b)),
    MsgType.REGISTER: _register,
    MsgType.REGACK: _regack,
    MsgType.PUBLISH: _publish,
    MsgType.PUBACK: _puback,
    MsgType.PUBCOMP: _msg_id_only(Pubcomp),
    MsgType.PUBREC: _msg_id_only(Pubrec),
    MsgType.PUBREL: _msg_id_only(Pubrel),
    MsgType.SUBSCRIBE: _subscribe,
    MsgType.SUBACK: _suback,
    MsgType.UNSUBSCRIBE: _unsubscribe,
    MsgType.UNSUBACK: _msg_id_only(Unsuback),
    MsgType.PINGREQ: _pingreq,
    MsgType.PINGRESP: _empty(Pingresp),
    MsgType.DISCONNECT: _disconnect,
    MsgType.WILLTOPICUPD: _willtopicupd,
    MsgType.WILLTOPICRESP: _return_code_only(WillTopicResp),
    MsgType.WILLMSGUPD: lambda b: WillMsgUpd(bytes(b)),
    MsgType.WILLMSGRESP: _return_code_only(WillMsgResp),
}


# -- encoding --------------------------------------------------------------------------
def encode(message: Message) -> bytes:
    """The datagram for a message (the 3-octet length form when it needs it)."""
    body = bytes([message.type]) + _body(message)
    size = len(body) + 1
    if size <= 0xFF:
        return bytes([size]) + body
    size += 2
    if size > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {size} bytes does not fit MQTT-SN's length field")
    return b"\x01" + size.to_bytes(2, "big") + body


def _b16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _topic_bytes(kind: TopicIdType, name: str, topic_id: int) -> bytes:
    return name.encode() if kind == TopicIdType.NORMAL else _b16(topic_id)


def _body(m: Message) -> bytes:
    match m:
        case Publish():
            return (bytes([flags_byte(qos=m.qos, retain=m.retain, dup=m.dup,
                                      topic_id_type=m.topic_id_type)])
                    + _b16(m.topic_id) + _b16(m.msg_id) + m.data)
        case Puback() | Regack():
            return _b16(m.topic_id) + _b16(m.msg_id) + bytes([m.return_code])
        case Pubrec() | Pubrel() | Pubcomp() | Unsuback():
            return _b16(m.msg_id)
        case Register():
            return _b16(m.topic_id) + _b16(m.msg_id) + m.topic_name.encode()
        case Suback():
            return (bytes([flags_byte(qos=m.qos)]) + _b16(m.topic_id) + _b16(m.msg_id)
                    + bytes([m.return_code]))
        case Subscribe():
            return (bytes([flags_byte(qos=m.qos, dup=m.dup, topic_id_type=m.topic_id_type)])
                    + _b16(m.msg_id) + _topic_bytes(m.topic_id_type, m.topic_name, m.topic_id))
        case Unsubscribe():
            return (bytes([flags_byte(topic_id_type=m.topic_id_type)]) + _b16(m.msg_id)
                    + _topic_bytes(m.topic_id_type, m.topic_name, m.topic_id))
        case Connect():
            return (bytes([flags_byte(will=m.will, clean=m.clean_session), m.protocol_id])
                    + _b16(m.duration) + m.client_id.encode())
        case Connack() | WillTopicResp() | WillMsgResp():
            return bytes([m.return_code])
        case Advertise():
            return bytes([m.gw_id]) + _b16(m.duration)
        case SearchGw():
            return bytes([m.radius])
        case GwInfo():
            return bytes([m.gw_id]) + m.gw_add
        case WillTopic() | WillTopicUpd():
            if m.topic is None:
                return b""
            return bytes([flags_byte(qos=m.qos, retain=m.retain)]) + m.topic.encode()
        case WillMsg() | WillMsgUpd():
            return m.payload
        case Pingreq():
            return m.client_id.encode() if m.client_id else b""
        case Disconnect():
            return b"" if m.duration is None else _b16(m.duration)
        case WillTopicReq() | WillMsgReq() | Pingresp():
            return b""
    raise TypeError(f"cannot encode {m!r}")
