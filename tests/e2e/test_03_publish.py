"""PUBLISH and its QoS 0/1/2 flows in both directions.

MQTT 3.1.1 sections 3.3-3.7 and 4.3-4.6.  Raw sockets check the exact packets;
paho checks what a real client sees.
"""

from __future__ import annotations

import itertools

import pytest
from helpers.clients import MQTTv31, MQTTv311, uid
from helpers.packets import (
    PUBLISH,
    PUBREL,
    RawClient,
    gen_puback,
    gen_pubcomp,
    gen_publish,
    gen_pubrec,
    gen_pubrel,
    parse_mid,
    parse_publish,
)


def subscriber(raw, topic: str, qos: int) -> RawClient:
    c = raw()
    c.connect(uid("sub"))
    c.subscribe(1, topic, qos)
    return c


def receive_qos2_until(sub: RawClient, last: bytes) -> list[bytes]:
    """Act as a QoS 2 receiver (PUBREC each PUBLISH, PUBCOMP each PUBREL) until the
    message with payload `last` arrived and every flow is complete; return the
    payloads in arrival order.  Tolerates the server interleaving flows."""
    payloads: list[bytes] = []
    open_ids: set[int] = set()
    while not (payloads and payloads[-1] == last and not open_ids):
        pkt = sub.read()
        if pkt.type == PUBLISH:
            p = parse_publish(pkt)
            assert p.qos == 2 and p.mid is not None, str(pkt)
            payloads.append(p.payload)
            open_ids.add(p.mid)
            sub.send(gen_pubrec(p.mid))
        elif pkt.type == PUBREL:
            mid = parse_mid(pkt)
            assert pkt.flags == 0x2 and mid in open_ids, str(pkt)
            open_ids.discard(mid)
            sub.send(gen_pubcomp(mid))
        else:
            raise AssertionError(f"unexpected {pkt}")
    return payloads


def test_qos0_flow_exact_packets(raw):
    """QoS 0: the server sends nothing back to the publisher [MQTT-4.3.1-1]; the
    subscriber gets PUBLISH with QoS 0, no packet id, DUP 0 [MQTT-3.3.1-2], retain 0."""
    topic = uid("q0")
    sub = subscriber(raw, topic, 0)
    pub = raw()
    pub.connect(uid("pub"))
    pub.send(gen_publish(topic, 0, b"zero"))
    pub.ping()  # the very next packet to the publisher is the PINGRESP
    sub.expect_packet(gen_publish(topic, 0, b"zero"))


def test_qos1_flow_exact_packets(raw):
    """QoS 1: PUBACK with the publisher's packet id [MQTT-4.3.2-2]; the subscriber
    gets a QoS 1 PUBLISH with a non-zero packet id [MQTT-2.3.1-1] and DUP 0, and
    its PUBACK completes the flow (no redelivery afterwards)."""
    topic = uid("q1")
    sub = subscriber(raw, topic, 1)
    pub = raw()
    pub.connect(uid("pub"))
    pub.send(gen_publish(topic, 1, b"one", mid=0x1234))
    pub.expect_packet(gen_puback(0x1234))
    p = sub.expect_publish()
    assert (p.topic_str, p.payload, p.qos, p.dup, p.retain) == (topic, b"one", 1, False, False)
    assert p.mid and 1 <= p.mid <= 0xFFFF
    sub.send(gen_puback(p.mid))
    sub.ping()


def test_qos2_inbound_flow(raw):
    """QoS 2 from a client: PUBLISH -> PUBREC(id) [MQTT-4.3.3-2], PUBREL(id) ->
    PUBCOMP(id); the message reaches the subscriber."""
    topic = uid("q2in")
    sub = subscriber(raw, topic, 0)
    pub = raw()
    pub.connect(uid("pub"))
    pub.send(gen_publish(topic, 2, b"two", mid=0x0102))
    pub.expect_packet(gen_pubrec(0x0102))
    pub.send(gen_pubrel(0x0102))
    pub.expect_packet(gen_pubcomp(0x0102))
    sub.expect_packet(gen_publish(topic, 0, b"two"))


