"""$SYS topics: broker info, heartbeat, client presence events, metrics and stats.

Layout follows EMQ X v3: `$SYS/brokers` (retained list of nodes),
`$SYS/brokers/<node>/{version,sysdescr,uptime,datetime}`,
`$SYS/brokers/<node>/clients/<clientid>/{connected,disconnected}` (JSON), and
every `broker.sys_interval` `$SYS/brokers/<node>/metrics/<name>` and
`.../stats/<name>` with the dotted names written with `/`
(`metrics/messages/received`, `stats/connections/count`); payload = integer.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import pytest
from helpers.clients import PahoClient, uid
from helpers.packets import gen_connect, gen_puback, gen_publish, gen_unsuback, gen_unsubscribe

pytestmark = pytest.mark.usefixtures("require_starling")


def sys_prefix(node: Any) -> str:
    return f"$SYS/brokers/{node.name}"


def test_sys_brokers_retained_lists_node(connected, node):
    """`$SYS/brokers` is retained and its payload names this node."""
    c = connected()
    c.subscribe("$SYS/brokers", 0)
    m = c.get(topic="$SYS/brokers")
    assert m.retain
    assert node.name in m.payload.decode()


def test_sys_version_and_sysdescr(connected, node):
    """`.../version` and `.../sysdescr` are retained, non-empty text."""
    prefix = sys_prefix(node)
    c = connected()
    c.subscribe([(f"{prefix}/version", 0), (f"{prefix}/sysdescr", 0)])
    got = {}
    while len(got) < 2:
        m = c.get()
        got[m.topic.rsplit("/", 1)[1]] = m
    for name in ("version", "sysdescr"):
        assert got[name].retain, name
        assert got[name].payload.decode("utf-8").strip(), name
    assert re.search(r"\d+\.\d+", got["version"].payload.decode())


def test_sys_uptime_and_datetime_heartbeat(connected, node):
    """With broker.sys_heartbeat=1s (default) `.../uptime` and `.../datetime`
    are published every second."""
    prefix = sys_prefix(node)
    c = connected()
    c.subscribe([(f"{prefix}/uptime", 0), (f"{prefix}/datetime", 0)])
    seen: dict[str, list[str]] = {"uptime": [], "datetime": []}
    deadline = time.monotonic() + 4.5
    while min(len(v) for v in seen.values()) < 2:
        m = c.get(timeout=max(deadline - time.monotonic(), 0.01))
        seen[m.topic.rsplit("/", 1)[1]].append(m.payload.decode())
    for dt in seen["datetime"]:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?", dt), dt
    for up in seen["uptime"]:
        assert re.search(r"\d", up), up


def _check_ts(ts: Any) -> None:
    assert isinstance(ts, int | float), ts
    now = time.time()
    secs = ts / 1000 if ts > 1e11 else ts  # seconds or milliseconds
    assert abs(secs - now) < 60, ts


@pytest.mark.parametrize("level", [3, 4], ids=["v31", "v311"])
def test_client_connected_event(connected, raw, node, level):
    """`$SYS/brokers/<node>/clients/<id>/connected` carries a JSON object with the
    client's connection details."""
    cid = uid("evt")
    watcher = connected()
    watcher.subscribe(f"{sys_prefix(node)}/clients/{cid}/connected", 0)
    c = raw()
    c.send(gen_connect(cid, clean=True, keepalive=42, username="alice", password="pw",
                       proto_level=level))
    c.expect_packet(b"\x20\x02\x00\x00")
    m = watcher.get()
    assert m.topic == f"{sys_prefix(node)}/clients/{cid}/connected"
    event = json.loads(m.payload)
    assert event["clientid"] == cid
    assert event["username"] == "alice"
    assert event["ipaddress"] == "127.0.0.1"
    assert event["connack"] == 0
    assert event["clean_start"] is True
    assert event["proto_ver"] == level
    assert event["proto_name"] == {3: "MQIsdp", 4: "MQTT"}[level]
    assert event["keepalive"] == 42
    _check_ts(event["ts"])


def _disconnect_by(how: str, c, raw, cid: str) -> None:
    if how == "disconnect":
        c.send(b"\xe0\x00")
        c.expect_closed()
    elif how == "close":
        c.close()
    elif how == "keepalive":
        c.expect_closed(timeout=4.0)
    elif how == "takeover":
        raw().connect(cid)
        c.expect_closed()
    elif how == "malformed":
        c.send(b"\x36\x05\x00\x01a\x00\x01")  # PUBLISH QoS 3
        c.expect_closed()


