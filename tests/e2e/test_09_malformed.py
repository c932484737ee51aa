"""Malformed and protocol-violating input (MQTT 3.1.1 sections 1.5.3, 2, 3, 4.8).

Each case is sent on its own raw connection.  The server must close that
connection (sending nothing, except the CONNACK return code the spec gives for
a bad CONNECT) and nothing else may be affected: a bystander subscriber (paho)
and an idle raw client on the same node stay connected and keep working.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
from helpers.clients import PahoClient, uid
from helpers.packets import (
    RawClient,
    Will,
    encode_string,
    fixed,
    gen_connack,
    gen_connect,
    gen_publish,
    gen_suback,
    gen_subscribe,
    gen_unsubscribe,
)


@dataclass
class Bystanders:
    node: object
    sub: PahoClient
    pub: PahoClient
    idle: RawClient
    topic: str = field(default_factory=lambda: uid("bystander"))

    def check(self) -> None:
        """The node is alive and unrelated clients are unaffected."""
        proc = getattr(self.node, "proc", None)
        assert proc is None or proc.poll() is None, "broker process died"
        assert self.sub.is_connected(), "bystander subscriber was disconnected"
        marker = uid("alive").encode()
        self.pub.publish(self.topic, marker, qos=1)
        m = self.sub.get()
        assert (m.topic, m.payload) == (self.topic, marker)
        self.idle.ping()


def make_bystanders(node, connected, raw) -> Bystanders:
    sub = connected(target=node)
    pub = connected(target=node)
    idle = raw(target=node)
    idle.connect(uid("idle"))
    b = Bystanders(node, sub, pub, idle)
    sub.subscribe(b.topic, 1)
    return b


@pytest.fixture
def bystanders(node, connected, raw) -> Bystanders:
    return make_bystanders(node, connected, raw)


def offend(raw, target, data: bytes, *, connect: bool = True,
           allow: tuple[bytes, ...] = ()) -> None:
    c = raw(target=target)
    if connect:
        c.connect(uid("bad"))
    c.try_send(data)
    c.expect_closed(timeout=3.0, allow=allow)


# -- after a successful CONNECT ------------------------------------------------------------
SUB = gen_subscribe(1, "a/b", 0)
UNSUB = gen_unsubscribe(1, "a/b")

POST_CONNECT = {
    # [MQTT-2.2.3 / 1.5.5] the remaining length is at most 4 bytes
    "remaining-length-5-bytes": b"\x30\xff\xff\xff\xff\x01",
    # [MQTT-3.8.1-1] SUBSCRIBE fixed header flags must be 0010
    "subscribe-flags-0": bytes([0x80]) + SUB[1:],
    "subscribe-flags-3": bytes([0x83]) + SUB[1:],
    # [MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010
    "unsubscribe-flags-0": bytes([0xA0]) + UNSUB[1:],
    # [MQTT-3.6.1-1] PUBREL flags must be 0010
    "pubrel-flags-0": b"\x60\x02\x00\x01",
    # [MQTT-2.2.2-2] reserved flags of other packets must be 0
    "puback-flags-2": b"\x42\x02\x00\x01",
    "pingreq-flags-1": b"\xc1\x00",
    "disconnect-flags-1": b"\xe1\x00",
    # [MQTT-1.5.3-1] ill-formed UTF-8 in a topic name
    "publish-topic-invalid-utf8": gen_publish(b"a/\xff\xfe", 0, b"x"),
    "publish-topic-utf16-surrogate": gen_publish(b"a/\xed\xa0\x80", 0, b"x"),
    "publish-topic-overlong-utf8": gen_publish(b"a/\xc0\xaf", 0, b"x"),
    # [MQTT-1.5.3-2] U+0000 in a topic name
    "publish-topic-nul": gen_publish(b"a/\x00b", 0, b"x"),
    # [MQTT-3.3.2-2] no wildcards in a PUBLISH topic name
    "publish-topic-plus": gen_publish("a/+/b", 0, b"x"),
    "publish-topic-hash": gen_publish("a/#", 1, b"x", mid=1),
    # [MQTT-4.7.3-1] topic names are at least one character long
    "publish-topic-empty": gen_publish("", 0, b"x"),
    # [MQTT-3.3.1-4] QoS 3 is forbidden
    "publish-qos-3": bytes([0x36]) + gen_publish("a/b", 1, b"x", mid=1)[1:],
    # [MQTT-3.3.1-2] DUP must be 0 for QoS 0
    "publish-qos0-dup": gen_publish("a/b", 0, b"x", dup=True),
    # [MQTT-2.3.1-1] QoS > 0 packets need a non-zero packet id
    "publish-qos1-packet-id-0": gen_publish("a/b", 1, b"x", mid=0),
    "subscribe-packet-id-0": gen_subscribe(0, "a/b", 0),
    # [MQTT-3.8.3-3] SUBSCRIBE with no topic filter
    "subscribe-no-filters": fixed(0x82, struct.pack("!H", 1)),
    # [MQTT-3-8.3-4] requested QoS 3 / reserved bits set
    "subscribe-qos-3": fixed(0x82, struct.pack("!H", 1) + encode_string("a/b") + b"\x03"),
    "subscribe-reserved-bits": fixed(0x82, struct.pack("!H", 1) + encode_string("a/b") + b"\x41"),
    # [MQTT-3.10.3-2] UNSUBSCRIBE with no topic filter
    "unsubscribe-no-filters": fixed(0xA2, struct.pack("!H", 1)),
    # [MQTT-3.1.0-2] a second CONNECT is a protocol violation
    "second-connect": gen_connect("again"),
    # reserved packet types 0 and 15 (MQTT 3.1.1 table 2.1)
    "type-0": b"\x00\x00",
    "type-15": b"\xf0\x00",
    # server-to-client packets sent by a client (section 4.8: protocol violation)
    "client-sends-connack": gen_connack(0),
    "client-sends-suback": gen_suback(1, 0),
    "client-sends-unsuback": b"\xb0\x02\x00\x01",
    "client-sends-pingresp": b"\xd0\x00",
    # lengths inside the packet that overrun it
    "publish-topic-length-overrun": b"\x30\x03\x00\x05a",
    "subscribe-filter-length-overrun": b"\x82\x06\x00\x01\x00\x09ab",
    # remaining length far over mqtt.max_packet_size (1MB default): no waiting for it
    "remaining-length-256MB": b"\x30\xff\xff\xff\x7f",
}


@pytest.mark.parametrize("data", list(POST_CONNECT.values()), ids=list(POST_CONNECT))
def test_malformed_after_connect_closes_only_offender(raw, node, bystanders, data):
    offend(raw, node, data)
    bystanders.check()


# -- before / instead of a valid CONNECT ----------------------------------------------------
# A server may answer a bad CONNECT with a non-zero CONNACK before closing
# (section 3.2.2.3); what matters is that it never accepts it.
REFUSED = tuple(gen_connack(rc) for rc in range(1, 6))

PRE_CONNECT = {
    # [MQTT-3.1.0-1] the first packet must be CONNECT
    "publish-before-connect": (gen_publish("a/b", 0, b"x"), ()),
    "subscribe-before-connect": (SUB, ()),
    "pingreq-before-connect": (b"\xc0\x00", ()),
    "disconnect-before-connect": (b"\xe0\x00", ()),
    # 'G' 'E' reads as a PUBACK header with remaining length 69: send enough bytes
    # that this first "packet" is complete whatever the server's framing strategy
    "http-request": (b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: " + b"m" * 80 + b"\r\n\r\n", ()),
    # [MQTT-2.2.2-2] CONNECT fixed-header flags must be 0
    "connect-header-flags": (gen_connect(uid("c"), header_flags=0x1), REFUSED),
    # [MQTT-3.1.2-3] the reserved connect flag must be 0
    "connect-reserved-flag": (gen_connect(uid("c"), connect_flags=0x03), REFUSED),
    # [MQTT-3.1.2-13] Will QoS must be 0 if the Will Flag is 0
    "will-qos-without-will": (gen_connect(uid("c"), connect_flags=0x02 | 0x08), REFUSED),
    # [MQTT-3.1.2-14] Will QoS 3
    "will-qos-3": (gen_connect(uid("c"), will=Will("w", b"x", qos=3)), REFUSED),
    # [MQTT-3.1.2-15] Will Retain must be 0 if the Will Flag is 0
    "will-retain-without-will": (gen_connect(uid("c"), connect_flags=0x02 | 0x20), REFUSED),
    # [MQTT-4.7.3-1] an empty will topic
    "will-topic-empty": (gen_connect(uid("c"), will=Will("", b"x")), REFUSED),
    # user name flag set but no user name in the payload
    "username-flag-without-username": (gen_connect(uid("c"), connect_flags=0x82), REFUSED),
    # [MQTT-3.1.2-22] password flag without user name flag
    "password-without-username": (
        gen_connect(uid("c"), password="pw", connect_flags=0x02 | 0x40), REFUSED),
    # [MQTT-3.3.2-2 context] a will topic with a wildcard
    "will-topic-wildcard": (gen_connect(uid("c"), will=Will("w/#", b"x")), REFUSED),
    # [MQTT-1.5.3-1] ill-formed UTF-8 in the client id / will topic
    "client-id-invalid-utf8": (gen_connect(b"id\xff\xfe"), REFUSED),
    "will-topic-invalid-utf8": (gen_connect(uid("c"), will=Will(b"w/\xff", b"x")), REFUSED),
    "username-invalid-utf8": (gen_connect(uid("c"), username=b"u\xff\xfe"), REFUSED),
    # [MQTT-3.1.2-1] wrong protocol name (the server MAY answer CONNACK 1)
    "protocol-name-MQTX": (gen_connect(uid("c"), proto_name=b"MQTX"), (gen_connack(1),)),
    "protocol-name-level-mismatch-MQIsdp-4": (
        gen_connect(uid("c"), proto_name=b"MQIsdp", proto_level=4), (gen_connack(1),)),
    "protocol-name-level-mismatch-MQTT-3": (
        gen_connect(uid("c"), proto_name=b"MQTT", proto_level=3), (gen_connack(1),)),
    # CONNECT cut short: the declared lengths overrun the packet
    "connect-truncated-payload": (b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x09ab", REFUSED),
    # remaining length over 4 bytes in the very first packet
    "connect-remaining-length-5-bytes": (b"\x10\xff\xff\xff\xff\x01", ()),
}


@pytest.mark.parametrize(("data", "allow"), list(PRE_CONNECT.values()), ids=list(PRE_CONNECT))
def test_malformed_connect_phase_closes_only_offender(raw, node, bystanders, data, allow):
    offend(raw, node, data, connect=False, allow=allow)
    bystanders.check()


def test_will_topic_wildcard_not_published(raw, node, bystanders, connected):
    """A CONNECT rejected for its will must not leave a will behind."""
    base = uid("wt")
    watcher = connected()
    watcher.subscribe(f"{base}/#", 0)
    offend(raw, node, gen_connect(uid("c"), will=Will(f"{base}/#", b"x")), connect=False,
           allow=REFUSED)
    bystanders.check()
    connected().publish(f"{base}/barrier", b"b", qos=1)
    assert watcher.get().payload == b"b"


@pytest.mark.parametrize("level", [2, 6])
def test_bad_protocol_level_connack_1(raw, node, bystanders, level):
    """[MQTT-3.1.2-2] unacceptable protocol level: CONNACK 0x01, then close."""
    c = raw()
    c.send(gen_connect(uid("c"), proto_level=level, proto_name=b"MQTT"))
    c.expect_packet(gen_connack(1))
    c.expect_closed()
    bystanders.check()


def test_empty_id_persistent_connack_2(raw, node, bystanders):
    """[MQTT-3.1.3-8] identifier rejected: CONNACK 0x02, then close."""
    c = raw()
    c.send(gen_connect("", clean=False))
    c.expect_packet(gen_connack(2))
    c.expect_closed()
    bystanders.check()


def test_invalid_filter_answers_suback_0x80(raw, node, bystanders, require_starling):
    """An invalid topic filter in SUBSCRIBE is answered with SUBACK 0x80 for 3.1.1
    (Starling follows EMQ X here rather than closing); the connection stays."""
    c = raw()
    c.connect(uid("c"))
    c.send(gen_subscribe(3, "a/#/b", 1))
    c.expect_packet(gen_suback(3, 0x80))
    c.ping()
    bystanders.check()


# -- mqtt.max_packet_size --------------------------------------------------------------------
def test_packet_over_max_packet_size_closes(make_node, raw, connected):
    """mqtt.max_packet_size=1000: a PUBLISH of more than 1000 bytes closes that
    connection; one just under the limit is fine; others are unaffected."""
    n = make_node({"mqtt.max_packet_size": "1000"})
    b = make_bystanders(n, connected, raw)
    topic = uid("size")
    ok = raw(target=n)
    ok.connect(uid("ok"))
    ok.subscribe(1, topic, 0)
    small = gen_publish(topic, 0, b"s" * (990 - len(topic)))
    assert len(small) <= 1000
    ok.send(small)
    assert ok.expect_publish().payload == b"s" * (990 - len(topic))
    big = gen_publish(topic, 0, b"B" * 2000)
    offend(raw, n, big)
    b.check()


def test_connect_over_max_packet_size_closes(make_node, raw, connected):
    """A CONNECT larger than mqtt.max_packet_size is refused by closing."""
    n = make_node({"mqtt.max_packet_size": "1000"})
    b = make_bystanders(n, connected, raw)
    offend(raw, n, gen_connect(uid("c"), username="u" * 1500), connect=False)
    b.check()


def test_declared_length_over_limit_closes_without_body(make_node, raw, connected):
    """A fixed header declaring more than mqtt.max_packet_size closes the
    connection at once: the server does not wait for the body."""
    n = make_node({"mqtt.max_packet_size": "1000"})
    b = make_bystanders(n, connected, raw)
    offend(raw, n, b"\x30" + bytes([0xE9, 0x07]))  # remaining length 1001, no body
    b.check()


# -- framing: packets split across and joined within TCP segments ---------------------------
def test_packets_split_byte_by_byte(raw, connected):
    """The server reassembles packets that arrive one byte per segment."""
    topic = uid("split")
    sub = connected()
    sub.subscribe(topic, 0)
    c = raw()
    data = gen_connect(uid("c")) + gen_publish(topic, 1, b"x" * 300, mid=1)
    for i in range(len(data)):
        c.send(data[i:i + 1])
    c.expect_packet(gen_connack(0))
    c.expect_packet(b"\x40\x02\x00\x01")
    assert sub.get().payload == b"x" * 300


def test_packets_coalesced_in_one_write(raw):
    """CONNECT, SUBSCRIBE, PUBLISH and PINGREQ in a single write are all handled,
    in order."""
    topic = uid("coalesce")
    c = raw()
    c.send(gen_connect(uid("c")) + gen_subscribe(1, topic, 0) + gen_publish(topic, 0, b"me")
           + b"\xc0\x00")
    c.expect_packet(gen_connack(0))
    c.expect_packet(gen_suback(1, 0))
    nxt = [c.read(), c.read()]
    assert sorted(p.raw for p in nxt) == sorted([gen_publish(topic, 0, b"me"), b"\xd0\x00"])


def test_valid_packet_before_bad_one_in_same_write_is_handled(raw, connected, bystanders):
    """A valid PUBLISH followed in the same write by a malformed packet is
    delivered; then the connection is closed."""
    topic = uid("before-bad")
    sub = connected()
    sub.subscribe(topic, 0)
    c = raw()
    c.connect(uid("c"))
    c.send(gen_publish(topic, 0, b"good") + b"\x00\x00")
    c.expect_closed()
    assert sub.get().payload == b"good"
    bystanders.check()


# -- fuzzing: nothing a client sends may hurt anyone else -----------------------------------
_VALID_AFTER_CONNECT = [
    gen_publish("fz/a", 0, b"x"),
    gen_publish("fz/b", 1, b"y" * 20, mid=3, retain=True),
    gen_publish("fz/c", 2, b"", mid=4),
    gen_subscribe(5, [("fz/+", 1), ("fz/#", 2)]),
    gen_unsubscribe(6, ["fz/+", "q"]),
    b"\x40\x02\x00\x07", b"\x50\x02\x00\x08", b"\x62\x02\x00\x09", b"\x70\x02\x00\x0a",
    b"\xc0\x00",
]
_VALID_CONNECTS = [
    gen_connect("fz", keepalive=5),
    gen_connect("fz2", clean=False, will=Will("fz/w", b"w", qos=1, retain=True),
                username="u", password="p"),
    gen_connect("fz3", proto_level=3),
]


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf)


def test_fuzz_garbage_does_not_hurt_others(node, bystanders):
    """Random bytes and randomly corrupted valid packets, before or after CONNECT:
    whatever happens to that connection, the node keeps serving everyone else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                     min_size=1, max_size=4)
    after_connect = st.one_of(
        st.binary(min_size=1, max_size=200),
        st.builds(_mutate, st.sampled_from(_VALID_AFTER_CONNECT), edits),
    )
    first_packet = st.one_of(
        st.binary(min_size=1, max_size=200),
        st.builds(_mutate, st.sampled_from(_VALID_CONNECTS), edits),
    )

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(connect_first=st.booleans(), data=st.data())
    def one_connection(connect_first: bool, data: st.DataObject) -> None:
        payload = data.draw(after_connect if connect_first else first_packet)
        c = RawClient(node.host, node.port)
        try:
            if connect_first:
                c.connect(uid("fz"))
            c.try_send(payload)
        finally:
            c.close()
        bystanders.idle.ping(timeout=3.0)

    one_connection()
    bystanders.check()
