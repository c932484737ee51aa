"""Encoder/decoder round trips for every packet type at MQTT 3.1, 3.1.1 and 5.0.

`decode(encode(p)) == p` alone cannot catch a bug the encoder and decoder
share, so a few byte-exact vectors (written out from the specification) pin
the wire format too.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starling.mqtt import (
    MAX_PACKET_SIZE,
    PROTOCOL_NAMES,
    Auth,
    Connack,
    Connect,
    Decoder,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    PropertyId,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    Will,
    connack_bytes,
    encode,
    is_empty_filter,
    publish_parts,
    settle_decoder,
    shared_decoder,
)

P = PropertyId
LEVELS = (3, 4, 5)


def roundtrip(packet: Packet, level: int) -> Packet:
    """Encode at `level`, decode with a fresh decoder; exactly one packet must come out."""
    data = encode(packet, level)
    decoder = Decoder(protocol_level=0 if isinstance(packet, Connect) else level)
    out = decoder.feed(data)
    assert decoder.pending_error is None
    assert len(out) == 1, out
    return out[0]


def connect(level: int, **kw: Any) -> Connect:
    return Connect(protocol_level=level, protocol_name=PROTOCOL_NAMES[level], **kw)


# -- every packet type, every level ----------------------------------------------------

def packets_for(level: int) -> list[Packet]:
    """Packets valid at `level` with no MQTT 5.0-only content."""
    out: list[Packet] = [
        connect(level, client_id="client-1"),
        connect(level, client_id="", clean_start=False, keepalive=0),
        connect(level, client_id="c", keepalive=65535,
                will=Will("will/topic", b"bye\x00\xff", qos=2, retain=True),
                username="user", password=b"\x00secret\xff"),
        connect(level, client_id="c", will=Will("w", b"", qos=1), username="u"),
        Connack(session_present=False, reason_code=0),
        Connack(session_present=True, reason_code=0),
        Connack(session_present=False, reason_code=5),
        Publish("a/b", b"hello", qos=0),
        Publish("a/b", b"", qos=0, retain=True),
        Publish("a/b/c", b"\x00\x01\x02", qos=1, packet_id=1),
        Publish("a", b"x" * 300, qos=2, packet_id=65535, retain=True, dup=True),
        Publish("ünïcödé/€/\U0001f426", b"p", qos=1, packet_id=7, dup=True),
        Publish("/", b"p"),
        Puback(1),
        Puback(65535),
        Pubrec(2),
        Pubrel(3),
        Pubcomp(4),
        Subscribe(10, [("a/+/c", SubscriptionOptions(qos=0))]),
        Subscribe(11, [("#", SubscriptionOptions(qos=2)), ("$SYS/#", SubscriptionOptions(qos=1)),
                       ("a/b", SubscriptionOptions(qos=0))]),
        Suback(10, [0]),
        Suback(11, [0, 1, 2, 0x80]),
        Unsubscribe(12, ["a/+/c"]),
        Unsubscribe(13, ["#", "a/b", "$share/g/x"]),
        Pingreq(),
        Pingresp(),
        Disconnect(),
    ]
    if level < 5:
        out.append(Unsuback(12))
    else:
        out.append(Unsuback(12, [0]))
    if level >= 4:
        out.append(connect(level, client_id="", username="only-user"))
    if level == 5:
        out.append(connect(level, client_id="c", password=b"pw-without-user"))
    return out


def _ids(packets: list[Packet]) -> list[str]:
    return [f"{i}-{type(p).__name__}" for i, p in enumerate(packets)]


@pytest.mark.parametrize("level", LEVELS)
def test_every_packet_type_round_trips(level: int) -> None:
    packets = packets_for(level)
    kinds = {type(p) for p in packets}
    assert kinds >= {Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe,
                     Suback, Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect}
    for packet in packets:
        assert roundtrip(packet, level) == packet, packet


V5_PACKETS: list[Packet] = [
    connect(5, client_id="v5", properties={
        P.SESSION_EXPIRY_INTERVAL: 3600,
        P.RECEIVE_MAXIMUM: 20,
        P.MAXIMUM_PACKET_SIZE: 1 << 20,
        P.TOPIC_ALIAS_MAXIMUM: 10,
        P.REQUEST_RESPONSE_INFORMATION: 1,
        P.REQUEST_PROBLEM_INFORMATION: 0,
        P.USER_PROPERTY: [("k", "v"), ("k", "v2"), ("", "")],
        P.AUTHENTICATION_METHOD: "SCRAM-SHA-1",
        P.AUTHENTICATION_DATA: b"\x00\x01",
    }),
    connect(5, client_id="v5w", will=Will("w/t", b"gone", 1, True, {
        P.WILL_DELAY_INTERVAL: 30,
        P.PAYLOAD_FORMAT_INDICATOR: 1,
        P.MESSAGE_EXPIRY_INTERVAL: 60,
        P.CONTENT_TYPE: "text/plain",
        P.RESPONSE_TOPIC: "reply/here",
        P.CORRELATION_DATA: b"\xde\xad",
        P.USER_PROPERTY: [("a", "b")],
    }), username="u", password=b"p", properties={P.SESSION_EXPIRY_INTERVAL: 0xFFFFFFFF}),
    Connack(True, 0, {
        P.ASSIGNED_CLIENT_IDENTIFIER: "auto-123",
        P.SERVER_KEEP_ALIVE: 30,
        P.MAXIMUM_QOS: 1,
        P.RETAIN_AVAILABLE: 0,
        P.WILDCARD_SUBSCRIPTION_AVAILABLE: 1,
        P.SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
        P.SHARED_SUBSCRIPTION_AVAILABLE: 1,
        P.TOPIC_ALIAS_MAXIMUM: 65535,
        P.RESPONSE_INFORMATION: "resp",
        P.SERVER_REFERENCE: "other:1883",
        P.REASON_STRING: "welcome",
    }),
    Connack(False, 0x86),
    Connack(False, 0x84, {P.REASON_STRING: "no"}),
    Publish("t", b"x", 1, False, False, 5, {
        P.PAYLOAD_FORMAT_INDICATOR: 0,
        P.MESSAGE_EXPIRY_INTERVAL: 10,
        P.TOPIC_ALIAS: 3,
        P.SUBSCRIPTION_IDENTIFIER: [1, 268_435_455, 128],
        P.USER_PROPERTY: [("x", "y")],
    }),
    Publish("", b"aliased", 0, False, False, None, {P.TOPIC_ALIAS: 1}),
    Puback(1, 0x10),
    Puback(1, 0x80, {P.REASON_STRING: "nope", P.USER_PROPERTY: [("a", "b")]}),
    Pubrec(2, 0x10),
    Pubrel(3, 0x92),
    Pubcomp(4, 0x92, {P.REASON_STRING: "unknown id"}),
    Puback(5, 0, {P.REASON_STRING: "success with properties"}),
    Subscribe(1, [
        ("a/#", SubscriptionOptions(qos=1, no_local=True, retain_as_published=True,
                                    retain_handling=2)),
        ("b", SubscriptionOptions(qos=2, retain_handling=1)),
    ], {P.SUBSCRIPTION_IDENTIFIER: [42], P.USER_PROPERTY: [("s", "t")]}),
    Suback(1, [1, 2, 0x87], {P.REASON_STRING: "partly"}),
    Unsubscribe(2, ["a/#"], {P.USER_PROPERTY: [("u", "v")]}),
    Unsuback(2, [0, 0x11], {P.REASON_STRING: "r"}),
    Unsuback(3, []),
    Disconnect(0x04),
    Disconnect(0, {P.SESSION_EXPIRY_INTERVAL: 0}),
    Disconnect(0x9C, {P.SERVER_REFERENCE: "elsewhere", P.REASON_STRING: "moved"}),
    Auth(0x18, {P.AUTHENTICATION_METHOD: "m", P.AUTHENTICATION_DATA: b"d"}),
    Auth(0x00),
    Auth(0x19, {P.AUTHENTICATION_METHOD: "m"}),
]


@pytest.mark.parametrize("packet", V5_PACKETS, ids=_ids(V5_PACKETS))
def test_v5_packets_with_properties_round_trip(packet: Packet) -> None:
    assert roundtrip(packet, 5) == packet


@pytest.mark.parametrize("level", (3, 4))
def test_v3_encoding_drops_v5_only_fields(level: int) -> None:
    """Properties and ack reason codes do not exist before 5.0: the encoder leaves them out."""
    assert encode(Puback(1, 0x80, {P.REASON_STRING: "x"}), level) == bytes.fromhex("40020001")
    assert encode(Disconnect(0x04, {P.REASON_STRING: "x"}), level) == bytes.fromhex("e000")
    p = Publish("t", b"x", 1, False, False, 9, {P.USER_PROPERTY: [("a", "b")]})
    assert roundtrip(p, level) == Publish("t", b"x", 1, False, False, 9)


# -- byte-exact vectors (from the specification, not from our encoder) -----------------

GOLDEN: list[tuple[Packet, int, str]] = [
    # CONNECT, 3.1.1, clean session, keepalive 60, client id "c".
    (connect(4, client_id="c"), 4, "10 0d 0004 4d515454 04 02 003c 0001 63"),
    # CONNECT, 3.1: protocol name MQIsdp.
    (connect(3, client_id="c"), 3, "10 0f 0006 4d5149736470 03 02 003c 0001 63"),
    # CONNECT, 5.0: one empty property block.
    (connect(5, client_id="c"), 5, "10 0e 0004 4d515454 05 02 003c 00 0001 63"),
    # CONNECT with will (QoS 1, retain), user name and password.
    (connect(4, client_id="c", keepalive=10, will=Will("w", b"m", 1, True), username="u",
             password=b"p"), 4,
     "10 19 0004 4d515454 04 ee 000a 0001 63 0001 77 0001 6d 0001 75 0001 70"),
    (Connack(True, 0), 4, "20 02 01 00"),
    (Connack(False, 0), 5, "20 03 00 00 00"),
    (Publish("a/b", b"hi"), 4, "30 07 0003 612f62 6869"),
    (Publish("a/b", b"hi", qos=1, packet_id=10, retain=True), 4, "33 09 0003 612f62 000a 6869"),
    (Publish("a", b"", qos=2, packet_id=1, dup=True), 4, "3c 05 0001 61 0001"),
    (Publish("a", b"", qos=1, packet_id=1), 5, "32 06 0001 61 0001 00"),
    (Publish("a", b"", properties={P.PAYLOAD_FORMAT_INDICATOR: 1}), 5, "30 06 0001 61 02 0101"),
    (Puback(1), 4, "40 02 0001"),
    (Pubrec(2), 4, "50 02 0002"),
    (Pubrel(3), 4, "62 02 0003"),
    (Pubcomp(4), 4, "70 02 0004"),
    (Puback(1), 5, "40 02 0001"),  # reason 0 and no properties may be omitted
    (Puback(1, 0x10), 5, "40 03 0001 10"),
    (Subscribe(1, [("a/+", SubscriptionOptions(qos=1))]), 4, "82 08 0001 0003 612f2b 01"),
    (Subscribe(1, [("a", SubscriptionOptions(2, True, True, 2))]), 5, "82 07 0001 00 0001 61 2e"),
    (Suback(1, [0, 1, 0x80]), 4, "90 05 0001 000180"),
    (Unsubscribe(2, ["a/+"]), 4, "a2 07 0002 0003 612f2b"),
    (Unsuback(2), 4, "b0 02 0002"),
    (Unsuback(2, [0x11]), 5, "b0 04 0002 00 11"),
    (Pingreq(), 4, "c0 00"),
    (Pingresp(), 4, "d0 00"),
    (Disconnect(), 4, "e0 00"),
    (Disconnect(), 5, "e0 00"),
    (Disconnect(0x04), 5, "e0 01 04"),
    (Disconnect(0, {P.SESSION_EXPIRY_INTERVAL: 5}), 5, "e0 07 00 05 1100000005"),
    (Auth(0x18, {P.AUTHENTICATION_METHOD: "m"}), 5, "f0 06 18 04 150001 6d"),
]


@pytest.mark.parametrize(("packet", "level", "hex_bytes"), GOLDEN,
                         ids=[f"{type(p).__name__}-v{lv}" for p, lv, _ in GOLDEN])
def test_golden_bytes(packet: Packet, level: int, hex_bytes: str) -> None:
    data = bytes.fromhex(hex_bytes.replace(" ", ""))
    assert encode(packet, level) == data
    decoder = Decoder(protocol_level=0 if isinstance(packet, Connect) else level)
    assert decoder.feed(data) == [packet]


@pytest.mark.parametrize(("size", "header"), [
    (127, "7f"), (128, "8001"), (16_383, "ff7f"), (16_384, "808001"), (2_097_152, "80808001"),
])
def test_remaining_length_varint_boundaries(size: int, header: str) -> None:
    """[MQTT-2.2.3] Remaining Length uses 1-4 bytes; test each boundary of the encoding."""
    payload = b"\xab" * (size - 3)  # topic "a" takes 3 bytes
    packet = Publish("a", payload)
    data = encode(packet, 4)
    assert data[: 1 + len(header) // 2] == bytes.fromhex("30" + header)
    assert len(data) == 1 + len(header) // 2 + size
    assert Decoder(protocol_level=4).feed(data) == [packet]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qos", (0, 1, 2))
def test_publish_parts_matches_encode(level: int, qos: int) -> None:
    props = {P.USER_PROPERTY: [("k", "v")], P.MESSAGE_EXPIRY_INTERVAL: 9}
    head, tail = publish_parts("x/y", b"body", qos, True, bool(qos), level, props)
    packet_id = 0x1234 if qos else None
    packet = Publish("x/y", b"body", qos, True, bool(qos), packet_id, props)
    if qos:
        assert head + b"\x12\x34" + tail == encode(packet, level)
    else:
        assert head + tail == encode(packet, level)
    expected = packet if level == 5 else Publish("x/y", b"body", qos, True, bool(qos), packet_id)
    assert roundtrip(packet, level) == expected


@pytest.mark.parametrize("level", (3, 4))
@pytest.mark.parametrize("present", (False, True))
@pytest.mark.parametrize("code", range(6))
def test_connack_bytes_matches_encode(level: int, present: bool, code: int) -> None:
    """The broker's shortcut for 3.x CONNACKs writes what the encoder writes."""
    assert connack_bytes(present, code) == encode(Connack(present, code), level)