def test_qos2_outbound_flow(raw, connected):
    """QoS 2 to a client: PUBLISH(qos 2, id) -> client PUBREC -> server PUBREL with
    flags 0010 [MQTT-3.6.1-1] and the same id [MQTT-4.3.3-1] -> client PUBCOMP."""
    topic = uid("q2out")
    sub = subscriber(raw, topic, 2)
    pub = connected()
    pub.publish(topic, b"two", qos=2)
    p = sub.expect_publish()
    assert (p.topic_str, p.payload, p.qos, p.dup) == (topic, b"two", 2, False)
    sub.send(gen_pubrec(p.mid))
    sub.expect_packet(gen_pubrel(p.mid))
    sub.send(gen_pubcomp(p.mid))
    sub.ping()


def test_qos2_exactly_once_on_repeated_publish(raw):
    """[MQTT-4.3.3-2] until PUBREL, a re-sent PUBLISH with the same packet id (DUP=1)
    is answered with PUBREC again but must not be delivered a second time."""
    topic = uid("q2dup")
    sub = subscriber(raw, topic, 2)
    pub = raw()
    pub.connect(uid("pub"))
    pub.send(gen_publish(topic, 2, b"once", mid=5))
    pub.expect_packet(gen_pubrec(5))
    pub.send(gen_publish(topic, 2, b"once", mid=5, dup=True))
    pub.expect_packet(gen_pubrec(5))
    pub.send(gen_pubrel(5))
    pub.expect_packet(gen_pubcomp(5))
    # barrier: a later QoS 2 message from the same publisher on the same topic
    pub.send(gen_publish(topic, 2, b"barrier", mid=6))
    pub.expect_packet(gen_pubrec(6))
    pub.send(gen_pubrel(6))
    pub.expect_packet(gen_pubcomp(6))
    payloads = receive_qos2_until(sub, b"barrier")
    assert payloads == [b"once", b"barrier"]


def test_qos2_packet_id_reusable_after_pubcomp(raw):
    """After PUBCOMP the same packet id starts a new publication [MQTT-4.3.3-2]."""
    topic = uid("q2reuse")
    sub = subscriber(raw, topic, 0)
    pub = raw()
    pub.connect(uid("pub"))
    for payload in (b"first", b"second"):
        pub.send(gen_publish(topic, 2, payload, mid=9))
        pub.expect_packet(gen_pubrec(9))
        pub.send(gen_pubrel(9))
        pub.expect_packet(gen_pubcomp(9))
    sub.expect_packet(gen_publish(topic, 0, b"first"))
    sub.expect_packet(gen_publish(topic, 0, b"second"))


def test_pubrel_for_unknown_id_gets_pubcomp(raw):
    """The receiver MUST respond to PUBREL with PUBCOMP carrying the same id
    (MQTT 3.1.1 section 4.3.3), e.g. for a PUBREL re-sent after a PUBCOMP was lost."""
    c = raw()
    c.connect(uid("c"))
    c.send(gen_pubrel(4242))
    c.expect_packet(gen_pubcomp(4242))
    c.ping()


@pytest.mark.parametrize("qos", [1, 2])
def test_publish_without_subscribers_completes_flow(raw, qos):
    """QoS 1/2 flows complete even when nobody is subscribed."""
    c = raw()
    c.connect(uid("c"))
    topic = uid("nobody")
    c.send(gen_publish(topic, qos, b"x", mid=1))
    if qos == 1:
        c.expect_packet(gen_puback(1))
    else:
        c.expect_packet(gen_pubrec(1))
        c.send(gen_pubrel(1))
        c.expect_packet(gen_pubcomp(1))


def test_incoming_dup_not_propagated(raw, connected):
    """[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not propagated: the
    first delivery to a subscriber has DUP 0."""
    topic = uid("dupin")
    sub = subscriber(raw, topic, 1)
    pub = raw()
    pub.connect(uid("pub"))
    pub.send(gen_publish(topic, 1, b"d", mid=3, dup=True))
    pub.expect_packet(gen_puback(3))
    p = sub.expect_publish()
    assert (p.payload, p.qos, p.dup) == (b"d", 1, False)


@pytest.mark.parametrize(("pub_qos", "sub_qos"), list(itertools.product([0, 1, 2], repeat=2)))
def test_delivered_qos_is_minimum(connected, pub_qos, sub_qos):
    """[MQTT-3.8.4-6 / section 3.8.4] delivered QoS = min(published QoS, granted QoS)."""
    topic = uid("minqos")
    sub = connected()
    assert sub.subscribe(topic, sub_qos) == [sub_qos]
    pub = connected()
    pub.publish(topic, b"m", qos=pub_qos)
    m = sub.get()
    assert (m.payload, m.qos) == (b"m", min(pub_qos, sub_qos))


