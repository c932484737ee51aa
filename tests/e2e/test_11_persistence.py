"""The durability contract (docs/durability.md), with real clients and real
process kills: what a node acknowledged survives SIGTERM and SIGKILL, sessions
come back with live subscriptions, queued and in-flight messages, and a store
that is not a current Starling store stops the node instead of starting empty.

Every test runs its own node on its own data dir (`make_node(..., data_dir=)`);
`node.stop()` is SIGTERM, `node.kill()` is SIGKILL.  After a restart the port
changes, so clients always read `node.port` again.  The test process may open
the node's SQLite file itself: to look at what is on disk, and to hold its
write lock, which makes "not committed yet" a state a test can hold a node in.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.clients import PahoClient, uid, wait_until
from helpers.nodes import ON_MOSQUITTO
from helpers.packets import (
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    ConnectionClosed,
    Publish,
    RawClient,
    gen_connack,
    gen_connect,
    gen_disconnect,
    gen_pingreq,
    gen_pingresp,
    gen_puback,
    gen_pubcomp,
    gen_publish,
    gen_pubrec,
    gen_pubrel,
    gen_suback,
    gen_subscribe,
    gen_unsuback,
    gen_unsubscribe,
    parse_mid,
    parse_publish,
)

pytestmark = pytest.mark.skipif(ON_MOSQUITTO, reason="Starling's store")

DB = "starling.db"
API = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}
#: The store's mark in the SQLite header (PRAGMA application_id), "STLG".
STARLING_APP_ID = 0x53544C47
#: How many messages sessions hold on disk: a message held by one session is one row
#: of `single_messages`, one held by several a row of `session_messages` per holder.
HELD = ("SELECT (SELECT count(*) FROM session_messages) + "
        "(SELECT count(*) FROM single_messages)")
#: How many message bodies are on disk (shared ones, and those in single rows).
BODIES = "SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM single_messages)"


# -- nodes and clients -----------------------------------------------------------
@pytest.fixture
def clients() -> Iterator[Callable[..., RawClient]]:
    """Factory for raw clients to a node's *current* port; all closed at the end."""
    made: list[RawClient] = []

    def factory(node: Any, timeout: float = 5.0) -> RawClient:
        client = RawClient(node.host, node.port, timeout=timeout)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def crash(node: Any) -> None:
    """kill -9, and let go of the dead process's pipe before it is started again."""
    node.kill()


def sigterm(node: Any) -> None:
    assert node.stop() == 0, "\n".join(node.log_lines[-20:])


def connect(clients: Callable[..., RawClient], node: Any, cid: str, *, clean: bool = False,
            present: bool = False) -> RawClient:
    c = clients(node)
    c.send(gen_connect(cid, clean=clean))
    c.expect_packet(gen_connack(0, present), what=f"CONNACK session_present={int(present)}")
    return c


def go_offline(c: RawClient) -> None:
    """DISCONNECT and wait for the server to close: the session is offline after."""
    c.send(gen_disconnect())
    c.expect_closed()
    c.close()


def subscriber(clients: Callable[..., RawClient], node: Any, cid: str,
               subs: list[tuple[str, int]]) -> None:
    """Create a persistent session with `subs` and leave it offline, on disk."""
    c = connect(clients, node, cid)
    c.send(gen_subscribe(1, subs))
    c.expect_packet(gen_suback(1, [q for _, q in subs]))
    go_offline(c)
    wait_on_disk(node, "SELECT count(*) FROM subscriptions WHERE client_id = ?", (cid,),
                 len(subs))


def publish(c: RawClient, topic: str, payload: bytes, qos: int, mid: int = 1,
            retain: bool = False) -> None:
    """Publish and complete the flow (PUBACK, or PUBREC/PUBREL/PUBCOMP)."""
    c.send(gen_publish(topic, qos, payload, retain=retain, mid=mid if qos else None))
    if qos == 1:
        c.expect_packet(gen_puback(mid))
    elif qos == 2:
        c.expect_packet(gen_pubrec(mid))
        c.send(gen_pubrel(mid))
        c.expect_packet(gen_pubcomp(mid))


def consume(c: RawClient, n: int, timeout: float = 10.0) -> list[Publish]:
    """Receive `n` PUBLISHes, acknowledging each (QoS 1 PUBACK; QoS 2 PUBREC, and
    PUBCOMP for its PUBREL), then make sure nothing else is coming: a PINGREQ is
    answered after everything our acknowledgements released was written, so once
    a PINGRESP comes back with no packet before it and no QoS 2 flow open, the
    session has nothing more to send.  Returns every PUBLISH received."""
    got: list[Publish] = []
    open_flows: set[int] = set()  # PUBREC sent, PUBREL not received yet
    deadline = time.monotonic() + timeout
    ping_out = quiet = False
    while True:
        if len(got) >= n and not open_flows and not ping_out:
            c.send(gen_pingreq())
            ping_out = quiet = True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(got)} of {n} messages: "
                                 f"{[p.payload for p in got][:20]}; open QoS 2 flows "
                                 f"{sorted(open_flows)}")
        try:
            packet = c.read(remaining)
        except TimeoutError:
            continue
        if packet.type == PUBLISH:
            quiet = False
            p = parse_publish(packet)
            got.append(p)
            if p.qos == 1:
                c.send(gen_puback(p.mid))
            elif p.qos == 2:
                open_flows.add(p.mid)
                c.send(gen_pubrec(p.mid))
        elif packet.type == PUBREL:
            quiet = False
            open_flows.discard(parse_mid(packet))
            c.send(gen_pubcomp(parse_mid(packet)))
        elif packet.type == PINGRESP and ping_out:
            ping_out = False
            if quiet and not open_flows and len(got) >= n:
                return got
        else:
            raise AssertionError(f"unexpected {packet}")


