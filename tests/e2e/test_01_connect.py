"""CONNECT / CONNACK, client identifiers, keepalive and session takeover.

MQTT 3.1.1 section 3.1 and 3.2; conformance ids in the test docstrings."""

from __future__ import annotations

import time

import pytest
from helpers.clients import MQTTv31, MQTTv311, uid
from helpers.packets import (
    ConnectionClosed,
    Will,
    gen_connack,
    gen_connect,
    gen_disconnect,
    gen_pingreq,
    gen_pingresp,
    gen_publish,
)


@pytest.mark.parametrize("level", [3, 4], ids=["MQIsdp-3", "MQTT-4"])
def test_connect_accepted_raw(raw, level):
    """[MQTT-3.1.2-2] level 3 ("MQIsdp") and 4 ("MQTT") are supported; CONNACK is
    exactly 20 02 00 00 for a clean session [MQTT-3.2.2-1]."""
    c = raw()
    c.send(gen_connect(uid("c"), proto_level=level))
    c.expect_packet(b"\x20\x02\x00\x00")
    c.ping()


@pytest.mark.parametrize("protocol", [MQTTv31, MQTTv311], ids=["v31", "v311"])
def test_connect_paho(paho_client, protocol):
    """A real client (paho) connects with each protocol version and stays usable."""
    c = paho_client(protocol=protocol)
    assert c.connect() == (0, False)
    topic = uid("connect")
    assert c.subscribe(topic, 1) == [1]
    c.publish(topic, b"hello", qos=1)
    assert c.get().payload == b"hello"


@pytest.mark.parametrize("level", [2, 6], ids=["level2", "level6"])
def test_unsupported_protocol_level_connack_1(raw, level):
    """[MQTT-3.1.2-2] an unsupported protocol level gets CONNACK 0x01 (unacceptable
    protocol version), session present 0 [MQTT-3.2.2-4], then the server closes
    [MQTT-3.2.2-5]."""
    c = raw()
    c.send(gen_connect(uid("c"), proto_level=level, proto_name=b"MQTT"))
    c.expect_packet(gen_connack(1), what="CONNACK 1")
    c.expect_closed()


def test_empty_client_id_clean_session_assigned(raw):
    """[MQTT-3.1.3-6][MQTT-3.1.3-7] a zero-length client id with CleanSession=1 is
    accepted and the server assigns a unique id: two such clients coexist (neither
    takes the other over)."""
    a, b = raw(), raw()
    a.send(gen_connect("", clean=True))
    a.expect_packet(gen_connack(0))
    b.send(gen_connect("", clean=True))
    b.expect_packet(gen_connack(0))
    a.ping()
    b.ping()


def test_empty_client_id_paho(paho_client):
    """paho with client_id="" (3.1.1, clean session) is accepted and can pub/sub."""
    c = paho_client(client_id="")
    assert c.connect() == (0, False)
    topic = uid("anon")
    c.subscribe(topic, 0)
    c.publish(topic, b"x")
    assert c.get().payload == b"x"


def test_empty_client_id_persistent_rejected(raw):
    """[MQTT-3.1.3-8] zero-length client id with CleanSession=0: CONNACK 0x02
    (identifier rejected) and close [MQTT-3.2.2-5]; session present 0 [MQTT-3.2.2-4]."""
    c = raw()
    c.send(gen_connect("", clean=False))
    c.expect_packet(gen_connack(2), what="CONNACK 2")
    c.expect_closed()


def test_client_id_too_long_rejected(make_node, raw, require_starling):
    """mqtt.max_clientid_len: a longer id is refused with CONNACK 0x02 (identifier
    rejected, MQTT 3.1.1 section 3.1.3.1), a shorter one accepted."""
    n = make_node({"mqtt.max_clientid_len": "10"})
    ok = raw(target=n)
    ok.connect("a" * 10)
    bad = raw(target=n)
    bad.send(gen_connect("b" * 11))
    bad.expect_packet(gen_connack(2), what="CONNACK 2")
    bad.expect_closed()
    ok.ping()


def test_long_client_id_accepted_by_default(raw):
    """The default max_clientid_len (65535) admits ids far beyond 3.1's 23 chars."""
    c = raw()
    c.connect("x" * 1000 + uid())
    c.ping()


def test_username_password_accepted_when_anonymous_allowed(raw):
    """With mqtt.allow_anonymous=true (default) any credentials connect."""
    c = raw()
    c.connect(uid("c"), username="user", password="pass")
    c.ping()


def test_anonymous_refused_when_disabled(make_node, raw):
    """mqtt.allow_anonymous=false: a CONNECT without credentials is refused with a
    non-zero CONNACK (4 bad user name or password, or 5 not authorized) and closed
    [MQTT-3.2.2-5]."""
    n = make_node({"mqtt.allow_anonymous": "false"})
    c = raw(target=n)
    c.send(gen_connect(uid("c")))
    got = c.read()
    assert got.raw in (gen_connack(4), gen_connack(5)), str(got)
    c.expect_closed()


def test_pingreq_pingresp(raw):
    """[MQTT-3.12.4-1] the server answers PINGREQ with PINGRESP (d0 00)."""
    c = raw()
    c.connect(uid("c"))
    for _ in range(3):
        c.send(gen_pingreq())
        c.expect_packet(gen_pingresp())


