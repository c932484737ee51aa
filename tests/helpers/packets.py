"""Raw MQTT 3.1 / 3.1.1 packet builders and a blocking socket reader.

Deliberately independent of the `starling` package (in the spirit of
Mosquitto's test/mosq_test.py): a bug in the broker's codec must not be able to
hide itself by being shared with the tests.  Builders return `bytes`; the
reader returns `Packet(type, flags, body)`.

Only what the end-to-end suite needs is here: byte-exact generators for every
MQTT 3.1.1 control packet, a few parsers for what the server sends, and
`RawClient`, a thin blocking socket wrapper with deadline-bounded reads.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

# -- packet types (high nibble of the first byte) -------------------------------
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

TYPE_NAMES = {
    0: "RESERVED0", CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH",
    PUBACK: "PUBACK", PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK", PINGREQ: "PINGREQ", PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT", 15: "RESERVED15",
}

# CONNACK return codes (MQTT 3.1.1 table 3.1)
CONNACK_ACCEPTED = 0
CONNACK_REFUSED_PROTOCOL_VERSION = 1
CONNACK_REFUSED_IDENTIFIER_REJECTED = 2
CONNACK_REFUSED_SERVER_UNAVAILABLE = 3
CONNACK_REFUSED_BAD_USERNAME_PASSWORD = 4
CONNACK_REFUSED_NOT_AUTHORIZED = 5

SUBACK_FAILURE = 0x80

PROTO_NAMES = {3: b"MQIsdp", 4: b"MQTT"}


# -- primitive encoders --------------------------------------------------------------
def encode_remaining_length(length: int) -> bytes:
    """The variable-length "remaining length" of the fixed header (1-4 bytes)."""
    if length < 0 or length > 268_435_455:
        raise ValueError(f"remaining length out of range: {length}")
    out = bytearray()
    while True:
        digit = length % 128
        length //= 128
        if length > 0:
            digit |= 0x80
        out.append(digit)
        if length == 0:
            return bytes(out)


def encode_string(value: str | bytes) -> bytes:
    """A UTF-8 string (or raw bytes, for malformed input) with a 2-byte length prefix."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def _payload_bytes(payload: str | bytes | None) -> bytes:
    if payload is None:
        return b""
    return payload.encode("utf-8") if isinstance(payload, str) else payload


def fixed(first_byte: int, body: bytes) -> bytes:
    """Fixed header + body.  `first_byte` is (type << 4) | flags."""
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


# -- builders --------------------------------------------------------------------------
@dataclass(frozen=True)
class Will:
    topic: str | bytes
    payload: str | bytes = b""
    qos: int = 0
    retain: bool = False


def gen_connect(
    client_id: str | bytes | None,
    clean: bool = True,
    keepalive: int = 60,
    will: Will | None = None,
    username: str | bytes | None = None,
    password: str | bytes | None = None,
    proto_level: int = 4,
    proto_name: bytes | None = None,
    connect_flags: int | None = None,
    header_flags: int = 0,
) -> bytes:
    """CONNECT.  `connect_flags` overrides the computed flags byte verbatim
    (for malformed-input tests); `proto_name` defaults by level."""
    name = proto_name if proto_name is not None else PROTO_NAMES.get(proto_level, b"MQTT")
    flags = 0
    payload = encode_string(client_id if client_id is not None else b"")
    if clean:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | ((will.qos & 0x03) << 3) | (0x20 if will.retain else 0)
        payload += encode_string(will.topic) + encode_string(_payload_bytes(will.payload))
    if username is not None:
        flags |= 0x80
        payload += encode_string(username)
    if password is not None:
        flags |= 0x40
        payload += encode_string(password)
    if connect_flags is not None:
        flags = connect_flags
    body = encode_string(name) + bytes([proto_level, flags]) + struct.pack("!H", keepalive)
    return fixed(0x10 | header_flags, body + payload)


def gen_connack(rc: int = 0, session_present: bool = False) -> bytes:
    return fixed(0x20, bytes([1 if session_present else 0, rc]))


def gen_publish(
    topic: str | bytes,
    qos: int = 0,
    payload: str | bytes | None = None,
    retain: bool = False,
    dup: bool = False,
    mid: int | None = None,
) -> bytes:
    """PUBLISH.  `mid` is required for QoS > 0 (and ignored for QoS 0 unless given,
    which lets a malformed-input test put one there anyway)."""
    first = 0x30 | (0x08 if dup else 0) | ((qos & 0x03) << 1) | (0x01 if retain else 0)
    body = encode_string(topic)
    if qos > 0:
        if mid is None:
            raise ValueError("QoS > 0 PUBLISH needs a packet identifier")
        body += struct.pack("!H", mid)
    elif mid is not None:
        body += struct.pack("!H", mid)
    return fixed(first, body + _payload_bytes(payload))