def numbers(got: list[Publish]) -> list[int]:
    return [int(p.payload) for p in got]


# -- the store file, from outside ----------------------------------------------------
def on_disk(node: Any, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(node.data_dir / DB, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def wait_on_disk(node: Any, sql: str, args: tuple[Any, ...], expected: Any,
                 timeout: float = 5.0) -> None:
    """Poll a `SELECT count(*)` until it reaches `expected` (i.e. it was committed)."""
    wait_until(lambda: on_disk(node, sql, args)[0][0] == expected, timeout,
               message=f"{sql} {args} == {expected}")


@contextlib.contextmanager
def write_locked(node: Any) -> Iterator[None]:
    """Hold the store's write lock: the node can do everything but commit.  (Its
    commits wait up to SQLite's 5 s busy timeout, then fail.)"""
    db = sqlite3.connect(node.data_dir / DB, isolation_level=None, timeout=10)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        db.close()


# -- 1. restart with SIGTERM ---------------------------------------------------------
def test_offline_messages_survive_a_restart_in_order(make_node, clients, tmp_path) -> None:
    """Persistent sessions subscribed at QoS 1 and QoS 2 go offline; messages are
    published; SIGTERM + start; a message published after the restart but before
    the subscribers reconnect is queued too (routes restored before listeners);
    reconnecting with clean session 0 gives session present 1 and every message, in
    order: exactly once at QoS 2, at least once (here: once) at QoS 1."""
    node = make_node({}, data_dir=tmp_path / "d")
    base, n = uid("rs"), 25
    sub1, sub2 = uid("s1"), uid("s2")
    subscriber(clients, node, sub1, [(f"{base}/one", 1)])
    subscriber(clients, node, sub2, [(f"{base}/two", 2)])
    with contextlib.closing(PahoClient(node.host, node.port)) as pub:  # a real client
        pub.connect()
        for i in range(1, n + 1):
            pub.publish(f"{base}/one", str(i).encode(), qos=1)
            pub.publish(f"{base}/two", str(i).encode(), qos=2)

    sigterm(node)
    node.start()

    with contextlib.closing(PahoClient(node.host, node.port)) as pub:
        pub.connect()
        pub.publish(f"{base}/one", str(n + 1).encode(), qos=1)
        pub.publish(f"{base}/two", str(n + 1).encode(), qos=2)

    c1 = connect(clients, node, sub1, present=True)
    got1 = consume(c1, n + 1)
    assert numbers(got1) == list(range(1, n + 2))
    assert {p.qos for p in got1} == {1}
    c2 = connect(clients, node, sub2, present=True)
    got2 = consume(c2, n + 1)
    assert numbers(got2) == list(range(1, n + 2))  # exactly once, in order
    assert {p.qos for p in got2} == {2}
    assert not any(p.dup for p in got1 + got2)  # never sent before: not duplicates
    # and both sessions are empty now: a second restart brings back nothing more
    go_offline(c1)
    go_offline(c2)
    sigterm(node)
    node.start()
    for cid in (sub1, sub2):
        assert consume(connect(clients, node, cid, present=True), 0) == []


# -- 2. kill -9 under load --------------------------------------------------------------
def stream_until_killed(node: Any, topic: str, qos: int, retain: bool, delay: float,
                        window: int = 16, cap: int = 30000) -> tuple[int, set[int]]:
    """Publish 1, 2, 3, ... (packet id = number) with `window` flows open, until the
    node is SIGKILLed `delay` seconds in.  Returns (how many were sent, the numbers
    acknowledged: PUBACK at QoS 1, PUBREC at QoS 2)."""
    c = RawClient(node.host, node.port, timeout=10)
    try:
        c.connect(uid("load"))
        acked: set[int] = set()
        sent = 0
        slots = threading.Semaphore(window)
        over = threading.Event()
        writing = threading.Lock()  # two threads write: whole packets, never interleaved

        def write(data: bytes) -> bool:
            with writing:
                return c.try_send(data)

        def send() -> None:
            nonlocal sent
            for i in range(1, cap + 1):
                while not slots.acquire(timeout=0.1):
                    if over.is_set():
                        return
                if over.is_set():
                    return
                t = f"{topic}/{i}" if retain else topic
                sent = i
                if not write(gen_publish(t, qos, str(i).encode(), retain=retain, mid=i)):
                    return

        sender = threading.Thread(target=send, daemon=True)
        killer = threading.Timer(delay, node.kill)
        sender.start()
        killer.start()
        try:
            while True:
                try:
                    packet = c.read(10)
                except (ConnectionClosed, OSError):
                    break
                if packet.type == PUBACK:
                    acked.add(parse_mid(packet))
                    slots.release()
                elif packet.type == PUBREC:
                    acked.add(parse_mid(packet))
                    write(gen_pubrel(parse_mid(packet)))
                elif packet.type == PUBCOMP:
                    slots.release()
                else:
                    raise AssertionError(f"publisher got {packet}")
        finally:
            over.set()
            killer.join()
            sender.join(5)
    finally:
        c.close()
    assert node.proc.poll() is not None, "the node was not killed"
    return sent, acked


def kill_delay(seed: int, kind: str) -> float:
    return random.Random(f"{kind}-{seed}").uniform(0.05, 0.6)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("qos", [1, 2])
def test_acknowledged_messages_survive_kill_9_under_load(make_node, clients, tmp_path,
                                                         qos: int, seed: int) -> None:
    """A publisher streams QoS 1 (or 2) messages to a topic whose only subscriber
    is an offline persistent session; the node is SIGKILLed at a random moment.
    After a restart the subscriber gets every message the node acknowledged
    (PUBACK / PUBREC), in order, none twice; unacknowledged ones may be there too."""
    node = make_node({"session.max_mqueue_len": "0"}, data_dir=tmp_path / "d")
    topic, cid = uid("load"), uid("sub")
    subscriber(clients, node, cid, [(topic, qos)])
    sent, acked = stream_until_killed(node, topic, qos, False, kill_delay(seed, f"q{qos}"))
    assert acked, f"killed before anything was acknowledged ({sent} sent)"
    assert len(acked) < sent or sent < 30000, "never killed mid-stream"
    held = on_disk(node, HELD)[0][0]

    node.start()
    c = connect(clients, node, cid, present=True)
    got = numbers(consume(c, held, timeout=30))
    missing = sorted(acked - set(got))
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:10]}"
    assert got == sorted(set(got)), "out of order or duplicated"
    assert set(got) <= set(range(1, sent + 1))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_acknowledged_retained_messages_survive_kill_9(make_node, clients, tmp_path,
                                                       seed: int) -> None:
    """Retained QoS 1 messages on distinct topics, nobody subscribed, kill -9 at a
    random moment: after a restart a new subscriber gets every acknowledged one."""
    # unbounded queue: the new subscriber's burst of retained messages is not cut
    node = make_node({"session.max_mqueue_len": "0"}, data_dir=tmp_path / "d")
    base = uid("ret")
    sent, acked = stream_until_killed(node, base, 1, True, kill_delay(seed, "retained"))
    assert acked, f"killed before anything was acknowledged ({sent} sent)"

    held = on_disk(node, "SELECT count(*) FROM retained")[0][0]

    node.start()
    c = connect(clients, node, uid("late"), clean=True)
    c.send(gen_subscribe(1, f"{base}/#", 1))
    c.expect_packet(gen_suback(1, 1))
    got = consume(c, held, timeout=30)
    assert all(p.retain for p in got)
    by_topic = {p.topic_str: int(p.payload) for p in got}
    assert all(topic == f"{base}/{i}" for topic, i in by_topic.items())
    missing = sorted(acked - set(by_topic.values()))
    assert not missing, f"{len(missing)} acknowledged retained messages lost: {missing[:10]}"