# -- streams: any split, many packets per read -----------------------------------------

def stream_for(level: int) -> list[Packet]:
    """A plausible client->server conversation, CONNECT first, then everything else."""
    packets = [p for p in packets_for(level) if not isinstance(p, Connect)]
    head: list[Packet] = [connect(level, client_id="streamer")]
    if level == 5:
        head = [V5_PACKETS[0]]
        packets += [p for p in V5_PACKETS if not isinstance(p, Connect)]
    return head + packets


@pytest.mark.parametrize("level", LEVELS)
def test_stream_split_at_every_byte_boundary(level: int) -> None:
    packets = stream_for(level)
    data = b"".join(encode(p, level) for p in packets)
    whole = Decoder().feed(data)
    assert whole == packets
    for cut in range(len(data) + 1):
        decoder = Decoder()
        first = decoder.feed(data[:cut])
        second = decoder.feed(data[cut:])
        assert first + second == packets, f"split at byte {cut}"
        assert decoder.pending_error is None
        assert decoder.protocol_level == level


@pytest.mark.parametrize("level", LEVELS)
def test_stream_fed_one_byte_at_a_time(level: int) -> None:
    packets = [*stream_for(level), Publish("big", b"\x5a" * 20_000, 1, packet_id=9)]
    data = b"".join(encode(p, level) for p in packets)
    decoder = Decoder()
    out: list[Packet] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == packets