def _ack(first_byte: int, mid: int) -> bytes:
    return fixed(first_byte, struct.pack("!H", mid))


def gen_puback(mid: int) -> bytes:
    return _ack(0x40, mid)


def gen_pubrec(mid: int) -> bytes:
    return _ack(0x50, mid)


def gen_pubrel(mid: int, dup: bool = False) -> bytes:
    # Reserved flags MUST be 0010 [MQTT-3.6.1-1]; `dup` exists for MQTT 3.1 peers.
    return _ack(0x62 | (0x08 if dup else 0), mid)


def gen_pubcomp(mid: int) -> bytes:
    return _ack(0x70, mid)


def gen_subscribe(mid: int, topic: str | bytes | list[tuple[str | bytes, int]],
                  qos: int = 0) -> bytes:
    """SUBSCRIBE for one filter, or for a list of (filter, qos) pairs."""
    pairs = topic if isinstance(topic, list) else [(topic, qos)]
    body = struct.pack("!H", mid)
    for filt, q in pairs:
        body += encode_string(filt) + bytes([q])
    return fixed(0x82, body)


def gen_suback(mid: int, qos: int | list[int]) -> bytes:
    codes = qos if isinstance(qos, list) else [qos]
    return fixed(0x90, struct.pack("!H", mid) + bytes(codes))


def gen_unsubscribe(mid: int, topic: str | bytes | list[str | bytes]) -> bytes:
    topics = topic if isinstance(topic, list) else [topic]
    body = struct.pack("!H", mid)
    for filt in topics:
        body += encode_string(filt)
    return fixed(0xA2, body)


def gen_unsuback(mid: int) -> bytes:
    return _ack(0xB0, mid)


def gen_pingreq() -> bytes:
    return b"\xc0\x00"


def gen_pingresp() -> bytes:
    return b"\xd0\x00"


def gen_disconnect() -> bytes:
    return b"\xe0\x00"