@pytest.mark.parametrize("qos", [1, 2])
def test_order_kept_per_topic(connected, qos):
    """Section 4.6: messages on one topic from one publisher reach a subscriber in
    the order they were published (200 numbered messages)."""
    topic = uid("order")
    sub = connected()
    sub.subscribe(topic, qos)
    pub = connected()
    n = 200
    infos = [pub.client.publish(topic, str(i).encode(), qos) for i in range(n)]
    for info in infos:
        info.wait_for_publish(10)
    got = [int(m.payload) for m in sub.get_many(n, timeout=15)]
    assert got == list(range(n))


def test_outbound_packet_ids_unique_while_inflight(raw, connected):
    """[MQTT-2.3.1-2][MQTT-2.3.1-4] each new QoS 1 PUBLISH to a client uses a
    currently unused, non-zero packet id."""
    topic = uid("ids")
    sub = subscriber(raw, topic, 1)
    pub = connected()
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos=1)
    pubs = [sub.expect_publish() for _ in range(10)]
    mids = [p.mid for p in pubs]
    assert [p.payload for p in pubs] == [str(i).encode() for i in range(10)]
    assert 0 not in mids and len(set(mids)) == 10, mids
    for m in mids:
        sub.send(gen_puback(m))
    sub.ping()


@pytest.mark.parametrize("payload", [b"", bytes(range(256)), b"\x00" * 10,
                                     b"x" * 300_000],
                         ids=["empty", "all-bytes", "nuls", "300k"])
def test_payload_round_trip(connected, payload):
    """Payloads are opaque bytes of any length (section 3.3.3), including empty."""
    topic = uid("payload")
    sub = connected()
    sub.subscribe(topic, 1)
    pub = connected()
    pub.publish(topic, payload, qos=1)
    assert sub.get().payload == payload


def test_utf8_topic_round_trip(connected):
    """Topics are UTF-8 (section 1.5.3): multi-byte characters survive unchanged."""
    topic = uid("utf8") + "/h\u00e9llo/\u6f22\u5b57/\U0001F600"
    sub = connected()
    sub.subscribe(topic, 0)
    pub = connected()
    pub.publish(topic, b"u")
    m = sub.get()
    assert (m.topic, m.payload) == (topic, b"u")


@pytest.mark.parametrize("protocol", [MQTTv31, MQTTv311], ids=["v31", "v311"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_pub_sub_each_version(paho_client, protocol, qos):
    """Both protocol versions publish and receive at every QoS, publisher and
    subscriber on different versions."""
    other = MQTTv311 if protocol == MQTTv31 else MQTTv31
    topic = uid("ver")
    sub = paho_client(protocol=protocol)
    sub.connect()
    sub.subscribe(topic, qos)
    pub = paho_client(protocol=other)
    pub.connect()
    pub.publish(topic, b"v", qos=qos)
    m = sub.get()
    assert (m.topic, m.payload, m.qos) == (topic, b"v", qos)


def test_fan_out_to_many_subscribers(connected):
    """One publication reaches every subscriber of the topic."""
    topic = uid("fan")
    subs = [connected() for _ in range(5)]
    for s in subs:
        s.subscribe(topic, 1)
    pub = connected()
    pub.publish(topic, b"all", qos=1)
    for s in subs:
        assert s.get().payload == b"all"



def test_slow_subscriber_does_not_stall_others(raw, connected):
    """A subscriber that stops reading its socket must not hold back the publisher
    or other subscribers.  10 MB of QoS 0 traffic on a shared topic, paced so the
    reading subscriber never falls behind by more than 100 KB: it must get every
    message, in order, while the stuck reader (receive buffer shrunk so the
    server really has to hold back) gets nothing further."""
    topic = uid("slow")
    stuck = raw(rcvbuf=4096)
    stuck.connect(uid("stuck"))
    stuck.subscribe(1, topic, 0)  # ...and never reads again
    fast = connected()
    fast.subscribe(topic, 0)
    pub = raw()
    pub.connect(uid("pub"))
    chunks, per_chunk, pad = 100, 100, b"p" * 1000
    got: list[int] = []
    for chunk in range(chunks):
        base = chunk * per_chunk
        pub.send(b"".join(gen_publish(topic, 0, b"%d:" % (base + i) + pad)
                          for i in range(per_chunk)))
        got += [int(m.payload.split(b":")[0]) for m in fast.get_many(per_chunk, timeout=5.0)]
    assert got == list(range(chunks * per_chunk))
    pub.ping()
