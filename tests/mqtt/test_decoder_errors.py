"""Malformed and forbidden input: the exact error class and reason code for each.

The vectors are hex written out by hand from the specification (in the style
of Mosquitto's test/broker/data/*.json conformance vectors), never produced by
our encoder, and named after the MQTT 3.1.1 (or 5.0) normative statement they
violate.  Reason codes: 0x81 Malformed Packet, 0x82 Protocol Error,
0x84 Unsupported Protocol Version, 0x95 Packet Too Large.
"""

from __future__ import annotations

import pytest

from starling.mqtt import (
    Connect,
    Decoder,
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    Pingreq,
    PropertyId,
    ProtocolError,
    Publish,
    ReasonCode,
    Subscribe,
    SubscriptionOptions,
    TopicAliasInvalid,
    UnsupportedProtocolVersion,
)

MALFORMED = (MalformedPacket, 0x81)
PROTOCOL = (ProtocolError, 0x82)
VERSION = (UnsupportedProtocolVersion, 0x84)
TOO_LARGE = (PacketTooLarge, 0x95)

#: A valid 3.1.1 CONNECT: clean session, keepalive 60, empty client id.
CONNECT_V4 = "10 0c 0004 4d515454 04 02 003c 0000"


def b(hex_bytes: str) -> bytes:
    return bytes.fromhex(hex_bytes.replace(" ", ""))


def assert_error(exc: BaseException, expected: tuple[type[MQTTError], int]) -> None:
    cls, code = expected
    assert type(exc) is cls, f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, MQTTError)
    assert exc.reason_code == code
    assert isinstance(exc.reason_code, ReasonCode)


def decode_error(data: bytes, level: int = 4, max_packet_size: int | None = None) -> MQTTError:
    """Feed `data` in one read; it must raise, and the decoder must keep the error."""
    decoder = (Decoder(protocol_level=level) if max_packet_size is None
               else Decoder(max_packet_size, protocol_level=level))
    with pytest.raises(MQTTError) as info:
        decoder.feed(data)
    assert decoder.pending_error is info.value
    return info.value


