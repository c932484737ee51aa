"""Sessions: clean vs persistent, session present, offline queueing, redelivery
with DUP, in-flight window, retry, expiry.

MQTT 3.1.1 sections 3.1.2.4, 3.2.2.2, 4.1, 4.4.
"""

from __future__ import annotations

import time

import pytest
from helpers.clients import MQTTv31, MQTTv311, uid
from helpers.packets import (
    PUBLISH,
    RawClient,
    gen_connack,
    gen_connect,
    gen_disconnect,
    gen_puback,
    gen_pubcomp,
    gen_publish,
    gen_pubrec,
    gen_pubrel,
    gen_suback,
    gen_subscribe,
)


def go_offline(c: RawClient) -> None:
    """Clean DISCONNECT, then wait until the server has closed the connection so the
    session is certainly offline before anything is published."""
    c.send(gen_disconnect())
    c.expect_closed()
    c.close()


def reconnect(raw, cid: str, session_present: bool, target=None, clean: bool = False,
              **kw) -> RawClient:
    c = raw(target=target)
    c.send(gen_connect(cid, clean=clean, **kw))
    c.expect_packet(gen_connack(0, session_present), what="CONNACK")
    return c


def test_session_present_flag(raw):
    """[MQTT-3.2.2-3] new persistent session: session present 0; [MQTT-3.2.2-2]
    resumed: 1; [MQTT-3.2.2-1] CleanSession=1: 0; and a clean session discards the
    stored one [MQTT-3.1.2-6], so the next persistent connect gets 0 again."""
    cid = uid("sp")
    go_offline(reconnect(raw, cid, False))
    go_offline(reconnect(raw, cid, True))
    go_offline(reconnect(raw, cid, True))
    go_offline(reconnect(raw, cid, False, clean=True))
    go_offline(reconnect(raw, cid, False))


def test_clean_session_never_present(raw):
    """[MQTT-3.2.2-1] CleanSession=1 always answers session present 0."""
    cid = uid("clean")
    for _ in range(2):
        go_offline(reconnect(raw, cid, False, clean=True))


def test_persistent_session_keeps_subscriptions_and_queues(raw, connected):
    """[MQTT-3.1.2-4][MQTT-3.1.2-5] a CleanSession=0 session keeps its subscriptions
    and stores QoS 1/2 messages published while it is offline; after reconnecting
    (session present 1) they are delivered without re-subscribing."""
    cid, base = uid("pers"), uid("pers")
    c = reconnect(raw, cid, False)
    c.send(gen_subscribe(1, [(f"{base}/q1", 1), (f"{base}/q2", 2)]))
    c.expect_packet(gen_suback(1, [1, 2]))
    go_offline(c)
    pub = connected()
    pub.publish(f"{base}/q1", b"one", qos=1)
    pub.publish(f"{base}/q2", b"two", qos=2)
    c = reconnect(raw, cid, True)
    p1 = c.expect_publish()
    assert (p1.topic_str, p1.payload, p1.qos) == (f"{base}/q1", b"one", 1)
    c.send(gen_puback(p1.mid))
    p2 = c.expect_publish()
    assert (p2.topic_str, p2.payload, p2.qos) == (f"{base}/q2", b"two", 2)
    c.send(gen_pubrec(p2.mid))
    c.expect_packet(gen_pubrel(p2.mid))
    c.send(gen_pubcomp(p2.mid))
    # the subscription is live again, too
    pub.publish(f"{base}/q1", b"live", qos=1)
    p3 = c.expect_publish()
    assert (p3.payload, p3.dup) == (b"live", False)
    c.send(gen_puback(p3.mid))


def test_queued_messages_keep_order(raw, connected):
    """Messages queued for an offline session are delivered in publish order."""
    cid, topic = uid("order"), uid("order")
    c = reconnect(raw, cid, False)
    c.subscribe(1, topic, 1)
    go_offline(c)
    pub = connected()
    for i in range(20):
        pub.publish(topic, str(i).encode(), qos=1)
    c = reconnect(raw, cid, True)
    got = []
    for _ in range(20):
        p = c.expect_publish()
        got.append(int(p.payload))
        c.send(gen_puback(p.mid))
    assert got == list(range(20))