def test_packet_completed_only_by_its_last_byte() -> None:
    data = encode(Publish("t", b"payload", 1, packet_id=3), 4)
    decoder = Decoder(protocol_level=4)
    assert decoder.feed(data[:-1]) == []
    assert decoder.buffered == len(data) - 1
    assert decoder.feed(b"") == []
    assert decoder.feed(data[-1:]) == [Publish("t", b"payload", 1, packet_id=3)]
    assert decoder.buffered == 0
    assert decoder.feed(b"") == []


def test_many_packets_in_one_read() -> None:
    packets: list[Packet] = [connect(4, client_id="bulk")]
    packets += [Publish(f"t/{i}", str(i).encode(), i % 3, packet_id=(i % 65535) + 1 if i % 3
                        else None) for i in range(2000)]
    packets += [Pingreq(), Disconnect()]
    data = b"".join(encode(p, 4) for p in packets)
    decoder = Decoder()
    assert decoder.feed(data) == packets
    assert decoder.protocol_level == 4


def test_connect_sets_level_for_packets_in_the_same_read() -> None:
    """A v5 PUBLISH right behind CONNECT in one read is parsed with its property block."""
    publish = Publish("t", b"x", 0, properties={P.CONTENT_TYPE: "a/b"})
    data = encode(connect(5, client_id="c"), 5) + encode(publish, 5)
    decoder = Decoder()
    assert decoder.feed(data) == [connect(5, client_id="c"), publish]
    assert decoder.protocol_level == 5


