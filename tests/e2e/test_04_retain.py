"""Retained messages (MQTT 3.1.1 section 3.3.1.3).

A new subscription's retained messages are sent right after its SUBACK, so a
second subscription made afterwards on the same connection (to a topic with a
known retained message) serves as a barrier when proving that nothing else is
retained.
"""

from __future__ import annotations

from helpers.clients import PahoClient, uid
from helpers.packets import (
    Publish,
    RawClient,
    gen_puback,
    gen_publish,
    gen_suback,
    gen_subscribe,
    parse_publish,
)


def retained_on_subscribe(c: RawClient, mid: int, filt: str, qos: int,
                          barrier_pub: PahoClient) -> list[Publish]:
    """Subscribe `c` to `filt` and collect the PUBLISHes that arrive before a
    barrier (a freshly retained message on another unique topic, subscribed
    next)."""
    barrier = uid("barrier")
    barrier_pub.publish(barrier, b"B", qos=1, retain=True)
    c.send(gen_subscribe(mid, filt, qos))
    got = []
    # SUBACK first, then any retained messages for the filter
    pkt = c.read()
    assert pkt.raw == gen_suback(mid, qos), str(pkt)
    c.send(gen_subscribe(mid + 1, barrier, 0))
    while True:
        pkt = c.read()
        if pkt.raw == gen_suback(mid + 1, 0):
            continue
        p = parse_publish(pkt)
        if p.topic_str == barrier:
            assert p.retain and p.payload == b"B"
            break
        got.append(p)
        if p.qos == 1:
            c.send(gen_puback(p.mid))
    barrier_pub.publish(barrier, b"", qos=1, retain=True)
    return got


def test_retained_sent_on_subscribe_with_retain_flag(raw, connected):
    """[MQTT-3.3.1-5] a retained message is stored and [MQTT-3.3.1-6] sent to a
    later subscriber, with RETAIN=1 because it results from a new subscription
    [MQTT-3.3.1-8]."""
    topic = uid("ret")
    pub = connected()
    pub.publish(topic, b"kept", qos=1, retain=True)
    c = raw()
    c.connect(uid("c"))
    c.send(gen_subscribe(1, topic, 0))
    c.expect_packet(gen_suback(1, 0))
    c.expect_packet(gen_publish(topic, 0, b"kept", retain=True))
    pub.publish(topic, b"", qos=1, retain=True)


def test_live_delivery_has_retain_flag_0(raw, connected):
    """[MQTT-3.3.1-9] a message that matches an established subscription is sent
    with RETAIN=0 even if it was published with RETAIN=1."""
    topic = uid("ret-live")
    c = raw()
    c.connect(uid("c"))
    c.subscribe(1, topic, 0)
    pub = connected()
    pub.publish(topic, b"live", qos=1, retain=True)
    c.expect_packet(gen_publish(topic, 0, b"live", retain=False))
    pub.publish(topic, b"", qos=1, retain=True)


def test_retained_replaced_by_newer(raw, connected):
    """[MQTT-3.3.1-5] a new retained message replaces the one stored for the topic."""
    topic = uid("ret-repl")
    pub = connected()
    pub.publish(topic, b"old", qos=1, retain=True)
    pub.publish(topic, b"new", qos=1, retain=True)
    c = raw()
    c.connect(uid("c"))
    got = retained_on_subscribe(c, 1, topic, 0, pub)
    assert [(p.topic_str, p.payload, p.retain) for p in got] == [(topic, b"new", True)]
    pub.publish(topic, b"", qos=1, retain=True)


def test_empty_retained_payload_deletes(raw, connected):
    """[MQTT-3.3.1-10] a zero-byte retained message removes the retained message
    and [MQTT-3.3.1-11] is not itself stored."""
    topic = uid("ret-del")
    pub = connected()
    pub.publish(topic, b"doomed", qos=1, retain=True)
    pub.publish(topic, b"", qos=1, retain=True)
    c = raw()
    c.connect(uid("c"))
    assert retained_on_subscribe(c, 1, topic, 0, pub) == []