# reasons as documented in docs/metrics.md (EMQ X's)
REASONS = {
    "disconnect": {"normal"},
    "close": {"closed"},
    "keepalive": {"keepalive_timeout"},
    "takeover": {"takeovered"},
    "malformed": {"frame_error", "protocol_error"},
}


@pytest.mark.parametrize("how", list(REASONS))
def test_client_disconnected_event(connected, raw, node, how):
    """`.../clients/<id>/disconnected` is published when a client goes, with
    clientid, username, the reason (EMQ X's words) and a timestamp."""
    cid = uid("evt")
    watcher = connected()
    watcher.subscribe(f"{sys_prefix(node)}/clients/{cid}/disconnected", 0)
    c = raw()
    c.connect(cid, username="bob", keepalive=1 if how == "keepalive" else 60)
    _disconnect_by(how, c, raw, cid)
    m = watcher.get(timeout=5.0)
    event = json.loads(m.payload)
    assert event["clientid"] == cid
    assert event["username"] == "bob"
    assert event["reason"] in REASONS[how], event
    _check_ts(event["ts"])


def test_connected_event_without_username(connected, raw, node):
    """A client without a user name is reported with username "undefined" (EMQ X)."""
    cid = uid("evt")
    watcher = connected()
    watcher.subscribe(f"{sys_prefix(node)}/clients/{cid}/connected", 0)
    c = raw()
    c.connect(cid)
    event = json.loads(watcher.get().payload)
    assert event["username"] == "undefined"


def test_presence_events_published_at_qos1(connected, raw, node):
    """broker.presence_qos=1 (default): a QoS 2 subscriber gets the events at QoS 1."""
    cid = uid("evt")
    watcher = connected()
    watcher.subscribe(f"{sys_prefix(node)}/clients/{cid}/+", 2)
    c = raw()
    c.connect(cid)
    assert watcher.get().qos == 1


def test_assigned_client_id_reported(connected, raw, node):
    """[MQTT-3.1.3-6] the id the server assigns to an empty client id is unique,
    and is what the connected event reports (`starling-<32 hex>`)."""
    user = uid("anon-user")
    watcher = connected()
    watcher.subscribe(f"{sys_prefix(node)}/clients/+/connected", 0)
    ids = []
    for _ in range(2):
        c = raw()
        c.send(gen_connect("", clean=True, username=user))
        c.expect_packet(b"\x20\x02\x00\x00")
        while True:
            event = json.loads(watcher.get().payload)
            if event["username"] == user:
                break
        ids.append(event["clientid"])
    assert all(re.fullmatch(r"starling-[0-9a-f]{32}", i) for i in ids), ids
    assert ids[0] != ids[1]


def test_sys_events_wildcard(connected, raw, node):
    """Presence events can be followed with `$SYS/brokers/+/clients/#`."""
    cid = uid("evt")
    watcher = connected()
    watcher.subscribe("$SYS/brokers/+/clients/#", 0)
    c = raw()
    c.connect(cid)
    c.close()
    topics = set()
    while len(topics) < 2:
        m = watcher.get()
        if f"/clients/{cid}/" in m.topic:
            topics.add(m.topic.rsplit("/", 1)[1])
    assert topics == {"connected", "disconnected"}


def test_presence_events_follow_dollar_subscriptions(connected, raw, node):
    """Presence events are only built while a "$..." filter could receive them: a
    shared subscription counts, and so does one made again after unsubscribing."""
    watcher = connected()
    shared = "$share/g/$SYS/brokers/+/clients/+/connected"
    watcher.subscribe(shared, 0)
    cid = uid("evt-shared")
    raw().connect(cid)
    m = watcher.get(topic=f"{sys_prefix(node)}/clients/{cid}/connected")
    assert json.loads(m.payload)["clientid"] == cid
    watcher.unsubscribe(shared)
    raw().connect(uid("evt-nobody"))  # published to nobody (or not built): nothing to see
    plain = f"{sys_prefix(node)}/clients/+/connected"
    watcher.subscribe(plain, 0)
    cid = uid("evt-again")
    raw().connect(cid)
    m = watcher.get(topic=f"{sys_prefix(node)}/clients/{cid}/connected")
    assert json.loads(m.payload)["clientid"] == cid