# -- 3. in-flight messages are resent with DUP ---------------------------------------------
def test_inflight_messages_are_resent_with_dup_after_kill_9(make_node, clients,
                                                            tmp_path) -> None:
    """An online subscriber receives QoS 1 and QoS 2 messages and does not
    acknowledge them (one QoS 2 message it PUBRECs: that one is owed a PUBREL);
    kill -9; after a restart the reconnecting subscriber gets them again, same
    packet ids, DUP=1, in order, and the PUBREL for the PUBREC'd one."""
    node = make_node({}, data_dir=tmp_path / "d")
    base, cid = uid("inf"), uid("sub")
    sub = connect(clients, node, cid)
    sub.send(gen_subscribe(1, [(f"{base}/1", 1), (f"{base}/2", 2)]))
    sub.expect_packet(gen_suback(1, [1, 2]))
    pub = connect(clients, node, uid("p"), clean=True)
    for i in range(1, 5):
        publish(pub, f"{base}/1", str(i).encode(), 1, mid=i)
    for i in range(5, 8):
        publish(pub, f"{base}/2", str(i).encode(), 2, mid=i)
    first = [sub.expect_publish() for _ in range(7)]
    assert numbers(first) == list(range(1, 8))
    assert not any(p.dup for p in first)
    released = first[-1]
    sub.send(gen_pubrec(released.mid))
    sub.expect_packet(gen_pubrel(released.mid))
    # a barrier: this PUBACK is sent after a commit that follows the PUBREC's
    publish(pub, f"{base}/1", b"8", 1, mid=9)
    assert int(sub.expect_publish().payload) == 8

    crash(node)
    node.start()
    sub = connect(clients, node, cid, present=True)
    # in send order: the unacknowledged PUBLISHes again, PUBREL for the PUBREC'd one
    again = [sub.expect_publish() for _ in range(6)]
    assert [(int(p.payload), p.mid, p.qos) for p in again] == [
        (int(p.payload), p.mid, p.qos) for p in first[:6]]
    sub.expect_packet(gen_pubrel(released.mid), what="PUBREL for the PUBREC'd message")
    last = sub.expect_publish()
    again.append(last)
    assert (last.payload, last.qos) == (b"8", 1)
    assert all(p.dup for p in again)
    sub.send(gen_pubcomp(released.mid))
    for p in again:
        sub.send(gen_puback(p.mid) if p.qos == 1 else gen_pubrec(p.mid))
        if p.qos == 2:
            sub.expect_packet(gen_pubrel(p.mid))
            sub.send(gen_pubcomp(p.mid))
    assert consume(sub, 0) == []
    # Acknowledgements from the subscriber wait for nothing; once their removal is
    # committed, nothing comes back after another crash.
    wait_on_disk(node, HELD, (), 0)
    crash(node)
    node.start()
    assert consume(connect(clients, node, cid, present=True), 0) == []