def test_bytes_after_complete_packets_are_kept() -> None:
    a = encode(Publish("a", b"1"), 4)
    b = encode(Publish("b", b"2"), 4)
    decoder = Decoder(protocol_level=4)
    assert decoder.feed(a + b[:3]) == [Publish("a", b"1")]
    assert decoder.feed(b[3:] + a[:1]) == [Publish("b", b"2")]
    assert decoder.feed(a[1:]) == [Publish("a", b"1")]


def test_utf8_bom_is_not_stripped() -> None:
    """[MQTT-1.5.3-3] U+FEFF must not be skipped over or stripped off by a receiver."""
    packet = Publish("\ufeffa/\ufeff", b"")
    data = encode(packet, 4)
    assert data[4:7] == b"\xef\xbb\xbf"
    assert roundtrip(packet, 4) == packet


# -- hypothesis ------------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
               max_size=20)
#: Topic names and filters hold no control characters (Cc): the decoder refuses them
#: by default (MQTT 5.0 §1.5.4); test_decoder_errors covers that refusal.
topic_name = st.text(st.characters(exclude_categories=["Cs", "Cc"],
                                   exclude_characters="+#"), min_size=1, max_size=20)
packet_ids = st.integers(1, 65535)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
flag = st.sampled_from((0, 1))
user_props = st.lists(st.tuples(text, text), min_size=1, max_size=3)