# -- metrics and stats ------------------------------------------------------------------
class SysWatcher:
    """Subscribes to all of `$SYS/#` (so broker messages are never *dropped* for
    lack of a subscriber) and records every metrics/stats report."""

    def __init__(self, client: PahoClient, node: Any) -> None:
        self.prefix = sys_prefix(node) + "/"
        self.client = client
        self.reports: list[tuple[str, int]] = []
        self.cond = threading.Condition()
        client.client.on_message = self._on_message
        client.subscribe("$SYS/#", 0)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if not msg.topic.startswith(self.prefix):
            return
        rest = msg.topic[len(self.prefix):]
        if rest.startswith(("metrics/", "stats/")):
            with self.cond:
                self.reports.append((rest, int(msg.payload)))
                self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.reports)

    def next_value(self, name: str, after: int | None = None, timeout: float = 4.0) -> int:
        """The first value of `name` reported after position `after` (default: now)."""
        start = self.mark() if after is None else after
        with self.cond:
            def find():
                for key, value in self.reports[start:]:
                    if key == name:
                        return (value,)
                return None
            found = self.cond.wait_for(find, timeout)
            if not found:
                names = sorted({k for k, _ in self.reports})
                raise AssertionError(f"no report of {name} within {timeout}s; seen: {names}")
            return found[0]

    def wait_value(self, name: str, pred, timeout: float = 5.0) -> int:
        """Wait for a report of `name` whose value satisfies `pred`; return it."""
        deadline = time.monotonic() + timeout
        pos = self.mark()
        last = None
        while time.monotonic() < deadline:
            with self.cond:
                for key, value in self.reports[pos:]:
                    if key == name:
                        last = value
                        if pred(value):
                            return value
                pos = len(self.reports)
                self.cond.wait(0.1)
        raise AssertionError(f"{name}: last reported value {last} never satisfied the check")


@pytest.fixture
def sys_node(make_node):
    return make_node({"broker.sys_interval": "500ms"})


@pytest.fixture
def watcher(sys_node, connected) -> SysWatcher:
    return SysWatcher(connected(target=sys_node), sys_node)


def test_metrics_published_with_slash_names(watcher):
    """With broker.sys_interval=500ms metrics and stats arrive with `/`-separated
    names (no dots)."""
    mark = watcher.mark()
    for name in ("metrics/messages/received", "metrics/packets/connect",
                 "metrics/bytes/received", "metrics/messages/dropped",
                 "stats/connections/count"):
        assert watcher.next_value(name, after=mark) >= 0
    assert not [k for k, _ in watcher.reports if "." in k]


def test_metric_messages_received_counts_publishes(sys_node, watcher, raw):
    """metrics/messages/received grows by exactly N after N client PUBLISHes, and
    metrics/messages/dropped by N when nobody subscribes to their topic."""
    pub = raw(target=sys_node)
    pub.connect(uid("pub"))
    mark = watcher.mark()
    base_rx = watcher.next_value("metrics/messages/received", after=mark)
    base_drop = watcher.next_value("metrics/messages/dropped", after=mark)
    n = 7
    topic = uid("nobody-listens")
    for i in range(n):
        pub.send(gen_publish(topic, 1, b"x", mid=i + 1))
        pub.expect_packet(gen_puback(i + 1))
    rx = watcher.wait_value("metrics/messages/received", lambda v: v >= base_rx + n)
    drop = watcher.wait_value("metrics/messages/dropped", lambda v: v >= base_drop + n)
    assert rx == base_rx + n
    assert drop == base_drop + n


def test_metric_packets_connect_increments(sys_node, watcher, raw):
    """metrics/packets/connect counts CONNECT packets."""
    base = watcher.next_value("metrics/packets/connect")
    for _ in range(3):
        c = raw(target=sys_node)
        c.connect(uid("c"))
    assert watcher.wait_value("metrics/packets/connect", lambda v: v >= base + 3) == base + 3


def test_metric_bytes_received(sys_node, watcher, raw):
    """metrics/bytes/received counts the bytes clients send."""
    c = raw(target=sys_node)
    c.connect(uid("c"))
    base = watcher.next_value("metrics/bytes/received")
    packet = gen_publish(uid("bytes"), 1, b"b" * 1000, mid=1)
    c.send(packet)
    c.expect_packet(gen_puback(1))
    assert watcher.wait_value("metrics/bytes/received",
                              lambda v: v >= base + len(packet)) == base + len(packet)


def test_stat_connections_count(sys_node, watcher, raw):
    """stats/connections/count follows connects and disconnects."""
    base = watcher.next_value("stats/connections/count")
    assert base >= 1  # the watcher itself
    clients = []
    for _ in range(3):
        c = raw(target=sys_node)
        c.connect(uid("c"))
        clients.append(c)
    watcher.wait_value("stats/connections/count", lambda v: v == base + 3)
    for c in clients:
        c.close()
    watcher.wait_value("stats/connections/count", lambda v: v == base)