def test_pubrel_is_not_sent_before_its_state_is_on_disk(make_node, clients,
                                                        tmp_path) -> None:
    """QoS 2 to a subscriber: once the node has sent PUBREL, a restart must not
    resend the PUBLISH.  (A client that answered that PUBREL with PUBCOMP has
    forgotten the packet id and takes a re-sent PUBLISH as a new message: a
    duplicate.)  The store's write lock holds the node between "PUBREC received"
    and "committed"; the node is killed there."""
    node = make_node({}, data_dir=tmp_path / "d")
    topic, cid = uid("rel"), uid("sub")
    sub = connect(clients, node, cid)
    sub.send(gen_subscribe(1, topic, 2))
    sub.expect_packet(gen_suback(1, 2))
    pub = connect(clients, node, uid("p"), clean=True)
    publish(pub, topic, b"once", 2)
    p = sub.expect_publish()
    with write_locked(node):
        sub.send(gen_pubrec(p.mid))
        try:
            packet = sub.read(1.0)
            assert packet.raw == gen_pubrel(p.mid), str(packet)
            sub.send(gen_pubcomp(p.mid))  # delivered to the application, id forgotten
            pubrel_seen = True
        except TimeoutError:
            pubrel_seen = False  # held until the commit: fine
        crash(node)
    node.start()
    sub = connect(clients, node, cid, present=True)
    packet = sub.read()
    if pubrel_seen:
        assert packet.raw == gen_pubrel(p.mid), (
            "PUBLISH re-sent after the client completed the flow (PUBREL went out "
            f"before the PUBREC was committed): {packet}")
        sub.send(gen_pubcomp(p.mid))
    else:  # the PUBREC never reached the disk: the flow starts over, same packet id
        again = parse_publish(packet)
        assert (again.mid, again.dup, again.payload) == (p.mid, True, b"once")
        sub.send(gen_pubrec(p.mid))
        sub.expect_packet(gen_pubrel(p.mid))
        sub.send(gen_pubcomp(p.mid))
    assert consume(sub, 0) == []


# -- 4. incoming QoS 2 awaiting PUBREL ------------------------------------------------------
def test_incoming_qos2_awaiting_pubrel_survives_kill_9(make_node, clients, tmp_path) -> None:
    """A persistent publisher sends a QoS 2 PUBLISH and gets PUBREC; kill -9 before
    its PUBREL.  After a restart the node still knows the packet id: a re-sent
    PUBLISH (DUP) is acknowledged but not delivered again, and PUBREL gets PUBCOMP
    (not "packet id not found")."""
    node = make_node(API, data_dir=tmp_path / "d")
    topic, pid, sid = uid("aw"), uid("pub"), uid("sub")
    subscriber(clients, node, sid, [(topic, 2)])
    pub = connect(clients, node, pid)
    pub.send(gen_publish(topic, 2, b"only-once", mid=77))
    pub.expect_packet(gen_pubrec(77))

    crash(node)
    node.start()
    pub = connect(clients, node, pid, present=True)
    pub.send(gen_publish(topic, 2, b"only-once", mid=77, dup=True))
    pub.expect_packet(gen_pubrec(77))
    pub.send(gen_pubrel(77))
    pub.expect_packet(gen_pubcomp(77))
    pub.disconnect()
    with node.api() as api:
        counters = api.get("/metrics/").json()["data"][0]["metrics"]
    assert counters["packets/pubrel/missed"] == 0  # 3.1.1's PUBCOMP has no reason code
    sub = connect(clients, node, sid, present=True)
    got = consume(sub, 1)
    assert [p.payload for p in got] == [b"only-once"]
    # a fresh flow with the same id afterwards is a new message
    pub = connect(clients, node, pid, present=True)
    publish(pub, topic, b"new", 2, mid=77)
    assert [p.payload for p in consume(sub, 1)] == [b"new"]