PROPERTY_VALUES: dict[PropertyId, st.SearchStrategy[Any]] = {
    P.PAYLOAD_FORMAT_INDICATOR: flag,
    P.MESSAGE_EXPIRY_INTERVAL: u32,
    P.CONTENT_TYPE: text,
    P.RESPONSE_TOPIC: topic_name,
    P.CORRELATION_DATA: st.binary(max_size=16),
    P.SUBSCRIPTION_IDENTIFIER: st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),
    P.SESSION_EXPIRY_INTERVAL: u32,
    P.ASSIGNED_CLIENT_IDENTIFIER: text,
    P.SERVER_KEEP_ALIVE: u16,
    P.AUTHENTICATION_METHOD: text,
    P.AUTHENTICATION_DATA: st.binary(max_size=16),
    P.REQUEST_PROBLEM_INFORMATION: flag,
    P.WILL_DELAY_INTERVAL: u32,
    P.REQUEST_RESPONSE_INFORMATION: flag,
    P.RESPONSE_INFORMATION: text,
    P.SERVER_REFERENCE: text,
    P.REASON_STRING: text,
    P.RECEIVE_MAXIMUM: st.integers(1, 0xFFFF),
    P.TOPIC_ALIAS_MAXIMUM: u16,
    P.TOPIC_ALIAS: st.integers(1, 0xFFFF),
    P.MAXIMUM_QOS: flag,
    P.RETAIN_AVAILABLE: flag,
    P.USER_PROPERTY: user_props,
    P.MAXIMUM_PACKET_SIZE: st.integers(1, 0xFFFFFFFF),
    P.WILDCARD_SUBSCRIPTION_AVAILABLE: flag,
    P.SUBSCRIPTION_IDENTIFIER_AVAILABLE: flag,
    P.SHARED_SUBSCRIPTION_AVAILABLE: flag,
}

#: Which properties each packet may carry (MQTT 5.0 §2.2.2.2, Table 2-4).
PUBLISH_PROPS = (P.PAYLOAD_FORMAT_INDICATOR, P.MESSAGE_EXPIRY_INTERVAL, P.CONTENT_TYPE,
                 P.RESPONSE_TOPIC, P.CORRELATION_DATA, P.SUBSCRIPTION_IDENTIFIER, P.TOPIC_ALIAS,
                 P.USER_PROPERTY)
WILL_PROPS = (P.PAYLOAD_FORMAT_INDICATOR, P.MESSAGE_EXPIRY_INTERVAL, P.CONTENT_TYPE,
              P.RESPONSE_TOPIC, P.CORRELATION_DATA, P.WILL_DELAY_INTERVAL, P.USER_PROPERTY)
CONNECT_PROPS = (P.SESSION_EXPIRY_INTERVAL, P.AUTHENTICATION_METHOD, P.AUTHENTICATION_DATA,
                 P.REQUEST_PROBLEM_INFORMATION, P.REQUEST_RESPONSE_INFORMATION,
                 P.RECEIVE_MAXIMUM, P.TOPIC_ALIAS_MAXIMUM, P.USER_PROPERTY,
                 P.MAXIMUM_PACKET_SIZE)