def test_metric_messages_received_not_counting_sys(sys_node, watcher):
    """Broker-originated $SYS messages are not client messages: with no client
    publishing, metrics/messages/received stays put across reports."""
    first = watcher.next_value("metrics/messages/received")
    second = watcher.next_value("metrics/messages/received")
    assert second == first


def test_sys_subscription_matches(connected, node):
    """`$SYS/#` subscription is granted and receives broker messages."""
    c = connected()
    assert c.subscribe("$SYS/#", 0) == [0]
    m = c.get()
    assert m.topic.startswith("$SYS/")



def test_version_republished_every_interval(sys_node, connected):
    """With broker.sys_interval=500ms `.../version` is published again each interval;
    the live copies carry RETAIN 0 [MQTT-3.3.1-9]."""
    c = connected(target=sys_node)
    c.subscribe(f"{sys_prefix(sys_node)}/version", 0)
    first = c.get()
    assert first.retain
    again = c.get(timeout=4.0)
    assert (again.payload, again.retain) == (first.payload, False)


def test_metric_messages_sent(sys_node, watcher, raw, connected):
    """metrics/messages/sent counts PUBLISHes delivered to clients (not $SYS)."""
    topic = uid("sent")
    sub = connected(target=sys_node)
    sub.subscribe(topic, 0)
    pub = raw(target=sys_node)
    pub.connect(uid("pub"))
    base = watcher.next_value("metrics/messages/sent")
    for _ in range(4):
        pub.send(gen_publish(topic, 0, b"s"))
    sub.get_many(4)
    assert watcher.wait_value("metrics/messages/sent", lambda v: v >= base + 4) == base + 4


def test_metric_packets_malformed(sys_node, watcher, raw):
    """metrics/packets/malformed counts connections closed for bad input."""
    base = watcher.next_value("metrics/packets/malformed")
    for bad in (b"\x00\x00", b"\xf0\x00"):
        c = raw(target=sys_node)
        c.connect(uid("bad"))
        c.send(bad)
        c.expect_closed()
    assert watcher.wait_value("metrics/packets/malformed", lambda v: v >= base + 2) == base + 2


def test_stats_subscriptions_and_retained(sys_node, watcher, raw, connected):
    """stats/subscriptions/count follows SUBSCRIBE/UNSUBSCRIBE and
    stats/retained/count the retained store."""
    mark = watcher.mark()
    subs = watcher.next_value("stats/subscriptions/count", after=mark)
    ret = watcher.next_value("stats/retained/count", after=mark)
    base = uid("stats")
    c = raw(target=sys_node)
    c.connect(uid("c"))
    c.subscribe(1, f"{base}/a", 0)
    c.subscribe(2, f"{base}/b/#", 1)
    pub = connected(target=sys_node)
    pub.publish(f"{base}/r1", b"x", qos=1, retain=True)
    pub.publish(f"{base}/r2", b"x", qos=1, retain=True)
    watcher.wait_value("stats/subscriptions/count", lambda v: v == subs + 2)
    watcher.wait_value("stats/retained/count", lambda v: v == ret + 2)
    c.send(gen_unsubscribe(3, f"{base}/a"))
    c.expect_packet(gen_unsuback(3))
    pub.publish(f"{base}/r1", b"", qos=1, retain=True)
    watcher.wait_value("stats/subscriptions/count", lambda v: v == subs + 1)
    watcher.wait_value("stats/retained/count", lambda v: v == ret + 1)


def test_metric_dropped_counts_queue_overflow(make_node, connected, raw):
    """messages/dropped also counts messages pushed out of a full offline queue."""
    n = make_node({"broker.sys_interval": "500ms", "session.max_mqueue_len": "2"})
    w = SysWatcher(connected(target=n), n)
    cid, topic = uid("ovf"), uid("ovf")
    c = raw(target=n)
    c.connect(cid, clean=False)
    c.subscribe(1, topic, 1)
    c.send(b"\xe0\x00")
    c.expect_closed()
    base = w.next_value("metrics/messages/dropped")
    pub = connected(target=n)
    for i in range(5):
        pub.publish(topic, str(i).encode(), qos=1)
    assert w.wait_value("metrics/messages/dropped", lambda v: v >= base + 3) == base + 3