def test_qos0_queued_offline_by_default(raw, connected, require_starling):
    """session.mqueue_store_qos0=true (default, as EMQ X): QoS 0 messages are also
    queued for an offline persistent session (3.1.1 allows this, section 3.1.2.4)."""
    cid, topic = uid("q0q"), uid("q0q")
    c = reconnect(raw, cid, False)
    c.subscribe(1, topic, 0)
    go_offline(c)
    pub = connected()
    pub.publish(topic, b"zero", qos=0)
    pub.publish(topic, b"barrier", qos=1)
    c = reconnect(raw, cid, True)
    c.expect_packet(gen_publish(topic, 0, b"zero"))
    c.expect_packet(gen_publish(topic, 0, b"barrier"))


def test_qos0_not_queued_when_disabled(make_node, raw, connected, require_starling):
    """session.mqueue_store_qos0=false: QoS 0 publications are not queued while
    the session is offline, QoS 1 still are."""
    n = make_node({"session.mqueue_store_qos0": "false"})
    cid, topic = uid("q0n"), uid("q0n")
    c = reconnect(raw, cid, False, target=n)
    c.subscribe(1, topic, 1)
    go_offline(c)
    pub = connected(target=n)
    pub.publish(topic, b"zero", qos=0)
    pub.publish(topic, b"one", qos=1)
    c = reconnect(raw, cid, True, target=n)
    p = c.expect_publish()
    assert (p.payload, p.qos) == (b"one", 1)


def test_clean_session_discards_state(raw, connected):
    """[MQTT-3.1.2-6] CleanSession=1 discards the previous session: queued messages
    are not delivered and the old subscriptions are gone afterwards."""
    cid, base = uid("discard"), uid("discard")
    c = reconnect(raw, cid, False)
    c.subscribe(1, f"{base}/old", 1)
    go_offline(c)
    pub = connected()
    pub.publish(f"{base}/old", b"queued", qos=1)
    c = reconnect(raw, cid, False, clean=True)
    c.subscribe(2, f"{base}/barrier", 1)
    pub.publish(f"{base}/barrier", b"b1", qos=1)
    p = c.expect_publish()
    assert p.payload == b"b1", f"queued message of the discarded session delivered: {p}"
    c.send(gen_puback(p.mid))
    go_offline(c)
    # a new persistent session: nothing from before
    c = reconnect(raw, cid, False)
    c.subscribe(3, f"{base}/barrier2", 1)
    pub.publish(f"{base}/old", b"after", qos=1)
    pub.publish(f"{base}/barrier2", b"b2", qos=1)
    p = c.expect_publish()
    assert p.payload == b"b2", f"old subscription survived a clean session: {p}"


@pytest.mark.parametrize("protocol", [MQTTv31, MQTTv311], ids=["v31", "v311"])
def test_persistent_session_paho(paho_client, connected, protocol):
    """A real client (each version) with clean_session=False gets its offline QoS 1
    message after reconnecting; session_present=True for 3.1.1 (MQTT 3.1 has no
    session present flag: that CONNACK byte is reserved, so it is not checked)."""
    cid, topic = uid("pp"), uid("pp")
    c = paho_client(client_id=cid, protocol=protocol, clean_session=False)
    assert c.connect() == (0, False)
    c.subscribe(topic, 1)
    c.close()
    connected().publish(topic, b"while-away", qos=1)
    c2 = paho_client(client_id=cid, protocol=protocol, clean_session=False)
    _rc, session_present = c2.connect()
    if protocol == MQTTv311:
        assert session_present
    m = c2.get()
    assert (m.topic, m.payload, m.qos) == (topic, b"while-away", 1)


def test_unacked_qos1_resent_with_dup(raw, connected):
    """[MQTT-4.4.0-1] on reconnect with CleanSession=0 the server re-sends unacked
    QoS 1 PUBLISHes with the original packet id and [MQTT-3.3.1-1] DUP=1."""
    cid, topic = uid("dup1"), uid("dup1")
    c = reconnect(raw, cid, False)
    c.subscribe(1, topic, 1)
    connected().publish(topic, b"unacked", qos=1)
    first = c.expect_publish()
    assert (first.payload, first.dup) == (b"unacked", False)
    c.close()  # no PUBACK, no DISCONNECT
    c = reconnect(raw, cid, True)
    again = c.expect_publish()
    assert (again.topic_str, again.payload, again.qos, again.mid, again.dup) == \
        (topic, b"unacked", 1, first.mid, True)
    c.send(gen_puback(again.mid))
    c.ping()