# -- 5. session expiry across a restart ---------------------------------------------------
def test_sessions_expired_while_down_are_discarded_on_start(make_node, clients,
                                                            tmp_path) -> None:
    """session.expiry_interval 2s: the node stops with the sessions on disk; it
    starts again after they expired: clean session 0 gets session present 0, and
    the store no longer holds them."""
    node = make_node({"session.expiry_interval": "2s"}, data_dir=tmp_path / "d")
    topic, a, b = uid("exp"), uid("a"), uid("b")
    subscriber(clients, node, a, [(topic, 1)])
    subscriber(clients, node, b, [(topic, 1)])
    pub = connect(clients, node, uid("p"), clean=True)
    publish(pub, topic, b"queued", 1)
    pub.disconnect()
    offline_at = time.time()
    sigterm(node)
    assert sorted(on_disk(node, "SELECT client_id FROM sessions")) == sorted([(a,), (b,)])
    assert on_disk(node, HELD)[0][0] == 2
    time.sleep(max(0.0, offline_at + 2.3 - time.time()))  # past the expiry, while down

    node.start()
    node.wait_log(r"restored 0 sessions \(2 expired\)")
    connect(clients, node, a, present=False).disconnect()
    wait_until(lambda: on_disk(node, "SELECT client_id FROM sessions") == [(a,)],
               message="only the new session of a on disk")
    sigterm(node)
    for table in ("subscriptions", "session_messages", "messages", "single_messages"):
        assert on_disk(node, f"SELECT count(*) FROM {table}")[0][0] == 0, table


# -- 5b. messages held by one session and by several, and the previous schema ------------
def test_a_message_held_by_several_sessions_survives_kill_9_for_each(make_node, clients,
                                                                       tmp_path) -> None:
    """Three persistent sessions subscribed to one topic (so each message is held by
    three, its body shared) and one to a topic of its own (each message held by it
    alone): kill -9, then each gets all of its messages; one of the three
    acknowledges, kill -9 again, and the other two still get theirs, once."""
    node = make_node({}, data_dir=tmp_path / "d")
    topic, own = uid("fan"), uid("own")
    subs = [uid(f"s{i}") for i in range(3)]
    for cid in subs:
        subscriber(clients, node, cid, [(topic, 1)])
    alone = uid("alone")
    subscriber(clients, node, alone, [(own, 2)])
    pub = connect(clients, node, uid("p"), clean=True)
    for i in range(1, 11):
        publish(pub, topic, str(i).encode(), 1, mid=i)
        publish(pub, own, str(i).encode(), 2, mid=100 + i)
    pub.disconnect()
    assert on_disk(node, HELD)[0][0] == 40
    crash(node)
    node.start()
    first = connect(clients, node, subs[0], present=True)
    assert numbers(consume(first, 10)) == list(range(1, 11))
    go_offline(first)
    wait_on_disk(node, HELD, (), 30)
    crash(node)
    node.start()
    for cid in subs[1:]:
        got = consume(connect(clients, node, cid, present=True), 10)
        assert numbers(got) == list(range(1, 11))
    got = consume(connect(clients, node, alone, present=True), 10)
    assert numbers(got) == list(range(1, 11))
    assert {p.qos for p in got} == {2}
    assert consume(connect(clients, node, subs[0], present=True), 0) == []


#: A data dir's store written by Starling at b21a493 (schema 2): see
#: tests/store/test_store_sqlite.py for what it holds.
STORE_V2 = Path(__file__).resolve().parent.parent / "store" / "data" / "store-v2.db"


def test_a_store_of_the_previous_schema_is_migrated_with_nothing_lost(make_node, clients,
                                                                      tmp_path) -> None:
    """A node starts on a data dir written by the previous schema: the sessions
    resume with everything they held (the unacknowledged in-flight message again,
    with DUP, then the queue in order), the retained message is there; once
    acknowledged, nothing comes back after kill -9."""
    data = tmp_path / "d"
    data.mkdir()
    (data / DB).write_bytes(STORE_V2.read_bytes())
    db = sqlite3.connect(data / DB)  # as if the node had stopped just now
    db.execute("UPDATE sessions SET disconnected_at = ?", (time.time(),))
    db.commit()
    db.close()
    node = make_node({}, data_dir=data)
    a = connect(clients, node, "old-a", present=True)
    got = consume(a, 6)
    assert [p.payload for p in got] == [b"in-flight", b"single-1", b"single-2", b"single-3",
                                        b"shared", b"kept"]
    assert [p.dup for p in got] == [True] + [False] * 5
    b = connect(clients, node, "old-b", present=True)
    got = consume(b, 1)
    assert [(p.payload, p.qos) for p in got] == [(b"shared", 2)]
    fresh = connect(clients, node, uid("r"), clean=True)
    fresh.send(gen_subscribe(1, [("old/retained", 1)]))
    fresh.expect_packet(gen_suback(1, [1]))
    kept = fresh.expect_publish()
    assert (kept.payload, kept.retain) == (b"kept", True)
    for c in (a, b):
        go_offline(c)
    wait_on_disk(node, HELD, (), 0)
    crash(node)
    node.start()
    for cid in ("old-a", "old-b"):
        assert consume(connect(clients, node, cid, present=True), 0) == []


