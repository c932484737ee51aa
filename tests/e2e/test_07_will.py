"""Will messages (MQTT 3.1.1 sections 3.1.2.5-3.1.2.7, 3.14).

To prove a will was NOT published, the test waits until the server has
finished with the old connection (it closed the socket, and a new connection
with the same client id has been accepted), then publishes a barrier on the will
topic from another client: a will published by the teardown would arrive first.
"""

from __future__ import annotations

import pytest
from helpers.clients import MQTTv31, MQTTv311, PahoClient, uid
from helpers.packets import Will, gen_disconnect, gen_publish


def will_client(raw, will: Will, proto_level: int = 4, cid: str | None = None):
    c = raw()
    c.connect(cid or uid("will"), will=will, proto_level=proto_level)
    return c


def assert_no_will(raw, watcher: PahoClient, will_topic: str, cid: str,
                   publisher: PahoClient) -> None:
    # the old connection is fully handled once the id can be reused
    again = raw()
    again.connect(cid)
    again.send(gen_disconnect())
    again.expect_closed()
    publisher.publish(will_topic, b"barrier", qos=1)
    m = watcher.get()
    assert m.payload == b"barrier", f"will published unexpectedly: {m}"


@pytest.mark.parametrize("level", [3, 4], ids=["v31", "v311"])
def test_will_on_socket_close(raw, connected, level):
    """[MQTT-3.1.2-8] the will is published when the connection closes without
    DISCONNECT."""
    topic = uid("will/close")
    watcher = connected()
    watcher.subscribe(topic, 0)
    c = will_client(raw, Will(topic, b"bye"), proto_level=level)
    c.close()
    m = watcher.get()
    assert (m.topic, m.payload, m.retain) == (topic, b"bye", False)


def test_no_will_after_disconnect(raw, connected):
    """[MQTT-3.1.2-10][MQTT-3.14.4-3] DISCONNECT discards the will: it is not
    published when the connection then closes."""
    topic, cid = uid("will/disc"), uid("will")
    watcher = connected()
    watcher.subscribe(topic, 1)
    c = will_client(raw, Will(topic, b"must-not"), cid=cid)
    c.send(gen_disconnect())
    c.expect_closed()
    assert_no_will(raw, watcher, topic, cid, connected())


def test_will_on_protocol_error(raw, connected):
    """[MQTT-3.1.2-8] a connection closed by the server for a protocol error
    (here: PUBLISH with QoS 3 [MQTT-3.3.1-4]) publishes the will."""
    topic = uid("will/err")
    watcher = connected()
    watcher.subscribe(topic, 0)
    c = will_client(raw, Will(topic, b"broken"))
    c.send(b"\x36" + gen_publish("x", 0, b"p")[1:])
    c.expect_closed()
    assert watcher.get().payload == b"broken"


def test_will_on_keepalive_timeout(raw, connected):
    """[MQTT-3.1.2-8][MQTT-3.1.2-24] keepalive expiry publishes the will."""
    topic = uid("will/ka")
    watcher = connected()
    watcher.subscribe(topic, 0)
    c = raw()
    c.connect(uid("will"), keepalive=1, will=Will(topic, b"silent"))
    assert watcher.get(timeout=5.0).payload == b"silent"
    c.expect_closed(timeout=1.0)


@pytest.mark.parametrize(("will_qos", "sub_qos"), [(0, 2), (1, 2), (2, 2), (2, 1), (2, 0)])
def test_will_qos_honoured(raw, connected, will_qos, sub_qos):
    """[MQTT-3.1.2-14 context] the will is published with its Will QoS (delivered at
    min(will QoS, granted QoS))."""
    topic = uid("will/qos")
    watcher = connected()
    watcher.subscribe(topic, sub_qos)
    c = will_client(raw, Will(topic, b"q", qos=will_qos))
    c.close()
    m = watcher.get()
    assert (m.payload, m.qos) == (b"q", min(will_qos, sub_qos))


def test_will_retain_seen_by_later_subscriber(raw, connected):
    """[MQTT-3.1.2-17] Will Retain=1: the will is published as a retained message,
    so a subscriber arriving later gets it with RETAIN=1."""
    topic = uid("will/ret")
    watcher = connected()
    watcher.subscribe(topic, 1)
    c = will_client(raw, Will(topic, b"last-words", qos=1, retain=True))
    c.close()
    live = watcher.get()
    assert (live.payload, live.retain) == (b"last-words", False)  # [MQTT-3.3.1-9]
    later = connected()
    later.subscribe(topic, 1)
    m = later.get()
    assert (m.payload, m.qos, m.retain) == (b"last-words", 1, True)
    later.publish(topic, b"", qos=1, retain=True)


def test_will_not_retained_without_flag(raw, connected):
    """[MQTT-3.1.2-16] Will Retain=0: the will is not retained; a later subscriber
    gets no retained message, only the next live one."""
    topic = uid("will/noret")
    watcher = connected()
    watcher.subscribe(topic, 0)
    c = will_client(raw, Will(topic, b"transient"))
    c.close()
    assert watcher.get().payload == b"transient"
    later = raw()
    later.connect(uid("later"))
    later.subscribe(1, topic, 0)
    pub = connected()
    pub.publish(topic, b"barrier", qos=1)
    later.expect_packet(gen_publish(topic, 0, b"barrier"))


@pytest.mark.parametrize("protocol", [MQTTv31, MQTTv311], ids=["v31", "v311"])
def test_will_paho_client_killed(paho_client, connected, protocol):
    """A paho client's will (set with will_set) fires when its socket dies."""
    topic = uid("will/paho")
    watcher = connected()
    watcher.subscribe(topic, 1)
    c = paho_client(protocol=protocol)
    c.will_set(topic, b"paho-died", qos=1)
    c.connect()
    c.client.loop_stop()
    c._loop_started = False
    sock = c.client.socket()
    assert sock is not None
    sock.close()
    m = watcher.get()
    assert (m.topic, m.payload, m.qos) == (topic, b"paho-died", 1)


def test_no_will_without_will_flag(raw, connected):
    """A client that set no will leaves nothing behind (sanity for the barrier)."""
    topic, cid = uid("will/none"), uid("nowill")
    watcher = connected()
    watcher.subscribe(topic, 1)
    c = raw()
    c.connect(cid)
    c.close()
    assert_no_will(raw, watcher, topic, cid, connected())
