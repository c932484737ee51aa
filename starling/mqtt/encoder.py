"""MQTT encoder: packets out as bytes, for a given protocol level.

`encode()` handles every packet type through a table.  PUBLISH also has a
split form, `publish_parts()`, used by the broker's fan-out: the parts before
and after the packet identifier are built once per message variant and shared
by every subscriber, with only the two id bytes differing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ._primitives import encode_binary, encode_string, encode_varint
from .constants import PROTOCOL_NAMES, PacketType
from .packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .properties import Properties, encode_properties

PINGRESP_BYTES = b"\xd0\x00"
PINGREQ_BYTES = b"\xc0\x00"


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def _props(level: int, props: Properties | None) -> bytes:
    return encode_properties(props) if level == 5 else b""


def publish_parts(topic: str, payload: bytes, qos: int, retain: bool, dup: bool,
                  level: int, properties: Properties | None = None) -> tuple[bytes, bytes]:
    """Return (head, tail): the packet is ``head + packet_id(2 bytes) + tail``
    for QoS > 0, and ``head + tail`` for QoS 0."""
    topic_bytes = topic.encode()
    props = encode_properties(properties) if level == 5 else b""
    body_len = 2 + len(topic_bytes) + (2 if qos else 0) + len(props) + len(payload)
    first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    head = (bytes((first,)) + encode_varint(body_len) + len(topic_bytes).to_bytes(2, "big")
            + topic_bytes)
    return head, props + payload


def encode_publish(packet: Publish, level: int) -> bytes:
    head, tail = publish_parts(packet.topic, packet.payload, packet.qos, packet.retain,
                               packet.dup, level, packet.properties)
    if packet.qos:
        assert packet.packet_id is not None, "QoS > 0 PUBLISH needs a packet identifier"
        return head + packet.packet_id.to_bytes(2, "big") + tail
    return head + tail


def _connect(p: Connect, level: int) -> bytes:
    flags = 0x02 if p.clean_start else 0
    will_part = b""
    if p.will is not None:
        flags |= 0x04 | (p.will.qos << 3) | (0x20 if p.will.retain else 0)
        will_part = (_props(level, p.will.properties) + encode_string(p.will.topic)
                     + encode_binary(p.will.payload))
    if p.username is not None:
        flags |= 0x80
    if p.password is not None:
        flags |= 0x40
    body = (encode_string(PROTOCOL_NAMES.get(level, p.protocol_name)) + bytes((level, flags))
            + p.keepalive.to_bytes(2, "big") + _props(level, p.properties)
            + encode_string(p.client_id) + will_part)
    if p.username is not None:
        body += encode_string(p.username)
    if p.password is not None:
        body += encode_binary(p.password)
    return _frame(0x10, body)


def connack_bytes(session_present: bool, code: int) -> bytes:
    """A 3.1 / 3.1.1 CONNACK, as `encode(Connack(...), 4)` writes it, without
    building the packet: every accepted CONNECT sends one."""
    return bytes((0x20, 2, 1 if session_present else 0, code))


def ack_bytes(first: int, packet_id: int, reason_code: int = 0, level: int = 4) -> bytes:
    """PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) without
    properties, as `encode` writes it, without building the packet: one leaves
    for every QoS 1/2 message.  A 5.0 reason code other than 0 adds its byte."""
    if reason_code and level == 5:
        return bytes((first, 3)) + packet_id.to_bytes(2, "big") + bytes((reason_code,))
    return bytes((first, 2)) + packet_id.to_bytes(2, "big")


def _connack(p: Connack, level: int) -> bytes:
    return _frame(0x20, bytes((1 if p.session_present else 0, p.reason_code))
                  + _props(level, p.properties))


def _ack(first: int, p: Puback | Pubrec | Pubrel | Pubcomp, level: int) -> bytes:
    pid = p.packet_id.to_bytes(2, "big")
    if level == 5 and p.properties:
        return _frame(first, pid + bytes((p.reason_code,)) + encode_properties(p.properties))
    return ack_bytes(first, p.packet_id, p.reason_code, level)


def _subscribe(p: Subscribe, level: int) -> bytes:
    body = p.packet_id.to_bytes(2, "big") + _props(level, p.properties)
    for topic_filter, o in p.subscriptions:
        options = o.qos
        if level == 5:
            options |= ((4 if o.no_local else 0) | (8 if o.retain_as_published else 0)
                        | (o.retain_handling << 4))
        body += encode_string(topic_filter) + bytes((options,))
    return _frame(0x82, body)


def _suback(p: Suback, level: int) -> bytes:
    return _frame(0x90, p.packet_id.to_bytes(2, "big") + _props(level, p.properties)
                  + bytes(p.reason_codes))


def _unsubscribe(p: Unsubscribe, level: int) -> bytes:
    body = p.packet_id.to_bytes(2, "big") + _props(level, p.properties)
    body += b"".join(encode_string(f) for f in p.topic_filters)
    return _frame(0xA2, body)


def _unsuback(p: Unsuback, level: int) -> bytes:
    body = p.packet_id.to_bytes(2, "big")
    if level == 5:
        body += encode_properties(p.properties) + bytes(p.reason_codes)
    return _frame(0xB0, body)


def _reason_and_props(first: int, code: int, props: Properties, level: int) -> bytes:
    if level != 5 or (code == 0 and not props):
        return bytes((first, 0))
    if not props:
        return bytes((first, 1, code))
    return _frame(first, bytes((code,)) + encode_properties(props))


def _disconnect(p: Disconnect, level: int) -> bytes:
    return _reason_and_props(0xE0, p.reason_code, p.properties, level)


def _auth(p: Auth, level: int) -> bytes:
    return _frame(0xF0, bytes((p.reason_code,)) + encode_properties(p.properties))


# Each writer takes its own packet class; the table is keyed by that class's
# type, so `Any` here loses nothing that `encode()`'s signature does not keep.
_WRITERS: dict[PacketType, Callable[[Any, int], bytes]] = {
    PacketType.CONNECT: _connect,
    PacketType.CONNACK: _connack,
    PacketType.PUBLISH: encode_publish,
    PacketType.PUBACK: partial(_ack, 0x40),
    PacketType.PUBREC: partial(_ack, 0x50),
    PacketType.PUBREL: partial(_ack, 0x62),
    PacketType.PUBCOMP: partial(_ack, 0x70),
    PacketType.SUBSCRIBE: _subscribe,
    PacketType.SUBACK: _suback,
    PacketType.UNSUBSCRIBE: _unsubscribe,
    PacketType.UNSUBACK: _unsuback,
    PacketType.PINGREQ: lambda p, level: PINGREQ_BYTES,
    PacketType.PINGRESP: lambda p, level: PINGRESP_BYTES,
    PacketType.DISCONNECT: _disconnect,
    PacketType.AUTH: _auth,
}


def encode(packet: Packet, level: int = 4) -> bytes:
    """Encode `packet` as the protocol `level` (3, 4 or 5) frames it."""
    return _WRITERS[packet.type](packet, level)