# -- 6. bounded ------------------------------------------------------------------------------
def test_offline_queue_on_disk_is_bounded_by_max_mqueue_len(make_node, clients,
                                                            tmp_path) -> None:
    """More than max_mqueue_len messages for an offline session: the oldest are
    dropped on disk as in memory; after a restart the newest max_mqueue_len come."""
    node = make_node({"session.max_mqueue_len": "5"}, data_dir=tmp_path / "d")
    topic, cid = uid("bound"), uid("sub")
    subscriber(clients, node, cid, [(topic, 1)])
    pub = connect(clients, node, uid("p"), clean=True)
    for i in range(1, 13):
        publish(pub, topic, str(i).encode(), 1, mid=i)
    pub.disconnect()
    sigterm(node)
    assert on_disk(node, HELD)[0][0] == 5
    assert on_disk(node, BODIES)[0][0] == 5
    node.start()
    got = consume(connect(clients, node, cid, present=True), 5)
    assert numbers(got) == list(range(8, 13))


def test_deleted_retained_message_is_deleted_on_disk(make_node, clients, tmp_path) -> None:
    node = make_node({}, data_dir=tmp_path / "d")
    base = uid("rd")
    pub = connect(clients, node, uid("p"), clean=True)
    publish(pub, f"{base}/gone", b"x", 1, retain=True)
    publish(pub, f"{base}/kept", b"y", 1, mid=2, retain=True)
    publish(pub, f"{base}/gone", b"", 1, mid=3, retain=True)  # delete
    pub.disconnect()
    crash(node)  # the deletion was acknowledged, so it is on disk already
    assert on_disk(node, "SELECT topic FROM retained") == [(f"{base}/kept",)]
    node.start()
    c = connect(clients, node, uid("late"), clean=True)
    c.send(gen_subscribe(1, f"{base}/#", 1))
    c.expect_packet(gen_suback(1, 1))
    got = consume(c, 1)
    assert [(p.topic_str, p.payload, p.retain) for p in got] == [(f"{base}/kept", b"y", True)]


# -- 7. management data ----------------------------------------------------------------------
def test_management_app_survives_a_restart(make_node, tmp_path) -> None:
    node = make_node(API, data_dir=tmp_path / "d")
    with node.api() as api:
        r = api.post("/apps/", json={"app_id": "ops", "name": "Ops", "secret": "s3cret"})
        assert r.status_code == 200 and r.json()["code"] == 0, r.text
    with node.api(("ops", "s3cret")) as api:
        assert api.get("/apps/").status_code == 200
    crash(node)  # the apps table is written through the same journal
    node.start()
    with node.api(("ops", "s3cret")) as api:
        r = api.get("/apps/ops")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["secret"] == "s3cret"
        assert r.json()["data"]["name"] == "Ops"
    with node.api(("ops", "wrong")) as api:
        assert api.get("/apps/").status_code == 401
    # and a deleted app stays deleted
    with node.api() as api:
        assert api.delete("/apps/ops").status_code == 200
    sigterm(node)
    node.start()
    with node.api(("ops", "s3cret")) as api:
        assert api.get("/apps/").status_code == 401


# -- 8. a store that is not a current Starling store ----------------------------------------
def start_failing(data_dir: Path) -> tuple[int, str]:
    """Run `starling start` on `data_dir`, expecting it to refuse: (exit code, log)."""
    args = [sys.executable, "-m", "starling", "start", "--data-dir", str(data_dir),
            "--node-name", "bad@127.0.0.1",
            "--set", "listeners.tcp.default.bind=127.0.0.1:0",
            "--set", "listeners.tcp.internal.bind=off", "--set", "listeners.ws.default.bind=off",
            "--set", "management.bind=off", "--set", "dashboard.bind=off"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    with proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "node started" in line:
                proc.kill()
                proc.wait()
                raise AssertionError("the node started on a bad store:\n" + "".join(lines))
        code = proc.wait(20)
    return code, "".join(lines)


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(random.Random(5).randrange(256) for _ in range(64 * 1024)))