def test_unacked_qos2_publish_resent_with_dup(raw, connected):
    """[MQTT-4.4.0-1] an unacknowledged QoS 2 PUBLISH (no PUBREC) is re-sent with
    DUP=1 and the same id after reconnecting."""
    cid, topic = uid("dup2"), uid("dup2")
    c = reconnect(raw, cid, False)
    c.subscribe(1, topic, 2)
    connected().publish(topic, b"q2", qos=2)
    first = c.expect_publish()
    c.close()
    c = reconnect(raw, cid, True)
    again = c.expect_publish()
    assert (again.payload, again.qos, again.mid, again.dup) == (b"q2", 2, first.mid, True)
    c.send(gen_pubrec(again.mid))
    c.expect_packet(gen_pubrel(again.mid))
    c.send(gen_pubcomp(again.mid))


def test_unacked_pubrel_resent(raw, connected):
    """[MQTT-4.4.0-1] a PUBREL not answered with PUBCOMP is re-sent (same id, and
    the PUBLISH is not re-sent) after reconnecting."""
    cid, topic = uid("rel"), uid("rel")
    c = reconnect(raw, cid, False)
    c.subscribe(1, topic, 2)
    connected().publish(topic, b"q2", qos=2)
    p = c.expect_publish()
    c.send(gen_pubrec(p.mid))
    c.expect_packet(gen_pubrel(p.mid))
    c.close()
    c = reconnect(raw, cid, True)
    c.expect_packet(gen_pubrel(p.mid))
    c.send(gen_pubcomp(p.mid))
    c.ping()


def test_inbound_qos2_completed_after_reconnect(raw, connected):
    """A publisher's QoS 2 flow survives its reconnect: PUBREL sent on the new
    connection gets PUBCOMP, and the message is delivered exactly once."""
    cid, topic = uid("in2"), uid("in2")
    sub = connected()
    sub.subscribe(topic, 2)
    c = reconnect(raw, cid, False)
    c.send(gen_publish(topic, 2, b"exactly-once", mid=7))
    c.expect_packet(gen_pubrec(7))
    c.close()
    c = reconnect(raw, cid, True)
    c.send(gen_pubrel(7))
    c.expect_packet(gen_pubcomp(7))
    c.send(gen_publish(topic, 2, b"barrier", mid=8))
    c.expect_packet(gen_pubrec(8))
    c.send(gen_pubrel(8))
    c.expect_packet(gen_pubcomp(8))
    got = [sub.get().payload, sub.get().payload]
    assert got == [b"exactly-once", b"barrier"]


def test_takeover_keeps_persistent_session(raw, connected):
    """[MQTT-3.1.4-2] takeover of a live persistent session: the new connection
    resumes it (session present 1) with its subscriptions."""
    cid, topic = uid("tk"), uid("tk")
    a = reconnect(raw, cid, False)
    a.subscribe(1, topic, 1)
    b = reconnect(raw, cid, True)
    a.expect_closed()
    connected().publish(topic, b"to-b", qos=1)
    p = b.expect_publish()
    assert p.payload == b"to-b"
    b.send(gen_puback(p.mid))


def test_max_inflight_window(make_node, raw, connected):
    """session.max_inflight=2: at most two unacked QoS 1 messages are in flight;
    each PUBACK releases the next, and order is kept."""
    n = make_node({"session.max_inflight": "2"})
    topic = uid("inflight")
    c = raw(target=n)
    c.connect(uid("c"))
    c.subscribe(1, topic, 1)
    pub = connected(target=n)
    for i in range(5):
        pub.publish(topic, str(i).encode(), qos=1)
    window = [c.expect_publish(), c.expect_publish()]
    assert [p.payload for p in window] == [b"0", b"1"]
    # no event can show that a third message is being held back: bounded wait
    c.expect_nothing(0.5)
    got = [p.payload for p in window]
    pending = list(window)
    while len(got) < 5 or pending:
        c.send(gen_puback(pending.pop(0).mid))
        if len(got) < 5:
            p = c.expect_publish()
            got.append(p.payload)
            pending.append(p)
    assert got == [str(i).encode() for i in range(5)]


def test_max_mqueue_len_drops(make_node, raw, connected, require_starling):
    """session.max_mqueue_len=5: an offline session queues at most 5 messages.
    Starling (like EMQ X) drops the oldest when the queue is full."""
    n = make_node({"session.max_mqueue_len": "5"})
    cid, topic = uid("mq"), uid("mq")
    c = reconnect(raw, cid, False, target=n)
    c.subscribe(1, topic, 1)
    go_offline(c)
    pub = connected(target=n)
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos=1)
    c = reconnect(raw, cid, True, target=n)
    got = []
    for _ in range(5):
        p = c.expect_publish()
        got.append(p.payload)
        c.send(gen_puback(p.mid))
    pub.publish(topic, b"barrier", qos=1)
    p = c.expect_publish()
    assert p.payload == b"barrier", f"more than 5 messages were queued: {[*got, p.payload]}"
    assert got == [str(i).encode() for i in range(5, 10)]


