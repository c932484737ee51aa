"""MQTT 5.0 properties (§2.2.2): identifiers, wire types, and their codec.

Properties travel as a plain ``dict[PropertyId, value]``.  User Property is the
one property that may repeat, so its value is a list of (name, value) pairs;
Subscription Identifier may repeat in a PUBLISH sent to a client, so it is a
list of ints there.  Any other repeat is a protocol error [MQTT-2.2.2-2].
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from ._primitives import (
    decode_binary,
    decode_string,
    decode_varint,
    encode_binary,
    encode_string,
    encode_varint,
)
from .errors import MalformedPacket, ProtocolError

Properties = dict["PropertyId", Any]
#: The properties of a decoded acknowledgement that carries none: one shared map,
#: never written (acknowledgements are read once and dropped).
NO_PROPERTIES: Properties = {}


class PropertyId(IntEnum):
    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


class _Wire(IntEnum):
    BYTE = 1
    U16 = 2
    U32 = 3
    VARINT = 4
    STRING = 5
    BINARY = 6
    PAIR = 7


_P = PropertyId
WIRE_TYPES: dict[PropertyId, _Wire] = {
    _P.PAYLOAD_FORMAT_INDICATOR: _Wire.BYTE,
    _P.MESSAGE_EXPIRY_INTERVAL: _Wire.U32,
    _P.CONTENT_TYPE: _Wire.STRING,
    _P.RESPONSE_TOPIC: _Wire.STRING,
    _P.CORRELATION_DATA: _Wire.BINARY,
    _P.SUBSCRIPTION_IDENTIFIER: _Wire.VARINT,
    _P.SESSION_EXPIRY_INTERVAL: _Wire.U32,
    _P.ASSIGNED_CLIENT_IDENTIFIER: _Wire.STRING,
    _P.SERVER_KEEP_ALIVE: _Wire.U16,
    _P.AUTHENTICATION_METHOD: _Wire.STRING,
    _P.AUTHENTICATION_DATA: _Wire.BINARY,
    _P.REQUEST_PROBLEM_INFORMATION: _Wire.BYTE,
    _P.WILL_DELAY_INTERVAL: _Wire.U32,
    _P.REQUEST_RESPONSE_INFORMATION: _Wire.BYTE,
    _P.RESPONSE_INFORMATION: _Wire.STRING,
    _P.SERVER_REFERENCE: _Wire.STRING,
    _P.REASON_STRING: _Wire.STRING,
    _P.RECEIVE_MAXIMUM: _Wire.U16,
    _P.TOPIC_ALIAS_MAXIMUM: _Wire.U16,
    _P.TOPIC_ALIAS: _Wire.U16,
    _P.MAXIMUM_QOS: _Wire.BYTE,
    _P.RETAIN_AVAILABLE: _Wire.BYTE,
    _P.USER_PROPERTY: _Wire.PAIR,
    _P.MAXIMUM_PACKET_SIZE: _Wire.U32,
    _P.WILDCARD_SUBSCRIPTION_AVAILABLE: _Wire.BYTE,
    _P.SUBSCRIPTION_IDENTIFIER_AVAILABLE: _Wire.BYTE,
    _P.SHARED_SUBSCRIPTION_AVAILABLE: _Wire.BYTE,
}

#: Properties whose value is a list because they may appear more than once.
REPEATABLE = frozenset({PropertyId.USER_PROPERTY, PropertyId.SUBSCRIPTION_IDENTIFIER})

_ACK = frozenset({_P.REASON_STRING, _P.USER_PROPERTY})

#: Which properties each packet (and the will) may carry (MQTT 5.0 §2.2.2.2 table).
#: Keyed by packet type number; WILL_PROPERTIES for the CONNECT payload's will block.
WILL_PROPERTIES = 0
ALLOWED: dict[int, frozenset[PropertyId]] = {
    1: frozenset({_P.SESSION_EXPIRY_INTERVAL, _P.AUTHENTICATION_METHOD, _P.AUTHENTICATION_DATA,
                  _P.REQUEST_PROBLEM_INFORMATION, _P.REQUEST_RESPONSE_INFORMATION,
                  _P.RECEIVE_MAXIMUM, _P.TOPIC_ALIAS_MAXIMUM, _P.USER_PROPERTY,
                  _P.MAXIMUM_PACKET_SIZE}),
    2: frozenset({_P.SESSION_EXPIRY_INTERVAL, _P.ASSIGNED_CLIENT_IDENTIFIER,
                  _P.SERVER_KEEP_ALIVE, _P.AUTHENTICATION_METHOD, _P.AUTHENTICATION_DATA,
                  _P.RESPONSE_INFORMATION, _P.SERVER_REFERENCE, _P.REASON_STRING,
                  _P.RECEIVE_MAXIMUM, _P.TOPIC_ALIAS_MAXIMUM, _P.MAXIMUM_QOS,
                  _P.RETAIN_AVAILABLE, _P.USER_PROPERTY, _P.MAXIMUM_PACKET_SIZE,
                  _P.WILDCARD_SUBSCRIPTION_AVAILABLE, _P.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                  _P.SHARED_SUBSCRIPTION_AVAILABLE}),
    3: frozenset({_P.PAYLOAD_FORMAT_INDICATOR, _P.MESSAGE_EXPIRY_INTERVAL, _P.CONTENT_TYPE,
                  _P.RESPONSE_TOPIC, _P.CORRELATION_DATA, _P.SUBSCRIPTION_IDENTIFIER,
                  _P.TOPIC_ALIAS, _P.USER_PROPERTY}),
    4: _ACK, 5: _ACK, 6: _ACK, 7: _ACK,
    8: frozenset({_P.SUBSCRIPTION_IDENTIFIER, _P.USER_PROPERTY}),
    9: _ACK,
    10: frozenset({_P.USER_PROPERTY}),
    11: _ACK,
    14: frozenset({_P.SESSION_EXPIRY_INTERVAL, _P.SERVER_REFERENCE, _P.REASON_STRING,
                   _P.USER_PROPERTY}),
    15: frozenset({_P.AUTHENTICATION_METHOD, _P.AUTHENTICATION_DATA, _P.REASON_STRING,
                   _P.USER_PROPERTY}),
    WILL_PROPERTIES: frozenset({_P.PAYLOAD_FORMAT_INDICATOR, _P.MESSAGE_EXPIRY_INTERVAL,
                                _P.CONTENT_TYPE, _P.RESPONSE_TOPIC, _P.CORRELATION_DATA,
                                _P.WILL_DELAY_INTERVAL, _P.USER_PROPERTY}),
}


def decode_properties(data: bytes, pos: int, end: int,
                      packet: int | None = None) -> tuple[Properties, int]:
    """Read a property block starting at `pos`; return it and the position after it.

    With `packet` (a packet type number, or WILL_PROPERTIES), a property that
    packet may not carry makes it malformed (§2.2.2.2).
    """
    allowed = ALLOWED.get(packet) if packet is not None else None
    length, pos = decode_varint(data, pos)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("property length exceeds packet")
    props: Properties = {}
    while pos < stop:
        ident, pos = decode_varint(data, pos)
        try:
            pid = PropertyId(ident)
        except ValueError:
            raise MalformedPacket(f"unknown property identifier 0x{ident:02x}") from None
        if allowed is not None and pid not in allowed:
            raise MalformedPacket(f"property {pid.name} not allowed in this packet")
        wire = WIRE_TYPES[pid]
        value: Any
        if wire is _Wire.BYTE:
            if pos + 1 > stop:
                raise MalformedPacket("truncated property")
            value = data[pos]
            pos += 1
        elif wire is _Wire.U16:
            if pos + 2 > stop:
                raise MalformedPacket("truncated property")
            value = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif wire is _Wire.U32:
            if pos + 4 > stop:
                raise MalformedPacket("truncated property")
            value = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
        elif wire is _Wire.VARINT:
            value, pos = decode_varint(data, pos)
        elif wire is _Wire.STRING:
            value, pos = decode_string(data, pos, stop)
        elif wire is _Wire.BINARY:
            value, pos = decode_binary(data, pos, stop)
        else:
            name, pos = decode_string(data, pos, stop)
            val, pos = decode_string(data, pos, stop)
            value = (name, val)
        if pid in REPEATABLE:
            props.setdefault(pid, []).append(value)
        elif pid in props:
            raise ProtocolError(f"property {pid.name} appears twice")
        else:
            props[pid] = value
    if pos != stop:
        raise MalformedPacket("property overruns its block")
    return props, stop


def _encode_value(wire: _Wire, value: Any) -> bytes:
    if wire is _Wire.BYTE:
        return bytes((value,))
    if wire is _Wire.U16:
        return int(value).to_bytes(2, "big")
    if wire is _Wire.U32:
        return int(value).to_bytes(4, "big")
    if wire is _Wire.VARINT:
        return encode_varint(value)
    if wire is _Wire.STRING:
        return encode_string(value)
    if wire is _Wire.BINARY:
        return encode_binary(value)
    return encode_string(value[0]) + encode_string(value[1])


def encode_properties(props: Properties | None) -> bytes:
    """Encode a property block including its length prefix."""
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    for pid, value in props.items():
        wire = WIRE_TYPES[pid]
        ident = encode_varint(pid)
        if pid in REPEATABLE:
            for item in value:
                parts.append(ident + _encode_value(wire, item))
        else:
            parts.append(ident + _encode_value(wire, value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body