def properties(allowed: tuple[PropertyId, ...],
               overrides: dict[PropertyId, st.SearchStrategy[Any]] | None = None,
               ) -> st.SearchStrategy[dict[PropertyId, Any]]:
    values = {**PROPERTY_VALUES, **(overrides or {})}
    return st.fixed_dictionaries({}, optional={pid: values[pid] for pid in allowed})


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    qos = draw(st.sampled_from((0, 1, 2)))
    return Publish(
        topic=draw(topic_name),
        payload=draw(st.binary(max_size=200)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_ids) if qos else None,
        properties=draw(properties(PUBLISH_PROPS)) if level == 5 else {},
    )


@st.composite
def subscription_options(draw: st.DrawFn, level: int) -> SubscriptionOptions:
    qos = draw(st.sampled_from((0, 1, 2)))
    if level < 5:
        return SubscriptionOptions(qos)
    return SubscriptionOptions(qos, draw(st.booleans()), draw(st.booleans()),
                               draw(st.sampled_from((0, 1, 2))))


@st.composite
def subscribes(draw: st.DrawFn, level: int) -> Subscribe:
    filters = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1,
                      max_size=20).filter(lambda f: not is_empty_filter(f))
    entries = draw(st.lists(st.tuples(filters, subscription_options(level)),
                            min_size=1, max_size=5))
    props = {}
    if level == 5:
        props = draw(properties((P.SUBSCRIPTION_IDENTIFIER, P.USER_PROPERTY), {
            P.SUBSCRIPTION_IDENTIFIER: st.lists(st.integers(1, 268_435_455), min_size=1,
                                                max_size=1)}))
    return Subscribe(draw(packet_ids), entries, props)


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(draw(topic_name), draw(st.binary(max_size=50)),
                    draw(st.sampled_from((0, 1, 2))), draw(st.booleans()),
                    draw(properties(WILL_PROPS)) if level == 5 else {})
    username = draw(st.none() | text)
    password = draw(st.none() | st.binary(max_size=20))
    if level < 5 and username is None:
        password = None  # [MQTT-3.1.2-22]
    return connect(level, client_id=draw(text), clean_start=draw(st.booleans()),
                   keepalive=draw(u16), will=will, username=username, password=password,
                   properties=draw(properties(CONNECT_PROPS)) if level == 5 else {})


HYPO = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("level", LEVELS)
@HYPO
@given(data=st.data())
def test_hypothesis_publish_round_trips(level: int, data: st.DataObject) -> None:
    packet = data.draw(publishes(level))
    assert roundtrip(packet, level) == packet


@pytest.mark.parametrize("level", LEVELS)
@HYPO
@given(data=st.data())
def test_hypothesis_subscribe_round_trips(level: int, data: st.DataObject) -> None:
    packet = data.draw(subscribes(level))
    assert roundtrip(packet, level) == packet


@pytest.mark.parametrize("level", LEVELS)
@HYPO
@given(data=st.data())
def test_hypothesis_connect_round_trips(level: int, data: st.DataObject) -> None:
    packet = data.draw(connects(level))
    assert roundtrip(packet, level) == packet


@pytest.mark.parametrize("level", LEVELS)
@HYPO
@given(data=st.data())
def test_hypothesis_stream_in_random_chunks(level: int, data: st.DataObject) -> None:
    packets: list[Packet] = [data.draw(connects(level))]
    packets += data.draw(st.lists(st.one_of(publishes(level), subscribes(level)), max_size=8))
    stream = b"".join(encode(p, level) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = Decoder()
    out: list[Packet] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[start:cut])
        start = cut
    assert out == packets


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_hypothesis_connections_sharing_idle_decoders(data: st.DataObject) -> None:
    """Connections that use the shared decoder between packets (`shared_decoder` /
    `settle_decoder`, as the transport does) decode each its own stream, at levels 3, 4
    and 5, however their reads interleave and wherever they are cut."""
    streams = []
    for level in data.draw(st.lists(st.sampled_from(LEVELS), min_size=2, max_size=4)):
        packets: list[Packet] = [data.draw(connects(level))]
        packets += data.draw(st.lists(st.one_of(publishes(level), subscribes(level)),
                                      max_size=5))
        stream = b"".join(encode(p, level) for p in packets)
        cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=6))))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        streams.append((packets, chunks))
    decoders = [shared_decoder(MAX_PACKET_SIZE) for _ in streams]
    out: list[list[Packet]] = [[] for _ in streams]
    order = data.draw(st.permutations([i for i, (_, chunks) in enumerate(streams)
                                       for _ in chunks]))
    for i in order:
        chunk = streams[i][1].pop(0)
        out[i] += decoders[i].feed(chunk)
        decoders[i] = settle_decoder(decoders[i])
    assert out == [packets for packets, _ in streams]