# (conformance id / description, protocol level before the read, hex, expected)
VECTORS: list[tuple[str, int, str, tuple[type[MQTTError], int]]] = [
    # -- fixed header -------------------------------------------------------------------
    ("§2.2.3 remaining length in 5 bytes (PUBLISH)", 4, "30 ff ff ff ff 01", MALFORMED),
    ("§2.2.3 remaining length in 5 bytes (PINGREQ)", 4, "c0 80 80 80 80 00", MALFORMED),
    ("§2.2.3 4 continuation bytes, 5th not yet here", 4, "30 80 80 80 80", MALFORMED),
    ("§2.2.1 packet type 0 is reserved", 4, "00 00", MALFORMED),
    ("§2.2.1 packet type 0 with a body", 0, "00 02 0001", MALFORMED),
    ("§2.2.1 packet type 15 is reserved before 5.0", 4, "f0 00", MALFORMED),
    ("§2.2.1 AUTH before any CONNECT", 0, "f0 02 00 00", MALFORMED),
    # -- UTF-8 strings ------------------------------------------------------------------
    ("[MQTT-1.5.3-1] invalid UTF-8 (0xff) in PUBLISH topic", 4, "30 05 0003 61ff62", MALFORMED),
    ("[MQTT-1.5.3-1] UTF-16 surrogate U+D800 in topic", 4, "30 05 0003 eda080", MALFORMED),
    ("[MQTT-1.5.3-1] overlong encoding of '/' in topic", 4, "30 04 0002 c0af", MALFORMED),
    ("[MQTT-1.5.3-1] truncated multi-byte sequence", 4, "30 04 0002 61e2", MALFORMED),
    ("[MQTT-1.5.3-1] invalid UTF-8 in SUBSCRIBE filter", 4, "82 06 0001 0001 ff 00", MALFORMED),
    ("[MQTT-1.5.3-1] invalid UTF-8 in CONNECT user name", 0,
     "10 0f 0004 4d515454 04 82 003c 0000 0001 ff", MALFORMED),
    ("[MQTT-1.5.3-2] U+0000 in PUBLISH topic", 4, "30 05 0003 610062", MALFORMED),
    ("[MQTT-1.5.3-2] U+0000 in CONNECT client id", 0,
     "10 0f 0004 4d515454 04 02 003c 0003 610062", MALFORMED),
    ("[MQTT-1.5.3-2] U+0000 in UNSUBSCRIBE filter", 4, "a2 05 0001 0001 00", MALFORMED),
    ("§1.5.3 string length runs past the packet", 4, "30 03 0005 61", MALFORMED),
    # -- PUBLISH ------------------------------------------------------------------------
    ("[MQTT-3.3.2-2] '#' in PUBLISH topic", 4, "30 05 0003 612f23", MALFORMED),
    ("[MQTT-3.3.2-2] '+' in PUBLISH topic", 4, "30 05 0003 612f2b", MALFORMED),
    ("[MQTT-3.3.2-2] '+' as the whole PUBLISH topic", 4, "30 03 0001 2b", MALFORMED),
    ("[MQTT-4.7.3-1] empty topic in 3.1.1 PUBLISH", 4, "30 02 0000", MALFORMED),
    ("[MQTT-4.7.3-1] empty topic in 3.1.1 PUBLISH with payload", 4, "30 04 0000 6869", MALFORMED),
    ("[MQTT-4.7.3-1] empty topic in 3.1 PUBLISH", 3, "32 04 0000 0001", MALFORMED),
    ("[MQTT-2.3.1-1] packet id 0 in QoS 1 PUBLISH", 4, "32 05 0001 61 0000", MALFORMED),
    ("[MQTT-2.3.1-1] packet id 0 in QoS 2 PUBLISH", 4, "34 05 0001 61 0000", MALFORMED),
    ("[MQTT-2.3.1-1] QoS 1 PUBLISH too short for a packet id", 4, "32 04 0001 61 00", MALFORMED),
    ("[MQTT-3.3.1-4] PUBLISH with QoS 3", 4, "36 05 0001 61 0001", MALFORMED),
    ("[MQTT-3.3.1-4] PUBLISH with QoS 3 and DUP", 4, "3e 05 0001 61 0001", MALFORMED),
    ("[MQTT-3.3.1-2] DUP set on QoS 0 PUBLISH", 4, "38 03 0001 61", MALFORMED),
    ("[MQTT-3.3.1-2] DUP set on QoS 0 retained PUBLISH", 4, "39 03 0001 61", MALFORMED),
    # -- CONNECT ------------------------------------------------------------------------
    ("[MQTT-3.1.2-3] CONNECT reserved flag set", 0,
     "10 0c 0004 4d515454 04 03 003c 0000", MALFORMED),
    ("[MQTT-3.1.2-13] will QoS 1 without will flag", 0,
     "10 0c 0004 4d515454 04 0a 003c 0000", MALFORMED),
    ("[MQTT-3.1.2-13] will QoS 2 without will flag", 0,
     "10 0c 0004 4d515454 04 12 003c 0000", MALFORMED),
    ("[MQTT-3.1.2-15] will retain without will flag", 0,
     "10 0c 0004 4d515454 04 22 003c 0000", MALFORMED),
    ("[MQTT-3.1.2-14] will QoS 3", 0,
     "10 12 0004 4d515454 04 1e 003c 0000 0001 77 0001 6d", MALFORMED),
    ("[MQTT-3.1.2-9] will flag without will topic and message", 0,
     "10 0c 0004 4d515454 04 06 003c 0000", MALFORMED),
    ("[MQTT-4.7.1-1] wildcard in will topic", 0,
     "10 12 0004 4d515454 04 06 003c 0000 0001 23 0001 6d", MALFORMED),
    ("[MQTT-3.1.2-22] password without user name (3.1.1)", 0,
     "10 0f 0004 4d515454 04 42 003c 0000 0001 70", MALFORMED),
    ("[MQTT-3.1.2-22] password without user name (3.1)", 0,
     "10 11 0006 4d5149736470 03 42 003c 0000 0001 70", MALFORMED),
    ("[MQTT-3.1.2-19] user name flag without user name", 0,
     "10 0c 0004 4d515454 04 82 003c 0000", MALFORMED),
    ("[MQTT-3.1.2-18] user name present without its flag", 0,
     "10 0f 0004 4d515454 04 02 003c 0000 0001 75", MALFORMED),
    ("[MQTT-3.1.2-1] unknown protocol name 'MQTX'", 0,
     "10 0c 0004 4d515458 04 02 003c 0000", PROTOCOL),
    ("[MQTT-3.1.2-1] protocol name is case sensitive ('mqtt')", 0,
     "10 0c 0004 6d717474 04 02 003c 0000", PROTOCOL),
    ("[MQTT-3.1.2-1] protocol name 'HTTP'", 0,
     "10 0c 0004 48545450 04 02 003c 0000", PROTOCOL),
    ("[MQTT-3.1.2-2] protocol level 6", 0,
     "10 0c 0004 4d515454 06 02 003c 0000", VERSION),
    ("[MQTT-3.1.2-2] protocol level 0", 0,
     "10 0c 0004 4d515454 00 02 003c 0000", VERSION),
    ("[MQTT-3.1.2-2] level 3 with name 'MQTT'", 0,
     "10 0c 0004 4d515454 03 02 003c 0000", VERSION),
    ("[MQTT-3.1.2-2] level 4 with name 'MQIsdp'", 0,
     "10 0e 0006 4d5149736470 04 02 003c 0000", VERSION),
    ("[MQTT-3.1.2-2] level 255", 0,
     "10 0c 0004 4d515454 ff 02 003c 0000", VERSION),
    ("[MQTT-2.2.2-2] 3.1.1 CONNECT with fixed-header flags 0b0010", 0,
     "12 0c 0004 4d515454 04 02 003c 0000", MALFORMED),
    ("[MQTT-2.2.2-2] 5.0 CONNECT with fixed-header flags 0b1000", 0,
     "18 0d 0004 4d515454 05 02 003c 00 0000", MALFORMED),
    ("§3.1 CONNECT ending after the protocol name", 0, "10 06 0004 4d515454", MALFORMED),
    ("§3.1 CONNECT ending after the protocol level", 0,
     "10 08 0004 4d515454 04 02", MALFORMED),
    # -- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------
    ("[MQTT-3.8.3-3] SUBSCRIBE with no topic filters", 4, "82 02 0001", PROTOCOL),
    ("[MQTT-3.8.3-4] SUBSCRIBE options bit 2 set (3.1.1)", 4, "82 06 0001 0001 61 04", MALFORMED),
    ("[MQTT-3.8.3-4] SUBSCRIBE options bit 7 set (3.1.1)", 4, "82 06 0001 0001 61 80", MALFORMED),
    ("[MQTT-3.8.3-4] SUBSCRIBE options 0xfd (3.1.1)", 4, "82 06 0001 0001 61 fd", MALFORMED),
    ("[MQTT-3.8.3-4] SUBSCRIBE requested QoS 3 (3.1.1)", 4, "82 06 0001 0001 61 03", MALFORMED),
    ("[MQTT-3.8.3-4] reserved bits in the 2nd entry only", 4,
     "82 0a 0001 0001 61 01 0001 62 10", MALFORMED),
    ("§3.8.3 SUBSCRIBE filter without options byte", 4, "82 05 0001 0001 61", MALFORMED),
    ("[MQTT-2.3.1-1] SUBSCRIBE with packet id 0", 4, "82 06 0000 0001 61 00", MALFORMED),
    ("[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filters", 4, "a2 02 0001", PROTOCOL),
    ("[MQTT-2.3.1-1] UNSUBSCRIBE with packet id 0", 4, "a2 05 0000 0001 61", MALFORMED),
    ("[MQTT-4.7.3-1] zero-length filter in SUBSCRIBE", 4, "82 05 0001 0000 00", PROTOCOL),
    ("[MQTT-4.7.3-1] zero-length filter after a good one", 4,
     "82 09 0001 0001 61 00 0000 00", PROTOCOL),
    ("[MQTT-4.7.3-1] zero-length filter in UNSUBSCRIBE", 4, "a2 04 0001 0000", PROTOCOL),
    ("[MQTT-4.8.2-2] '$share/g/' (no filter) in SUBSCRIBE", 4,
     "82 0e 0001 0009 2473686172652f672f 00", PROTOCOL),
    ("[MQTT-4.8.2-2] '$share/g' (no '/' and filter) in SUBSCRIBE", 4,
     "82 0d 0001 0008 2473686172652f67 00", PROTOCOL),
    ("[MQTT-4.8.2-1] '$share//a' (no share name) in SUBSCRIBE", 4,
     "82 0e 0001 0009 2473686172652f2f61 00", PROTOCOL),
    ("[MQTT-4.8.2-2] '$share/g' in UNSUBSCRIBE", 4,
     "a2 0c 0001 0008 2473686172652f67", PROTOCOL),
    ("[MQTT-4.7.3-1] '$queue/' (EMQ X's form, no filter) in SUBSCRIBE", 4,
     "82 0c 0001 0007 2471756575652f 00", PROTOCOL),
    # -- control characters (MQTT 5.0 §1.5.4: a receiver MAY treat them as malformed) --
    ("§1.5.4 U+0009 (tab) in PUBLISH topic", 4, "30 05 0003 610962", MALFORMED),
    ("§1.5.4 U+001F in PUBLISH topic", 4, "30 03 0001 1f", MALFORMED),
    ("§1.5.4 U+007F in PUBLISH topic", 4, "30 05 0003 617f62", MALFORMED),
    ("§1.5.4 U+0085 in SUBSCRIBE filter", 4, "82 07 0001 0002 c285 00", MALFORMED),
    ("§1.5.4 U+009F in UNSUBSCRIBE filter", 4, "a2 07 0001 0003 61c29f", MALFORMED),
    ("§1.5.4 U+000A in will topic", 0,
     "10 14 0004 4d515454 04 06 003c 0000 0003 610a62 0001 6d", MALFORMED),
    # -- lengths that disagree with the packet ------------------------------------------
    ("§3.12 PINGREQ with a body", 4, "c0 01 00", MALFORMED),
    ("§3.14 DISCONNECT with a body in 3.1.1", 4, "e0 01 00", MALFORMED),
    ("§3.4 PUBACK with 3 bytes in 3.1.1", 4, "40 03 0001 00", MALFORMED),
    ("§3.4 PUBACK with 1 byte", 4, "40 01 00", MALFORMED),
    ("§3.2 CONNACK with 1 byte", 4, "20 01 00", MALFORMED),
    ("§3.2.2.1 CONNACK reserved acknowledge flags", 4, "20 02 02 00", MALFORMED),
    # -- peers that do not speak MQTT at all ----------------------------------------------
    ("[MQTT-2.2.2-2] an HTTP request instead of CONNECT", 0,
     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".hex(), MALFORMED),
    ("[MQTT-2.2.2-2] a TLS ClientHello on the plain port", 0, "16 03 01 00 a5 01 00 00 a1 03 03",
     MALFORMED),
]


@pytest.mark.parametrize(("level", "hex_bytes", "expected"),
                         [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vector(level: int, hex_bytes: str, expected: tuple[type[MQTTError], int]) -> None:
    assert_error(decode_error(b(hex_bytes), level), expected)


# -- reserved fixed-header flags [MQTT-2.2.2-1] [MQTT-2.2.2-2] ---------------------------

#: type -> (required flags, a body that is valid at level 4 when the flags are right)
FLAG_TABLE: dict[int, tuple[int, str]] = {
    1: (0, "0004 4d515454 04 02 003c 0000"),  # CONNECT
    2: (0, "00 00"),  # CONNACK
    4: (0, "0001"),  # PUBACK
    5: (0, "0001"),  # PUBREC
    6: (0b0010, "0001"),  # PUBREL
    7: (0, "0001"),  # PUBCOMP
    8: (0b0010, "0001 0001 61 00"),  # SUBSCRIBE
    9: (0, "0001 00"),  # SUBACK
    10: (0b0010, "0001 0001 61"),  # UNSUBSCRIBE
    11: (0, "0001"),  # UNSUBACK
    12: (0, ""),  # PINGREQ
    13: (0, ""),  # PINGRESP
    14: (0, ""),  # DISCONNECT
}


def _frame(first: int, body_hex: str) -> bytes:
    body = b(body_hex)
    return bytes((first, len(body))) + body


@pytest.mark.parametrize("ptype", sorted(FLAG_TABLE))
def test_required_flags_decode(ptype: int) -> None:
    flags, body = FLAG_TABLE[ptype]
    level = 0 if ptype == 1 else 4
    packets = Decoder(protocol_level=level).feed(_frame(ptype << 4 | flags, body))
    assert len(packets) == 1
    assert packets[0].type == ptype


@pytest.mark.parametrize("ptype", sorted(FLAG_TABLE))
def test_wrong_reserved_flags(ptype: int) -> None:
    """Every flag value but the required one is malformed (SUBSCRIBE, UNSUBSCRIBE and
    PUBREL must carry 0b0010, every other non-PUBLISH packet 0)."""
    required, body = FLAG_TABLE[ptype]
    level = 0 if ptype == 1 else 4
    for flags in range(16):
        if flags == required:
            continue
        exc = decode_error(_frame(ptype << 4 | flags, body), level)
        assert_error(exc, MALFORMED)


@pytest.mark.parametrize(("name", "hex_bytes"), [
    ("SUBSCRIBE flags 0", "80 06 0001 0001 61 00"),
    ("UNSUBSCRIBE flags 0", "a0 05 0001 0001 61"),
    ("PUBREL flags 0", "60 02 0001"),
    ("SUBSCRIBE flags 0b0011", "83 06 0001 0001 61 00"),
    ("PUBACK flags 0b0010", "42 02 0001"),
    ("PINGREQ flags 0b0001", "c1 00"),
    ("DISCONNECT flags 0b1000", "e8 00"),
])
def test_wrong_reserved_flags_named(name: str, hex_bytes: str) -> None:
    assert_error(decode_error(b(hex_bytes)), MALFORMED)


# -- Packet Too Large: refused from the header, before the body ------------------------

def test_too_large_detected_from_header_alone() -> None:
    decoder = Decoder(100, protocol_level=4)
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(b("30 63"))  # 2 + 99 = 101 bytes announced; no body sent
    assert_error(info.value, TOO_LARGE)
    assert decoder.pending_error is info.value


def test_too_large_multibyte_length_detected_from_header_alone() -> None:
    decoder = Decoder(1024, protocol_level=4)
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(b("30 80 80 01"))  # remaining length 16384
    assert_error(info.value, TOO_LARGE)


def test_too_large_header_split_across_reads() -> None:
    decoder = Decoder(1024, protocol_level=4)
    assert decoder.feed(b("30")) == []
    assert decoder.feed(b("80")) == []
    with pytest.raises(PacketTooLarge):
        decoder.feed(b("80 01"))


@pytest.mark.parametrize("header", ["00 7f", "80 7f", "a0 ff 7f", "60 ff ff 7f", "c1 ff ff ff 7f"])
def test_bad_type_or_flags_refused_from_header_alone(header: str) -> None:
    """Reserved type 0 and wrong fixed-header flags need no body to be refused."""
    exc = decode_error(b(header), 4)
    assert_error(exc, MALFORMED)


def test_good_header_waits_for_its_body() -> None:
    decoder = Decoder(protocol_level=4)
    assert decoder.feed(b("62 02 00")) == []
    assert decoder.pending_error is None
    assert decoder.buffered == 3


def test_complete_oversized_packet_in_one_read_is_refused() -> None:
    decoder = Decoder(10, protocol_level=4)
    with pytest.raises(PacketTooLarge):
        decoder.feed(b("30 09 0001 61") + b"x" * 6)  # 11 bytes, all here


def test_packet_of_exactly_max_size_is_accepted() -> None:
    decoder = Decoder(100, protocol_level=4)
    header = b("30 62")  # 2 + 98 = 100 bytes
    assert decoder.feed(header) == []
    assert decoder.pending_error is None
    body = b("0001 61") + b"x" * 95
    assert decoder.feed(body) == [Publish("a", b"x" * 95)]


def test_largest_possible_header_is_not_too_large_by_default() -> None:
    """268,435,455 is the largest Remaining Length [MQTT-2.2.3]: with the default limit
    the decoder waits for the body instead of refusing it."""
    decoder = Decoder(protocol_level=4)
    assert decoder.feed(b("30 ff ff ff 7f")) == []
    assert decoder.pending_error is None


# -- good packets before a bad one; a dead decoder -------------------------------------

def test_good_packets_before_bad_one_are_returned() -> None:
    data = b(CONNECT_V4) + b("30 03 0001 61") + b("c0 00") + b("30 05 0003 612f23") + b("c0 00")
    decoder = Decoder()
    packets = decoder.feed(data)
    assert packets == [Connect(client_id=""), Publish("a", b""), Pingreq()]
    assert_error(decoder.pending_error, MALFORMED)  # type: ignore[arg-type]


def test_too_large_after_good_packet_is_pending() -> None:
    decoder = Decoder(64, protocol_level=4)
    packets = decoder.feed(b("c0 00") + b("30 7f"))
    assert packets == [Pingreq()]
    assert_error(decoder.pending_error, TOO_LARGE)  # type: ignore[arg-type]


def test_protocol_error_after_good_packet_is_pending() -> None:
    decoder = Decoder(protocol_level=4)
    assert decoder.feed(b("c0 00") + b("82 02 0001")) == [Pingreq()]
    assert_error(decoder.pending_error, PROTOCOL)  # type: ignore[arg-type]


def test_feed_after_pending_error_raises_it() -> None:
    decoder = Decoder(protocol_level=4)
    assert decoder.feed(b("c0 00") + b("00 00")) == [Pingreq()]
    pending = decoder.pending_error
    assert pending is not None
    with pytest.raises(MalformedPacket) as info:
        decoder.feed(b("c0 00"))
    assert info.value is pending
    with pytest.raises(MalformedPacket):
        decoder.feed(b"")


def test_feed_after_raised_error_raises_again() -> None:
    decoder = Decoder(protocol_level=4)
    with pytest.raises(MalformedPacket) as first:
        decoder.feed(b("36 05 0001 61 0001"))
    with pytest.raises(MalformedPacket) as second:
        decoder.feed(b("c0 00"))  # a perfectly good PINGREQ
    assert second.value is first.value


def test_bad_packet_completed_by_a_later_read() -> None:
    decoder = Decoder(protocol_level=4)
    assert decoder.feed(b("c0 00 30 05 00")) == [Pingreq()]
    assert decoder.pending_error is None
    with pytest.raises(MalformedPacket):
        decoder.feed(b("03 612f2b"))


# -- MQTT 5.0 -------------------------------------------------------------------------

V5_VECTORS: list[tuple[str, str, tuple[type[MQTTError], int]]] = [
    ("§2.2.2.2 property included twice",
     "30 0e 0001 61 0a 0200000001 0200000002", PROTOCOL),
    ("§2.2.2.2 unknown property identifier 0x7f", "30 06 0001 61 02 7f00", MALFORMED),
    ("§2.2.2.2 property length past the packet end", "30 04 0001 61 05", MALFORMED),
    ("§2.2.2.2 property value truncated inside its block",
     "30 07 0001 61 03 02 0000", MALFORMED),
    ("§2.2.2.2 string property overruns the block",
     "30 08 0001 61 04 03 0005 61", MALFORMED),
    ("[MQTT-3.8.3-5] SUBSCRIBE options bits 6-7 set", "82 07 0001 00 0001 61 c0", MALFORMED),
    ("[MQTT-3.8.3-5] SUBSCRIBE options bit 6 set", "82 07 0001 00 0001 61 40", MALFORMED),
    ("[MQTT-3.8.3-2] SUBSCRIBE with no topic filters", "82 03 0001 00", PROTOCOL),
    ("[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filters", "a2 03 0001 00", PROTOCOL),
    ("[MQTT-3.3.1-4] PUBLISH with QoS 3", "36 06 0001 61 0001 00", MALFORMED),
    ("[MQTT-3.1.2-3] CONNECT reserved flag", "10 0d 0004 4d515454 05 01 003c 00 0000", MALFORMED),
    ("[MQTT-3.1.2-12] will QoS 3", "10 14 0004 4d515454 05 1e 003c 00 0000 00 0001 77 0001 6d",
     MALFORMED),
    ("[MQTT-3.1.2-11] will QoS without will flag",
     "10 0d 0004 4d515454 05 0a 003c 00 0000", MALFORMED),
    ("[MQTT-3.1.2-1] unknown protocol name",
     "10 0d 0004 4d515458 05 02 003c 00 0000", PROTOCOL),
    ("§3.3.2.3.2 Payload Format Indicator 2", "30 06 0001 61 02 0102", PROTOCOL),
    ("§3.3.2.3.2 Payload Format Indicator 255", "30 06 0001 61 02 01ff", PROTOCOL),
    ("[MQTT-3.3.2-14] Response Topic with '#'", "30 0a 0001 61 06 08 0003 612f23", PROTOCOL),
    ("[MQTT-3.3.2-14] Response Topic with '+'", "30 0a 0001 61 06 08 0003 2b2f61", PROTOCOL),
    ("[MQTT-4.7.3-1] zero-length Response Topic", "30 07 0001 61 03 08 0000", PROTOCOL),
    ("[MQTT-3.3.2-8] Topic Alias 0", "30 07 0001 61 03 230000",
     (TopicAliasInvalid, 0x94)),
    ("§3.1.3.2.3 will Payload Format Indicator 2",
     "10 16 0004 4d515454 05 06 003c 00 0000 02 0102 0001 77 0001 6d", PROTOCOL),
    ("[MQTT-3.3.2-14] will Response Topic with '+'",
     "10 1a 0004 4d515454 05 06 003c 00 0000 06 08 0003 612f2b 0001 77 0001 6d", PROTOCOL),
    ("[MQTT-4.7.3-1] zero-length filter in 5.0 SUBSCRIBE", "82 06 0001 00 0000 00", PROTOCOL),
    ("[MQTT-4.8.2-2] '$share/g/' in 5.0 UNSUBSCRIBE",
     "a2 0e 0001 00 0009 2473686172652f672f", PROTOCOL),
]


@pytest.mark.parametrize(("hex_bytes", "expected"), [v[1:] for v in V5_VECTORS],
                         ids=[v[0] for v in V5_VECTORS])
def test_v5_vector(hex_bytes: str, expected: tuple[type[MQTTError], int]) -> None:
    level = 0 if hex_bytes.startswith("10") else 5
    assert_error(decode_error(b(hex_bytes), level), expected)


def test_v5_password_without_user_name_is_allowed() -> None:
    """MQTT 5.0 drops [MQTT-3.1.2-22]: a password alone is fine."""
    packets = Decoder().feed(b("10 10 0004 4d515454 05 42 003c 00 0000 0001 70"))
    assert packets == [Connect(protocol_level=5, password=b"p")]


def test_v5_empty_topic_is_allowed_by_the_codec() -> None:
    """An empty topic is how a 5.0 PUBLISH uses a Topic Alias (§3.3.2.3.4)."""
    packets = Decoder(protocol_level=5).feed(b("30 06 0000 03 2300 01"))
    assert packets == [Publish("", b"", properties={PropertyId.TOPIC_ALIAS: 1})]


def test_v5_subscribe_valid_options() -> None:
    packets = Decoder(protocol_level=5).feed(b("82 07 0001 00 0001 61 2e"))
    assert packets == [Subscribe(1, [("a", SubscriptionOptions(2, True, True, 2))])]


def test_v5_subscribe_retain_handling_3_is_protocol_error() -> None:
    assert_error(decode_error(b("82 07 0001 00 0001 61 30"), 5), PROTOCOL)


def test_v5_subscribe_qos_3_is_protocol_error() -> None:
    assert_error(decode_error(b("82 07 0001 00 0001 61 03"), 5), PROTOCOL)


def test_v5_property_not_valid_for_packet_type_is_malformed() -> None:
    assert_error(decode_error(b("30 09 0001 61 05 1100000001"), 5), MALFORMED)


def test_v5_well_formed_message_properties_decode() -> None:
    """Payload Format Indicator 0 and 1, a Response Topic that is a topic name, a
    Topic Alias from 1 are what a client may send."""
    packets = Decoder(protocol_level=5).feed(
        b("30 0f 0001 61 0b 0101 08 0003 612f62 230001"))
    assert packets == [Publish("a", b"", properties={
        PropertyId.PAYLOAD_FORMAT_INDICATOR: 1, PropertyId.RESPONSE_TOPIC: "a/b",
        PropertyId.TOPIC_ALIAS: 1})]


# -- MQTT 3.1 (MQIsdp): what its specification allowed ---------------------------------

def test_v31_connect_fixed_header_flags_and_reserved_bit_are_not_checked() -> None:
    """MQTT 3.1 left CONNECT's DUP/QoS/RETAIN bits and connect flag bit 0 unused,
    and did not ask a server to check them (3.1.1 made them [MQTT-2.2.2-2],
    [MQTT-3.1.2-3])."""
    packets = Decoder().feed(b("1f 12 0006 4d5149736470 03 03 003c 0004 74657374"))
    assert packets == [Connect(client_id="test", protocol_level=3, protocol_name="MQIsdp")]


@pytest.mark.parametrize(("name", "hex_bytes", "ptype"), [
    ("PUBREL with DUP", "6a 02 0001", 6),
    ("SUBSCRIBE with DUP", "8a 06 0001 0001 61 00", 8),
    ("UNSUBSCRIBE with DUP", "aa 05 0001 0001 61", 10),
    ("PUBACK with QoS 1 bits", "42 02 0001", 4),
])
def test_v31_fixed_header_flags_are_not_checked(name: str, hex_bytes: str, ptype: int) -> None:
    """A 3.1 client resends PUBREL, SUBSCRIBE and UNSUBSCRIBE with DUP set, as 3.1
    asked it to; 3.1 fixed no other flags either (Mosquitto does not check them)."""
    packets = Decoder(protocol_level=3).feed(b(hex_bytes))
    assert [p.type for p in packets] == [ptype]


# -- control characters: refused unless allowed -----------------------------------------

@pytest.mark.parametrize("hex_bytes", [
    "30 05 0003 610962",  # PUBLISH topic "a\tb"
    "82 07 0001 0002 c285 00",  # SUBSCRIBE filter "\x85"
    "a2 07 0001 0003 61c29f",  # UNSUBSCRIBE filter "a\x9fb"
])
def test_control_characters_allowed_when_asked(hex_bytes: str) -> None:
    assert len(Decoder(protocol_level=4, allow_control_characters=True).feed(b(hex_bytes))) == 1


@pytest.mark.parametrize("text", ["a\u00a0b", "\ufeffa", "a\u200bb", "\u00a0", "x/\u2028"])
def test_other_non_printable_characters_are_allowed(text: str) -> None:
    """Only U+0001-U+001F and U+007F-U+009F are refused: NO-BREAK SPACE, the BOM
    [MQTT-1.5.4-3], a zero-width space or a line separator are not."""
    raw = text.encode()
    data = bytes((0x30, 2 + len(raw))) + len(raw).to_bytes(2, "big") + raw
    assert Decoder(protocol_level=4).feed(data) == [Publish(text)]