def test_keepalive_timeout_disconnects_and_publishes_will(raw, connected):
    """[MQTT-3.1.2-24] a client silent for 1.5x its keepalive (1 s) is disconnected,
    and its will is published [MQTT-3.1.2-8]."""
    will_topic = uid("will/ka")
    watcher = connected()
    watcher.subscribe(will_topic, 1)
    c = raw()
    c.connect(uid("ka"), keepalive=1, will=Will(will_topic, b"gone", qos=1))
    start = time.monotonic()
    c.expect_closed(timeout=4.0)
    elapsed = time.monotonic() - start
    # 1.5 s, with 1 s of slack for timer granularity and a loaded machine
    assert 1.0 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s, expected ~1.5s"
    msg = watcher.get(timeout=3.0)
    assert (msg.topic, msg.payload, msg.qos) == (will_topic, b"gone", 1)


def test_keepalive_pings_keep_connection_open(raw):
    """[MQTT-3.1.2-23] PINGREQs inside the keepalive keep a keepalive=1 client
    connected well past 1.5 s."""
    c = raw()
    c.connect(uid("ka"), keepalive=1)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        c.ping(timeout=1.0)
        time.sleep(0.4)  # pacing of the client's own keepalive, not a wait for the server
    c.ping()


def test_keepalive_any_packet_counts(raw):
    """[MQTT-3.1.2-23] any control packet (not only PINGREQ) resets the keepalive
    timer: a keepalive=1 client publishing QoS 0 every 0.4 s stays connected."""
    c = raw()
    c.connect(uid("ka"), keepalive=1)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        c.send(gen_publish(uid("ka/t"), qos=0, payload=b"x"))
        time.sleep(0.4)
    c.ping()


def test_takeover_closes_first_connection(raw):
    """[MQTT-3.1.4-2] a second CONNECT with the same client id makes the server
    disconnect the existing client; the new one works."""
    cid = uid("take")
    first = raw()
    first.connect(cid)
    second = raw()
    second.connect(cid)
    first.expect_closed()
    second.ping()


def test_takeover_paho(paho_client):
    """Takeover seen from real clients: the first paho client is disconnected."""
    cid = uid("take")
    first = paho_client(client_id=cid)
    first.connect()
    second = paho_client(client_id=cid)
    second.connect()
    first.wait_disconnected()
    topic = uid("take/t")
    second.subscribe(topic, 1)
    second.publish(topic, b"ok", qos=1)
    assert second.get().payload == b"ok"


def test_client_closes_socket_server_survives(raw, node):
    """A client vanishing mid-handshake (CONNECT never completed) harms nothing."""
    c = raw()
    c.send(gen_connect(uid("c"))[:5])
    c.close()
    d = raw()
    d.connect(uid("c"))
    d.ping()


def test_disconnect_closes_connection(raw):
    """Section 3.14.4: after DISCONNECT the server SHOULD close the network
    connection if the client has not (EMQ X does); it sends nothing."""
    c = raw()
    c.connect(uid("c"))
    c.send(gen_disconnect())
    c.expect_closed()


def test_idle_timeout_without_connect(make_node, raw, require_starling):
    """mqtt.idle_timeout=1s: a TCP connection that never sends CONNECT is closed
    after about a second (EMQ X's idle_timeout)."""
    n = make_node({"mqtt.idle_timeout": "1s"})
    c = raw(target=n)
    start = time.monotonic()
    c.expect_closed(timeout=4.0)
    assert time.monotonic() - start >= 0.8
    ok = raw(target=n)
    ok.connect(uid("c"))
    ok.ping()


def test_listener_max_connections(make_node, raw, require_starling):
    """listeners.tcp.default.max_connections=2: a third concurrent connection is
    refused (closed without CONNACK); the first two are unaffected, and a slot
    freed by a disconnect can be reused."""
    n = make_node({"listeners.tcp.default.max_connections": "2"})
    a, b = raw(target=n), raw(target=n)
    a.connect(uid("a"))
    b.connect(uid("b"))
    third = raw(target=n)
    third.try_send(gen_connect(uid("c")))
    third.expect_closed()
    a.ping()
    b.ping()
    b.send(gen_disconnect())
    b.expect_closed()
    deadline = time.monotonic() + 3.0
    while True:  # the freed slot becomes available once the server has closed b
        d = raw(target=n)
        d.try_send(gen_connect(uid("d")))
        try:
            d.expect_packet(gen_connack(0))
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            d.close()
    d.ping()


def test_keepalive_counts_only_client_traffic(raw, connected):
    """[MQTT-3.1.2-24] keepalive is about packets *from* the client: a keepalive=1
    subscriber that keeps receiving messages but sends nothing is still
    disconnected after ~1.5 s."""
    topic = uid("ka-rx")
    c = raw()
    c.connect(uid("ka"), keepalive=1)
    c.subscribe(1, topic, 0)
    pub = connected()
    start = time.monotonic()
    closed = False
    while time.monotonic() - start < 4.0:
        pub.publish(topic, b"tick")
        try:
            c.read(timeout=0.2)
        except TimeoutError:
            pass
        except ConnectionClosed:
            closed = True
            break
    elapsed = time.monotonic() - start
    assert closed, "a silent client receiving traffic was never disconnected"
    assert 1.0 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s, expected ~1.5s"


def test_keepalive_multiplier_setting(make_node, raw, require_starling):
    """mqtt.keepalive_multiplier=3: a keepalive=1 client is disconnected after
    ~3 s of silence, not 1.5 s."""
    n = make_node({"mqtt.keepalive_multiplier": "3"})
    c = raw(target=n)
    c.connect(uid("ka"), keepalive=1)
    start = time.monotonic()
    c.expect_closed(timeout=5.5)
    elapsed = time.monotonic() - start
    assert 2.5 <= elapsed <= 5.0, f"closed after {elapsed:.2f}s, expected ~3s"
