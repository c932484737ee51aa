"""Raw MQTT 5.0 packet builders and parsers, written from the OASIS standard.

Independent of the `starling` package (like `packets.py`): the broker's codec
must not be able to hide a bug by sharing it with the tests.  Section numbers
refer to MQTT Version 5.0, OASIS Standard, 7 March 2019.

Properties (§2.2.2) are given to builders as a sequence of `(identifier, value)`
pairs, encoded in that order, so a test can put a property twice or where it
is not allowed.  Parsers return `Props`, which keeps every pair in wire order.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .packets import (
    CONNACK,
    DISCONNECT,
    PUBLISH,
    SUBACK,
    UNSUBACK,
    ConnectionClosed,
    Packet,
    RawClient,
    encode_remaining_length,
    encode_string,
    fixed,
)

# -- property identifiers (§2.2.2.2, table 2-4) ------------------------------------
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

_BYTE, _U16, _U32, _VBI, _UTF8, _BIN, _PAIR = "byte", "u16", "u32", "vbi", "utf8", "bin", "pair"

#: Data type of each property (§2.2.2.2).
PROPERTY_TYPES: dict[int, str] = {
    PAYLOAD_FORMAT_INDICATOR: _BYTE,
    MESSAGE_EXPIRY_INTERVAL: _U32,
    CONTENT_TYPE: _UTF8,
    RESPONSE_TOPIC: _UTF8,
    CORRELATION_DATA: _BIN,
    SUBSCRIPTION_IDENTIFIER: _VBI,
    SESSION_EXPIRY_INTERVAL: _U32,
    ASSIGNED_CLIENT_IDENTIFIER: _UTF8,
    SERVER_KEEP_ALIVE: _U16,
    AUTHENTICATION_METHOD: _UTF8,
    AUTHENTICATION_DATA: _BIN,
    REQUEST_PROBLEM_INFORMATION: _BYTE,
    WILL_DELAY_INTERVAL: _U32,
    REQUEST_RESPONSE_INFORMATION: _BYTE,
    RESPONSE_INFORMATION: _UTF8,
    SERVER_REFERENCE: _UTF8,
    REASON_STRING: _UTF8,
    RECEIVE_MAXIMUM: _U16,
    TOPIC_ALIAS_MAXIMUM: _U16,
    TOPIC_ALIAS: _U16,
    MAXIMUM_QOS: _BYTE,
    RETAIN_AVAILABLE: _BYTE,
    USER_PROPERTY: _PAIR,
    MAXIMUM_PACKET_SIZE: _U32,
    WILDCARD_SUBSCRIPTION_AVAILABLE: _BYTE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE: _BYTE,
    SHARED_SUBSCRIPTION_AVAILABLE: _BYTE,
}

# -- reason codes used by the tests (§2.4, table 2-6) -------------------------------
SUCCESS = 0x00
DISCONNECT_WITH_WILL = 0x04
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_AUTHENTICATION_METHOD = 0x8C
SESSION_TAKEN_OVER = 0x8E
KEEP_ALIVE_TIMEOUT = 0x8D
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
PACKET_IDENTIFIER_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
RETAIN_NOT_SUPPORTED = 0x9A
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

AUTH = 15  #: packet type (§3.15)

PropList = Sequence[tuple[int, Any]]


# -- primitives (§1.5) ----------------------------------------------------------------
def encode_vbi(value: int) -> bytes:
    """Variable Byte Integer (§1.5.5): the same algorithm as the remaining length."""
    return encode_remaining_length(value)


def decode_vbi(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("variable byte integer longer than 4 bytes")


def encode_binary(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _encode_value(kind: str, value: Any) -> bytes:
    if kind == _BYTE:
        return bytes([value])
    if kind == _U16:
        return struct.pack("!H", value)
    if kind == _U32:
        return struct.pack("!I", value)
    if kind == _VBI:
        return encode_vbi(value)
    if kind == _UTF8:
        return encode_string(value)
    if kind == _BIN:
        return encode_binary(value)
    name, val = value
    return encode_string(name) + encode_string(val)


def encode_props(props: PropList | None = None) -> bytes:
    """A property block: its length (VBI) then each property (§2.2.2)."""
    body = b"".join(encode_vbi(pid) + _encode_value(PROPERTY_TYPES[pid], value)
                    for pid, value in (props or ()))
    return encode_vbi(len(body)) + body


@dataclass
class Props:
    """Decoded properties, every pair in wire order."""

    pairs: list[tuple[int, Any]] = field(default_factory=list)

    def get(self, pid: int, default: Any = None) -> Any:
        for key, value in self.pairs:
            if key == pid:
                return value
        return default

    def all(self, pid: int) -> list[Any]:
        return [value for key, value in self.pairs if key == pid]

    def __contains__(self, pid: object) -> bool:
        return any(key == pid for key, _ in self.pairs)

    def ids(self) -> list[int]:
        return [key for key, _ in self.pairs]


def decode_props(data: bytes, pos: int) -> tuple[Props, int]:
    length, pos = decode_vbi(data, pos)
    stop = pos + length
    out = Props()
    while pos < stop:
        pid, pos = decode_vbi(data, pos)
        kind = PROPERTY_TYPES[pid]
        value: Any
        if kind == _BYTE:
            value, pos = data[pos], pos + 1
        elif kind == _U16:
            (value,), pos = struct.unpack_from("!H", data, pos), pos + 2
        elif kind == _U32:
            (value,), pos = struct.unpack_from("!I", data, pos), pos + 4
        elif kind == _VBI:
            value, pos = decode_vbi(data, pos)
        elif kind in (_UTF8, _BIN):
            (n,) = struct.unpack_from("!H", data, pos)
            raw = data[pos + 2:pos + 2 + n]
            value, pos = (raw.decode("utf-8") if kind == _UTF8 else raw), pos + 2 + n
        else:
            (n,) = struct.unpack_from("!H", data, pos)
            name = data[pos + 2:pos + 2 + n].decode("utf-8")
            pos += 2 + n
            (n,) = struct.unpack_from("!H", data, pos)
            val = data[pos + 2:pos + 2 + n].decode("utf-8")
            pos += 2 + n
            value = (name, val)
        out.pairs.append((pid, value))
    if pos != stop:
        raise ValueError("property block overrun")
    return out, stop


# -- builders ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Will5:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    props: PropList = ()


def gen_connect5(client_id: str, clean_start: bool = True, keepalive: int = 60,
                 props: PropList = (), will: Will5 | None = None,
                 username: str | None = None, password: bytes | None = None) -> bytes:
    """CONNECT (§3.1): protocol name "MQTT", level 5, flags, keepalive, properties;
    payload: client id, [will properties, will topic, will payload], [user], [password]."""
    flags = 0x02 if clean_start else 0
    payload = encode_string(client_id)
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += (encode_props(will.props) + encode_string(will.topic)
                    + encode_binary(will.payload))
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None:
        flags |= 0x40
        payload += encode_binary(password)
    body = (encode_string("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive)
            + encode_props(props))
    return fixed(0x10, body + payload)


def gen_publish5(topic: str, qos: int = 0, payload: bytes = b"", retain: bool = False,
                 dup: bool = False, mid: int | None = None, props: PropList = ()) -> bytes:
    """PUBLISH (§3.3): topic, [packet id], properties, payload."""
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = encode_string(topic)
    if qos:
        assert mid is not None, "QoS > 0 needs a packet identifier"
        body += struct.pack("!H", mid)
    return fixed(first, body + encode_props(props) + payload)


def _ack5(first: int, mid: int, rc: int, props: PropList) -> bytes:
    """PUBACK/PUBREC/PUBREL/PUBCOMP (§3.4-3.7): the reason code and properties may
    be left out when the code is 0 and there are no properties."""
    body = struct.pack("!H", mid)
    if rc or props:
        body += bytes([rc])
    if props:
        body += encode_props(props)
    return fixed(first, body)


def gen_puback5(mid: int, rc: int = 0, props: PropList = ()) -> bytes:
    return _ack5(0x40, mid, rc, props)


def gen_pubrec5(mid: int, rc: int = 0, props: PropList = ()) -> bytes:
    return _ack5(0x50, mid, rc, props)


def gen_pubrel5(mid: int, rc: int = 0, props: PropList = ()) -> bytes:
    return _ack5(0x62, mid, rc, props)


def gen_pubcomp5(mid: int, rc: int = 0, props: PropList = ()) -> bytes:
    return _ack5(0x70, mid, rc, props)


def sub_options(qos: int = 0, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> int:
    """The Subscription Options byte (§3.8.3.1)."""
    return (qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0)
            | (retain_handling << 4))


def gen_subscribe5(mid: int, entries: Iterable[tuple[str, int]], props: PropList = ()) -> bytes:
    """SUBSCRIBE (§3.8): packet id, properties, then (filter, options byte) pairs."""
    body = struct.pack("!H", mid) + encode_props(props)
    for topic_filter, options in entries:
        body += encode_string(topic_filter) + bytes([options])
    return fixed(0x82, body)


def gen_unsubscribe5(mid: int, filters: Iterable[str], props: PropList = ()) -> bytes:
    body = struct.pack("!H", mid) + encode_props(props)
    for topic_filter in filters:
        body += encode_string(topic_filter)
    return fixed(0xA2, body)


def gen_disconnect5(rc: int = 0, props: PropList = ()) -> bytes:
    """DISCONNECT (§3.14): remaining length 0 means reason code 0x00."""
    if not rc and not props:
        return b"\xe0\x00"
    return fixed(0xE0, bytes([rc]) + encode_props(props))


def gen_auth5(rc: int = 0, props: PropList = ()) -> bytes:
    return fixed(0xF0, bytes([rc]) + encode_props(props))


# -- parsers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Connack5:
    session_present: bool
    rc: int
    props: Props


@dataclass(frozen=True)
class Publish5:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int | None
    props: Props
    size: int  #: the whole packet's size in bytes


@dataclass(frozen=True)
class Ack5:
    type: int
    mid: int
    rc: int
    props: Props


@dataclass(frozen=True)
class Disconnect5:
    rc: int
    props: Props


def parse_connack5(packet: Packet) -> Connack5:
    assert packet.type == CONNACK, f"expected CONNACK, got {packet}"
    body = packet.body
    assert body[0] & 0xFE == 0, f"CONNACK reserved flags set: {packet}"
    props, end = decode_props(body, 2) if len(body) > 2 else (Props(), 2)
    assert end == len(body), f"bytes after CONNACK properties: {packet}"
    return Connack5(bool(body[0] & 1), body[1], props)


def parse_publish5(packet: Packet) -> Publish5:
    assert packet.type == PUBLISH, f"expected PUBLISH, got {packet}"
    body = packet.body
    qos = (packet.flags >> 1) & 3
    (n,) = struct.unpack_from("!H", body, 0)
    topic = body[2:2 + n].decode("utf-8")
    pos = 2 + n
    mid = None
    if qos:
        (mid,) = struct.unpack_from("!H", body, pos)
        pos += 2
    props, pos = decode_props(body, pos)
    return Publish5(topic, body[pos:], qos, bool(packet.flags & 1), bool(packet.flags & 8),
                    mid, props, len(packet.raw))


def parse_ack5(packet: Packet) -> Ack5:
    """PUBACK, PUBREC, PUBREL, PUBCOMP (reason code 0 when left out)."""
    body = packet.body
    (mid,) = struct.unpack_from("!H", body, 0)
    rc = body[2] if len(body) > 2 else 0
    props = decode_props(body, 3)[0] if len(body) > 3 else Props()
    return Ack5(packet.type, mid, rc, props)


def parse_suback5(packet: Packet) -> tuple[int, Props, list[int]]:
    """SUBACK / UNSUBACK: packet id, properties, reason codes."""
    assert packet.type in (SUBACK, UNSUBACK), f"expected SUBACK/UNSUBACK, got {packet}"
    (mid,) = struct.unpack_from("!H", packet.body, 0)
    props, pos = decode_props(packet.body, 2)
    return mid, props, list(packet.body[pos:])


def parse_disconnect5(packet: Packet) -> Disconnect5:
    assert packet.type == DISCONNECT, f"expected DISCONNECT, got {packet}"
    body = packet.body
    if not body:
        return Disconnect5(0, Props())
    props = decode_props(body, 1)[0] if len(body) > 1 else Props()
    return Disconnect5(body[0], props)


# -- a raw MQTT 5.0 client ---------------------------------------------------------------------
class RawClient5(RawClient):
    """RawClient speaking MQTT 5.0 framing (the packets are built by hand)."""

    def connect5(self, client_id: str, *, expect_rc: int | None = 0,
                 **kwargs: Any) -> Connack5:
        """Send CONNECT; return the parsed CONNACK (checking its code unless None)."""
        self.send(gen_connect5(client_id, **kwargs))
        connack = parse_connack5(self.expect_type(CONNACK))
        if expect_rc is not None:
            assert connack.rc == expect_rc, f"CONNACK reason 0x{connack.rc:02x}: {connack}"
        return connack

    def subscribe5(self, mid: int, entries: Iterable[tuple[str, int]],
                   props: PropList = ()) -> list[int]:
        """SUBSCRIBE and return SUBACK's reason codes."""
        self.send(gen_subscribe5(mid, entries, props))
        got_mid, _, codes = parse_suback5(self.expect_type(SUBACK))
        assert got_mid == mid
        return codes

    def expect_publish5(self, timeout: float | None = None) -> Publish5:
        return parse_publish5(self.expect_type(PUBLISH, timeout))

    def expect_ack5(self, ptype: int, timeout: float | None = None) -> Ack5:
        return parse_ack5(self.expect_type(ptype, timeout))

    def expect_disconnect(self, rc: int, timeout: float = 5.0) -> Disconnect5:
        """Require a server DISCONNECT with reason `rc`, then the connection closed.
        PUBLISHes that arrive first are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                got = self.read(max(remaining, 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"no DISCONNECT 0x{rc:02x} within {timeout}s") from None
            except ConnectionClosed:
                raise AssertionError(
                    f"connection closed without DISCONNECT 0x{rc:02x}") from None
            if got.type == PUBLISH:
                continue
            if got.type != DISCONNECT:
                raise AssertionError(f"expected DISCONNECT 0x{rc:02x}, received {got}")
            disconnect = parse_disconnect5(got)
            assert disconnect.rc == rc, (
                f"DISCONNECT reason 0x{disconnect.rc:02x} "
                f"({disconnect.props.get(REASON_STRING)!r}), expected 0x{rc:02x}")
            self.expect_closed(timeout=max(deadline - time.monotonic(), 1.0))
            return disconnect