def test_retry_interval_resends_unacked(make_node, raw, connected, require_starling):
    """session.retry_interval=1s: an unacknowledged QoS 1 PUBLISH is re-sent on the
    same connection (DUP=1, same id) after about a second (EMQ X behaviour)."""
    n = make_node({"session.retry_interval": "1s"})
    topic = uid("retry")
    c = raw(target=n)
    c.connect(uid("c"))
    c.subscribe(1, topic, 1)
    connected(target=n).publish(topic, b"r", qos=1)
    first = c.expect_publish()
    t0 = time.monotonic()
    again = c.expect_publish(timeout=4.0)
    assert time.monotonic() - t0 >= 0.5
    assert (again.payload, again.mid, again.dup) == (b"r", first.mid, True)
    c.send(gen_puback(again.mid))


def test_session_expiry(make_node, raw, connected, require_starling):
    """session.expiry_interval=1s: a persistent session survives a quick reconnect
    but is gone (session present 0, no queued messages) after it expires."""
    n = make_node({"session.expiry_interval": "1s"})
    cid, topic = uid("exp"), uid("exp")
    c = reconnect(raw, cid, False, target=n)
    c.subscribe(1, topic, 1)
    go_offline(c)
    c = reconnect(raw, cid, True, target=n)
    go_offline(c)
    connected(target=n).publish(topic, b"lost", qos=1)
    time.sleep(2.0)  # nothing observable marks the expiry; wait past it once
    c = reconnect(raw, cid, False, target=n)
    c.send(gen_subscribe(2, uid("other"), 0))
    pkt = c.read()
    assert pkt.type != PUBLISH, f"message of an expired session delivered: {pkt}"


def test_max_awaiting_rel_drops_excess(make_node, raw, connected, require_starling):
    """session.max_awaiting_rel=2: with two incoming QoS 2 messages awaiting PUBREL
    a third is dropped (not delivered); the connection stays usable and PUBREL is
    still answered with PUBCOMP."""
    n = make_node({"session.max_awaiting_rel": "2"})
    topic = uid("awrel")
    sub = connected(target=n)
    sub.subscribe(topic, 0)
    c = raw(target=n)
    c.connect(uid("c"))
    for mid in (1, 2):
        c.send(gen_publish(topic, 2, f"m{mid}", mid=mid))
        c.expect_packet(gen_pubrec(mid))
    c.send(gen_publish(topic, 2, b"m3", mid=3))
    c.send(b"\xc0\x00")
    got_pubrec3 = False
    while True:  # a PUBREC for the dropped message is allowed (3.x has no error code)
        pkt = c.read()
        if pkt.raw == b"\xd0\x00":
            break
        assert pkt.raw == gen_pubrec(3), str(pkt)
        got_pubrec3 = True
    for mid in (1, 2) + ((3,) if got_pubrec3 else ()):
        c.send(gen_pubrel(mid))
        c.expect_packet(gen_pubcomp(mid))
    c.send(gen_publish(topic, 2, b"barrier", mid=4))
    c.expect_packet(gen_pubrec(4))
    c.send(gen_pubrel(4))
    c.expect_packet(gen_pubcomp(4))
    assert [m.payload for m in sub.get_many(3)] == [b"m1", b"m2", b"barrier"]


def test_inflight_and_queued_redelivered_in_order(raw, connected, require_starling):
    """40 QoS 1 messages to a persistent subscriber that acks none: 32 (the default
    session.max_inflight) are in flight, the rest queued.  After reconnecting,
    the in-flight ones come again with DUP=1 [MQTT-4.4.0-1] and then the queued
    ones with DUP=0, all in publish order."""
    cid, topic = uid("infl"), uid("infl")
    c = reconnect(raw, cid, False)
    c.subscribe(1, topic, 1)
    pub = raw()
    pub.connect(uid("pub"))
    for i in range(40):
        pub.send(gen_publish(topic, 1, str(i).encode(), mid=i + 1))
        pub.expect_packet(gen_puback(i + 1))
    first = [c.expect_publish() for _ in range(32)]
    assert [int(p.payload) for p in first] == list(range(32))
    c.close()
    c = reconnect(raw, cid, True)
    got = []
    for _ in range(40):
        p = c.expect_publish()
        got.append((int(p.payload), p.dup))
        c.send(gen_puback(p.mid))
    assert got == [(i, i < 32) for i in range(40)]