# -- reading -------------------------------------------------------------------------------
class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection."""


@dataclass(frozen=True)
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def raw(self) -> bytes:
        return fixed((self.type << 4) | self.flags, self.body)

    def __str__(self) -> str:
        return describe(self.raw)


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {n - len(buf)} more byte(s)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            raise TimeoutError(f"timed out waiting for {n - len(buf)} more byte(s)") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            raise ConnectionClosed(str(exc)) from None
        if not chunk:
            raise ConnectionClosed("connection closed by peer")
        buf += chunk
    return bytes(buf)


def read_packet(sock: socket.socket, timeout: float = 5.0) -> Packet:
    """Read exactly one control packet.

    Raises `TimeoutError` if no complete packet arrives in `timeout` seconds and
    `ConnectionClosed` if the peer closes first.  Note that a timeout in the
    middle of a packet leaves the stream desynchronised; callers treat it as fatal.
    """
    deadline = time.monotonic() + timeout
    first = _recv_exact(sock, 1, deadline)[0]
    multiplier, length = 1, 0
    for _ in range(4):
        digit = _recv_exact(sock, 1, deadline)[0]
        length += (digit & 0x7F) * multiplier
        if not digit & 0x80:
            break
        multiplier *= 128
    else:
        raise ValueError("malformed remaining length from server")
    body = _recv_exact(sock, length, deadline) if length else b""
    return Packet(first >> 4, first & 0x0F, body)


# -- parsing what the server sends -------------------------------------------------------
@dataclass(frozen=True)
class Publish:
    topic: bytes
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int | None

    @property
    def topic_str(self) -> str:
        return self.topic.decode("utf-8")


def parse_publish(packet: Packet) -> Publish:
    assert packet.type == PUBLISH, f"expected PUBLISH, got {packet}"
    qos = (packet.flags >> 1) & 0x03
    (tlen,) = struct.unpack_from("!H", packet.body, 0)
    topic = packet.body[2:2 + tlen]
    pos = 2 + tlen
    mid = None
    if qos > 0:
        (mid,) = struct.unpack_from("!H", packet.body, pos)
        pos += 2
    return Publish(topic, packet.body[pos:], qos, bool(packet.flags & 0x01),
                   bool(packet.flags & 0x08), mid)


def parse_mid(packet: Packet) -> int:
    (mid,) = struct.unpack_from("!H", packet.body, 0)
    return int(mid)


def describe(data: bytes) -> str:
    """Human-readable rendering of one packet, for assertion messages."""
    if not data:
        return "<nothing>"
    ptype, flags = data[0] >> 4, data[0] & 0x0F
    # skip the remaining length
    i = 1
    while i < len(data) and data[i] & 0x80:
        i += 1
    body = data[i + 1:]
    name = TYPE_NAMES.get(ptype, str(ptype))
    extra = ""
    try:
        if ptype == PUBLISH:
            p = parse_publish(Packet(ptype, flags, body))
            extra = (f" topic={p.topic!r} qos={p.qos} retain={int(p.retain)} dup={int(p.dup)}"
                     f" mid={p.mid} payload={p.payload[:64]!r}")
        elif ptype == CONNACK and len(body) == 2:
            extra = f" session_present={body[0]} rc={body[1]}"
        elif ptype == SUBACK and len(body) >= 2:
            extra = f" mid={parse_mid(Packet(ptype, flags, body))} codes={list(body[2:])}"
        elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK) and len(body) == 2:
            extra = f" mid={parse_mid(Packet(ptype, flags, body))}"
    except Exception:  # pragma: no cover - only decoration for error messages
        pass
    return f"{name}(flags=0x{flags:x}{extra}) raw={data[:80].hex()}"


# -- a blocking raw client -------------------------------------------------------------------
class RawClient:
    """A TCP connection speaking raw bytes, with deadline-bounded reads.

        with RawClient(host, port) as c:
            c.connect("id")                                   # CONNECT + expect CONNACK 0
            c.send(gen_publish("t", qos=1, payload=b"x", mid=1))
            c.expect_packet(gen_puback(1))
    """

    DEFAULT_TIMEOUT = 5.0

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT,
                 rcvbuf: int | None = None) -> None:
        """`rcvbuf` shrinks SO_RCVBUF before connecting (to play a slow reader)."""
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed_by_peer = False

    # context manager / cleanup
    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # io
    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionClosed(str(exc)) from None

    def try_send(self, data: bytes) -> bool:
        """Send, tolerating a peer that already closed; True if it was written."""
        try:
            self.send(data)
            return True
        except ConnectionClosed:
            return False

    def read(self, timeout: float | None = None) -> Packet:
        try:
            return read_packet(self.sock, self.timeout if timeout is None else timeout)
        except ConnectionClosed:
            self.closed_by_peer = True
            raise

    def expect_packet(self, expected: bytes, timeout: float | None = None,
                      what: str = "") -> Packet:
        """Read one packet and require it to equal `expected` byte for byte."""
        try:
            got = self.read(timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what or describe(expected)}") from None
        except ConnectionClosed:
            raise AssertionError(
                f"connection closed while waiting for {what or describe(expected)}") from None
        if got.raw != expected:
            raise AssertionError(
                f"unexpected packet{' (' + what + ')' if what else ''}:\n"
                f"  expected {describe(expected)}\n  received {describe(got.raw)}")
        return got

    def expect_type(self, ptype: int, timeout: float | None = None) -> Packet:
        try:
            got = self.read(timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {TYPE_NAMES[ptype]}") from None
        except ConnectionClosed:
            raise AssertionError(f"connection closed while waiting for {TYPE_NAMES[ptype]}") from None
        if got.type != ptype:
            raise AssertionError(f"expected {TYPE_NAMES[ptype]}, received {got}")
        return got

    def expect_publish(self, timeout: float | None = None) -> Publish:
        return parse_publish(self.expect_type(PUBLISH, timeout))

    def expect_closed(self, timeout: float = 3.0, allow: tuple[bytes, ...] = ()) -> None:
        """Require the server to close the connection within `timeout`.

        Any packet received first is a failure unless it is byte-equal to one of
        `allow`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection still open after {timeout}s")
            try:
                got = self.read(remaining)
            except ConnectionClosed:
                return
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout}s") from None
            if got.raw not in allow:
                raise AssertionError(f"expected the connection to be closed, received {got}")

    def expect_nothing(self, timeout: float) -> None:
        """Require that no packet arrives (and the connection stays open) for
        `timeout` seconds.  Only for negative checks that no event can bound."""
        try:
            got = self.read(timeout)
        except TimeoutError:
            return
        except ConnectionClosed:
            raise AssertionError("connection closed unexpectedly") from None
        raise AssertionError(f"expected no packet, received {got}")

    # conveniences
    def connect(self, client_id: str | bytes | None, *, expect_rc: int = 0,
                session_present: bool = False, **kwargs: Any) -> Packet:
        """Send CONNECT and require CONNACK(session_present, expect_rc)."""
        self.send(gen_connect(client_id, **kwargs))
        return self.expect_packet(gen_connack(expect_rc, session_present), what="CONNACK")

    def ping(self, timeout: float | None = None) -> None:
        """PINGREQ/PINGRESP round trip: proves the connection is alive [MQTT-3.12.4-1]."""
        self.send(gen_pingreq())
        self.expect_packet(gen_pingresp(), timeout=timeout)

    def subscribe(self, mid: int, topic: str | bytes, qos: int = 0,
                  expect: int | None = None) -> None:
        self.send(gen_subscribe(mid, topic, qos))
        self.expect_packet(gen_suback(mid, qos if expect is None else expect), what="SUBACK")

    def disconnect(self) -> None:
        self.try_send(gen_disconnect())
        self.close()