def _newer(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id = {STARLING_APP_ID}")
    db.execute("CREATE TABLE kv (tbl TEXT, key TEXT, value TEXT)")
    db.execute("PRAGMA user_version = 999")
    db.close()


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.execute("INSERT INTO invoices VALUES (1, 9.5)")
    db.commit()
    db.close()


@pytest.mark.parametrize(("make_file", "says"), [
    (_garbage, "not a usable SQLite database"),
    (_newer, "999"),
    (_foreign, "not a Starling store"),
], ids=["garbage", "newer-version", "foreign-sqlite"])
def test_bad_store_file_stops_the_node(tmp_path, make_file, says: str) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    path = data_dir / DB
    make_file(path)
    before = path.read_bytes()
    code, log = start_failing(data_dir)
    assert code != 0, log
    assert str(path) in log, log
    assert says in log, log
    assert "Traceback" not in log, log
    assert path.read_bytes() == before  # left as it was, not replaced by an empty store


def quick_check(path: Path) -> list[str] | None:
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError:
        return None  # too damaged to even check
    finally:
        db.close()


def test_damaged_store_stops_the_node(make_node, clients, tmp_path) -> None:
    """A real store with one damaged data page; its header (application id,
    version) and schema are intact, so only an integrity check notices."""
    node = make_node({}, data_dir=tmp_path / "d")
    base = uid("r")
    pub = connect(clients, node, uid("p"), clean=True)
    for i in range(200):
        publish(pub, f"{base}/{i}", b"z" * 500, 1, retain=True)
    pub.disconnect()
    sigterm(node)
    path = node.data_dir / DB
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    original = path.read_bytes()
    for page in range(2, len(original) // page_size + 1):
        data = bytearray(original)
        at = (page - 1) * page_size
        data[at + 8:at + page_size] = bytes((i * 37 + page) & 0xFF for i in range(page_size - 8))
        path.write_bytes(bytes(data))
        problems = quick_check(path)
        if problems is not None and problems != ["ok"]:
            break
    else:
        pytest.fail("could not damage a single page detectably")
    code, log = start_failing(node.data_dir)
    assert code != 0, log
    assert str(path) in log and "Traceback" not in log, log


# -- 9. memory backend ------------------------------------------------------------------------
def test_memory_backend_keeps_nothing_across_a_restart(make_node, clients, tmp_path) -> None:
    node = make_node({"store.backend": "memory"}, data_dir=tmp_path / "d")
    topic, cid = uid("mem"), uid("sub")
    c = connect(clients, node, cid)
    c.send(gen_subscribe(1, topic, 1))
    c.expect_packet(gen_suback(1, 1))
    go_offline(c)
    pub = connect(clients, node, uid("p"), clean=True)
    publish(pub, topic, b"queued", 1)
    publish(pub, f"{topic}/r", b"retained", 1, mid=2, retain=True)
    pub.disconnect()
    assert not (node.data_dir / DB).exists()
    sigterm(node)
    node.start()
    assert not (node.data_dir / DB).exists()
    c = connect(clients, node, cid, present=False)
    c.send(gen_subscribe(1, f"{topic}/#", 1))
    c.expect_packet(gen_suback(1, 1))
    assert consume(c, 0) == []


# -- 10. relaxed durability ----------------------------------------------------------------------
def test_relaxed_mode_clean_stop_commits_everything(make_node, clients, tmp_path) -> None:
    """store.durability=relaxed with a long interval: nothing is committed when the
    PUBACK goes out, but SIGTERM commits everything before the node exits."""
    node = make_node({"store.durability": "relaxed", "store.commit_interval": "1h"},
                     data_dir=tmp_path / "d")
    topic, cid = uid("rx"), uid("sub")
    c = connect(clients, node, cid)
    c.send(gen_subscribe(1, topic, 1))
    c.expect_packet(gen_suback(1, 1))
    go_offline(c)
    pub = connect(clients, node, uid("p"), clean=True)
    for i in range(1, 31):
        publish(pub, topic, str(i).encode(), 1, mid=i)
    pub.disconnect()
    assert on_disk(node, HELD)[0][0] == 0
    sigterm(node)
    node.start()
    got = consume(connect(clients, node, cid, present=True), 30)
    assert numbers(got) == list(range(1, 31))


def test_relaxed_mode_commits_on_the_interval(make_node, clients, tmp_path) -> None:
    """Once the interval has passed the messages are on disk and survive kill -9."""
    node = make_node({"store.durability": "relaxed", "store.commit_interval": "100ms"},
                     data_dir=tmp_path / "d")
    topic, cid = uid("rx"), uid("sub")
    subscriber(clients, node, cid, [(topic, 1)])
    pub = connect(clients, node, uid("p"), clean=True)
    for i in range(1, 11):
        publish(pub, topic, str(i).encode(), 1, mid=i)
    pub.disconnect()
    wait_on_disk(node, HELD, (), 10)
    crash(node)
    node.start()
    got = consume(connect(clients, node, cid, present=True), 10)
    assert numbers(got) == list(range(1, 11))


# -- durable mode: the acknowledgement waits for the commit ----------------------------------------
def test_puback_waits_for_the_commit_and_a_failed_commit_is_retried(make_node, clients,
                                                                     tmp_path) -> None:
    """With the store's write lock held the node cannot commit: no PUBACK may go out
    for a message to a persistent session, not even after the commit failed (SQLite
    gives up after 5 s busy).  Once the lock is gone the PUBACK comes, and the
    message survives kill -9."""
    node = make_node({}, data_dir=tmp_path / "d")
    topic, cid = uid("lock"), uid("sub")
    subscriber(clients, node, cid, [(topic, 1)])
    pub = connect(clients, node, uid("p"), clean=True)
    with write_locked(node):
        pub.send(gen_publish(topic, 1, b"precious", mid=5))
        node.wait_log("store commit failed", timeout=15)
        with pytest.raises(TimeoutError):
            got = pub.read(0.5)
            pytest.fail(f"acknowledged while not on disk: {got}")
    pub.expect_packet(gen_puback(5), timeout=10, what="PUBACK after the lock is released")
    crash(node)
    node.start()
    got = consume(connect(clients, node, cid, present=True), 1)
    assert [p.payload for p in got] == [b"precious"]


def test_suback_waits_until_the_subscription_is_on_disk(make_node, clients, tmp_path) -> None:
    """A session on disk whose SUBACK'd subscription is not: after a crash the
    client reconnects with session present 1, so it does not subscribe again, and
    misses every message for the lost subscription."""
    node = make_node({}, data_dir=tmp_path / "d")
    topic, cid = uid("sa"), uid("sub")
    c = connect(clients, node, cid)
    wait_on_disk(node, "SELECT count(*) FROM sessions WHERE client_id = ?", (cid,), 1)
    with write_locked(node):
        c.send(gen_subscribe(1, topic, 1))
        try:
            c.expect_packet(gen_suback(1, 1), timeout=1.0)
            subacked = True
        except AssertionError:
            subacked = False  # held until committed: fine
        crash(node)
    node.start()
    c = connect(clients, node, cid, present=True)
    if subacked:
        pub = connect(clients, node, uid("p"), clean=True)
        publish(pub, topic, b"for-the-subscriber", 1)
        assert [p.payload for p in consume(c, 1, timeout=1.5)] == [b"for-the-subscriber"], (
            "SUBACK went out before the subscription was committed")


def test_unsuback_waits_until_the_unsubscription_is_on_disk(make_node, clients,
                                                             tmp_path) -> None:
    """UNSUBACK promises the subscription is gone: not before that is committed
    (else a crash brings it back, and the client gets messages it gave up)."""
    node = make_node({}, data_dir=tmp_path / "d")
    topic, cid = uid("us"), uid("sub")
    c = connect(clients, node, cid)
    c.send(gen_subscribe(1, topic, 1))
    c.expect_packet(gen_suback(1, 1))
    wait_on_disk(node, "SELECT count(*) FROM subscriptions WHERE client_id = ?", (cid,), 1)
    with write_locked(node):
        c.send(gen_unsubscribe(2, topic))
        node.wait_log("store commit failed", timeout=15)
        with pytest.raises(TimeoutError):
            got = c.read(0.5)
            pytest.fail(f"UNSUBACK before the commit: {got}")
    c.expect_packet(gen_unsuback(2), timeout=10, what="UNSUBACK once committed")
    crash(node)
    node.start()
    c = connect(clients, node, cid, present=True)
    pub = connect(clients, node, uid("p"), clean=True)
    publish(pub, topic, b"after-unsubscribe", 1)
    assert consume(c, 0, timeout=3) == []


def test_connack_of_a_new_persistent_session_waits_for_its_commit(make_node, clients,
                                                                  tmp_path) -> None:
    """CONNACK of a persistent session promises the session exists: not before it is
    on disk.  The client's own packets sent meanwhile are answered after it."""
    node = make_node({}, data_dir=tmp_path / "d")
    cid = uid("ca")
    c = clients(node)
    with write_locked(node):
        c.send(gen_connect(cid, clean=False))
        c.send(gen_pingreq())
        node.wait_log("store commit failed", timeout=15)
        with pytest.raises(TimeoutError):
            got = c.read(0.5)
            pytest.fail(f"answered before the session was committed: {got}")
    c.expect_packet(gen_connack(0, False), timeout=10, what="CONNACK once committed")
    c.expect_packet(gen_pingresp(), what="PINGRESP after the CONNACK")
    crash(node)
    node.start()
    connect(clients, node, cid, present=True)


def test_resent_qos2_publish_is_acknowledged_only_once_committed(make_node, clients,
                                                                 tmp_path) -> None:
    """A QoS 2 PUBLISH resent (DUP) after a reconnect, while its first copy's writes
    are not committed: the PUBREC for the resend waits for them too."""
    node = make_node({}, data_dir=tmp_path / "d")
    topic, cid, pid = uid("q2"), uid("sub"), uid("pub")
    subscriber(clients, node, cid, [(topic, 2)])
    pub = connect(clients, node, pid)
    wait_on_disk(node, "SELECT count(*) FROM sessions WHERE client_id = ?", (pid,), 1)
    with write_locked(node):
        pub.send(gen_publish(topic, 2, b"once", mid=7))
        node.wait_log("store commit failed", timeout=15)
        pub.close()
        again = clients(node)
        again.send(gen_connect(pid, clean=False))
        again.send(gen_publish(topic, 2, b"once", mid=7, dup=True))
        with pytest.raises(TimeoutError):
            got = again.read(0.5)
            pytest.fail(f"answered before the first copy was committed: {got}")
    again.expect_packet(gen_connack(0, True), timeout=10)
    again.expect_packet(gen_pubrec(7), timeout=10, what="PUBREC for the resend")
    crash(node)
    node.start()
    assert [p.payload for p in consume(connect(clients, node, cid, present=True), 1)] == [
        b"once"]