def test_empty_retained_payload_delivered_to_existing_subscribers(raw, connected):
    """[MQTT-3.3.1-10] the zero-byte retained message is processed as normal and
    sent to current subscribers (with RETAIN=0 [MQTT-3.3.1-9])."""
    topic = uid("ret-del-live")
    c = raw()
    c.connect(uid("c"))
    c.subscribe(1, topic, 0)
    pub = connected()
    pub.publish(topic, b"", qos=1, retain=True)
    c.expect_packet(gen_publish(topic, 0, b""))


def test_non_retained_publish_does_not_replace(raw, connected):
    """[MQTT-3.3.1-12] a RETAIN=0 publication neither stores nor removes the
    retained message of its topic."""
    topic = uid("ret-keep")
    pub = connected()
    pub.publish(topic, b"retained", qos=1, retain=True)
    pub.publish(topic, b"transient", qos=1, retain=False)
    pub.publish(topic, b"", qos=1, retain=False)
    c = raw()
    c.connect(uid("c"))
    got = retained_on_subscribe(c, 1, topic, 0, pub)
    assert [p.payload for p in got] == [b"retained"]
    pub.publish(topic, b"", qos=1, retain=True)


def test_retained_matched_by_wildcards(raw, connected):
    """Retained messages of every topic matching a wildcard filter are sent."""
    base = uid("ret-wild")
    pub = connected()
    topics = [f"{base}/a", f"{base}/b/c", f"{base}/b/d"]
    for t in topics:
        pub.publish(t, t.encode(), qos=1, retain=True)
    c = raw()
    c.connect(uid("c"))
    got = retained_on_subscribe(c, 1, f"{base}/#", 0, pub)
    assert sorted(p.topic_str for p in got) == sorted(topics)
    assert all(p.retain and p.payload == p.topic for p in got)
    c2 = raw()
    c2.connect(uid("c"))
    got = retained_on_subscribe(c2, 1, f"{base}/b/+", 0, pub)
    assert sorted(p.topic_str for p in got) == [f"{base}/b/c", f"{base}/b/d"]
    for t in topics:
        pub.publish(t, b"", qos=1, retain=True)


def test_retained_qos_is_minimum(raw, connected):
    """A retained QoS 2 message is sent at min(stored QoS, granted QoS)."""
    topic = uid("ret-qos")
    pub = connected()
    pub.publish(topic, b"q2", qos=2, retain=True)
    for granted in (0, 1, 2):
        c = raw()
        c.connect(uid("c"))
        c.send(gen_subscribe(1, topic, granted))
        c.expect_packet(gen_suback(1, granted))
        p = c.expect_publish()
        assert (p.payload, p.qos, p.retain) == (b"q2", granted, True)
        c.close()
    pub.publish(topic, b"", qos=1, retain=True)


def test_resubscribe_resends_retained(raw, connected):
    """[MQTT-3.8.4-3] re-subscribing to an identical filter re-sends matching
    retained messages."""
    topic = uid("ret-resub")
    pub = connected()
    pub.publish(topic, b"again", qos=1, retain=True)
    c = raw()
    c.connect(uid("c"))
    for mid in (1, 2):
        c.send(gen_subscribe(mid, topic, 0))
        c.expect_packet(gen_suback(mid, 0))
        c.expect_packet(gen_publish(topic, 0, b"again", retain=True))
    pub.publish(topic, b"", qos=1, retain=True)


def test_retained_paho_flag(connected):
    """A real client sees msg.retain True for the stored copy and False live."""
    topic = uid("ret-paho")
    pub = connected()
    pub.publish(topic, b"stored", qos=1, retain=True)
    sub = connected()
    sub.subscribe(topic, 1)
    m = sub.get()
    assert (m.payload, m.retain) == (b"stored", True)
    pub.publish(topic, b"live", qos=1, retain=True)
    m = sub.get()
    assert (m.payload, m.retain) == (b"live", False)
    pub.publish(topic, b"", qos=1, retain=True)


def test_retain_unavailable(make_node, raw, connected, require_starling):
    """mqtt.retain_available=false: retained publications are delivered live but
    not stored, so a later subscriber gets no retained copy."""
    n = make_node({"mqtt.retain_available": "false"})
    topic = uid("noret")
    pub = connected(target=n)
    pub.publish(topic, b"r", qos=1, retain=True)
    c = raw(target=n)
    c.connect(uid("c"))
    c.subscribe(1, topic, 0)
    pub.publish(topic, b"live", qos=1)
    c.expect_packet(gen_publish(topic, 0, b"live"))
