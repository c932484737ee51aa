"""What travels between nodes: names on NATS, forwarded batches, session records."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starling.broker import Message
from starling.cluster.forwards import Batches, Target, decode
from starling.cluster.names import MAX_TOKEN, Names, token
from starling.cluster.wire import (
    WireError,
    decode_body,
    encode_body,
    session_record_json,
    session_record_of,
)
from starling.mqtt import PropertyId
from starling.store import (
    MessageRecord,
    SessionMessageRecord,
    SessionRecord,
    SubscriptionRecord,
)

#: nats-py's key check, and a NATS subject token (no '.', no whitespace, no wildcards).
KV_KEY = re.compile(r"^[-/_=\.a-zA-Z0-9]+$")
SUBJECT_TOKEN = re.compile(r"^[^.\s*>]+$")


@given(st.text())
def test_token_is_a_valid_key_and_subject_token(text: str) -> None:
    name = token(text)
    assert KV_KEY.match(name) and SUBJECT_TOKEN.match(name)
    assert not name.startswith(".") and not name.endswith(".")
    assert len(name) <= max(MAX_TOKEN, 65)


@given(st.text(), st.text())
def test_tokens_of_different_texts_differ(a: str, b: str) -> None:
    if a != b:
        assert token(a) != token(b)


def test_token_keeps_plain_names_readable() -> None:
    assert token("node-1") == "node-1"
    assert token("starling@10.0.0.1") == "starling=4010=2E0=2E0=2E1"
    assert token("") == "=="
    long = "x" * 300
    assert token(long).startswith("_") and token(long) != token(long + "y")


def test_clusters_have_separate_subjects_and_buckets() -> None:
    a, b = Names("a"), Names("b")
    assert a.forward("n1") != b.forward("n1")
    assert a.bucket("nodes") == "starling_a_nodes" != b.bucket("nodes")
    assert a.rpc("x@y.z") == "starling.a.rpc.x=40y=2Ez"


def batches(limit: int = 1 << 20, max_payload: int = 1 << 20) -> tuple[Batches, list[int]]:
    """A turn's batches outside any event loop: drops are listed."""
    dropped: list[int] = []
    return Batches(limit, lambda: None, dropped.append, max_payload), dropped


def test_a_batch_carries_everything_a_subscriber_needs() -> None:
    props = {PropertyId.CONTENT_TYPE: "text/plain",
             PropertyId.USER_PROPERTY: [("k", "v"), ("k", "w")]}
    first = Message("a/ü/c", b"\x00\xffpayload", 2, True, "pub-1", "alice", None, props,
                    1234.5)
    first.expires_at = time.monotonic() + 30
    second = Message("$SYS/brokers/n/uptime", b"1 s", 0, False, "", None, sys=True)
    turn, dropped = batches()
    turn.add(first, [("to-b", True, ())])
    turn.add(second, [("to-b", False, (("g1", "a/+/c"), ("$queue", "a/#")))])
    [(subject, data, count)] = turn.close()
    assert (subject, count, turn.count, dropped) == ("to-b", 2, 2, [])
    records = decode(data)
    assert [(plain, groups) for plain, groups, _ in records] == [
        (True, ()), (False, (("g1", "a/+/c"), ("$queue", "a/#")))]
    got = records[0][2]
    assert (got.topic, got.payload, got.qos, got.retain, got.sender, got.username,
            got.timestamp, got.sys) == ("a/ü/c", b"\x00\xffpayload", 2, True, "pub-1",
                                        "alice", 1234.5, False)
    assert got.properties == props
    assert got.expires_at is not None and 29 < got.expires_at - time.monotonic() <= 30
    sys_message = records[1][2]
    assert sys_message.sys and sys_message.username is None and sys_message.expires_at is None


def test_one_batch_per_destination_per_turn_in_order() -> None:
    turn, dropped = batches()
    targets: dict[str, list[Target]] = {
        "b": [("to-b", True, ())], "c": [("to-c", True, ())],
        "bc": [("to-b", True, ()), ("to-c", False, (("g", "t/#"),))]}
    sent = []
    for i in range(30):
        where = ("b", "c", "bc")[i % 3]
        turn.add(Message(f"t/{i % 4}", b"%d" % i, i % 3, False, f"pub-{i % 2}"), targets[where])
        sent.append((where, i))
    ready = turn.close()
    assert [subject for subject, _, _ in ready] == ["to-b", "to-c"]
    got = {subject: [(m.topic, int(m.payload), m.qos, m.sender, plain, groups)
                     for plain, groups, m in decode(data)] for subject, data, _ in ready}
    for node, subject in (("b", "to-b"), ("c", "to-c")):
        expected = [(f"t/{i % 4}", i, i % 3, f"pub-{i % 2}",
                     node == "b" or where == "c", (("g", "t/#"),) if where == "bc" and
                     node == "c" else ()) for where, i in sent if node in where]
        assert got[subject] == expected
    assert turn.close() == [] and dropped == []


def test_a_turn_past_the_limit_drops_and_counts() -> None:
    turn, dropped = batches(limit=1000)
    for _ in range(20):
        turn.add(Message("t", b"x" * 100), [("to-b", True, ())])
    [(_, data, count)] = turn.close()
    assert count == len(decode(data)) == 8 and sum(dropped) == 12


def test_a_batch_over_max_payload_is_split_and_oversized_records_dropped() -> None:
    turn, dropped = batches(max_payload=4096)
    for i in range(40):
        turn.add(Message("t", bytes([i]) * 300), [("to-b", True, ())])
    turn.add(Message("t", b"y" * 5000), [("to-b", True, ())])
    ready = turn.close()
    assert len(ready) > 1 and all(len(data) <= 4096 for _, data, _ in ready)
    payloads = [m.payload for _, data, _ in ready for _, _, m in decode(data)]
    assert payloads == [bytes([i]) * 300 for i in range(40)] and dropped == [1]


def test_many_distinct_topics_close_the_turn_early() -> None:
    turn, dropped = batches(max_payload=64 * 1024)
    for i in range(5000):
        turn.add(Message(f"sensor/{i:06d}/temperature", b"1"), [("to-b", True, ())])
    ready = turn.close()
    assert len(ready) > 1 and all(len(data) <= 64 * 1024 for _, data, _ in ready)
    topics = [m.topic for _, data, _ in ready for _, _, m in decode(data)]
    assert topics == [f"sensor/{i:06d}/temperature" for i in range(5000)] and dropped == []


@given(st.text(max_size=50), st.binary(max_size=200), st.integers(0, 2), st.booleans(),
       st.text(max_size=20), st.none() | st.text(max_size=20))
def test_body_round_trip(topic: str, payload: bytes, qos: int, retain: bool, sender: str,
                         username: str | None) -> None:
    message = Message(topic, payload, qos, retain, sender, username)
    got, _end = decode_body(encode_body(message))
    assert (got.topic, got.payload, got.qos, got.retain, got.sender, got.username) == (
        topic, payload, qos, retain, sender, username)


@given(st.lists(st.tuples(st.text(max_size=30), st.binary(max_size=100), st.integers(0, 2),
                          st.booleans(), st.text(max_size=10), st.none() | st.text(max_size=10),
                          st.booleans(), st.lists(st.tuples(st.text(max_size=5),
                                                            st.text(max_size=8)), max_size=3)),
                max_size=20))
def test_batch_round_trip(items: list[tuple[str, bytes, int, bool, str, str | None, bool,
                                            list[tuple[str, str]]]]) -> None:
    turn, dropped = batches()
    for topic, payload, qos, retain, sender, username, plain, groups in items:
        turn.add(Message(topic, payload, qos, retain, sender, username),
                 [("to-b", plain, tuple(groups))])
    ready = turn.close()
    got = [(m.topic, m.payload, m.qos, m.retain, m.sender, m.username, plain, list(groups))
           for _, data, _ in ready for plain, groups, m in decode(data)]
    assert got == items and dropped == []


@pytest.mark.parametrize("cut", [1, 5, 20, 40])
def test_truncated_batch_is_refused(cut: int) -> None:
    turn, _ = batches()
    turn.add(Message("t/x", b"payload-bytes", 1, False, "p", "u"), [("b", True, ())])
    [(_, data, _)] = turn.close()
    with pytest.raises(WireError):
        decode(data[:-cut])


def test_a_batch_of_another_format_is_refused() -> None:
    turn, _ = batches()
    turn.add(Message("t/x", b"payload"), [("b", True, ())])
    [(_, data, _)] = turn.close()
    with pytest.raises(WireError, match="format"):
        decode(b"\x01" + data[1:])
    with pytest.raises(WireError):
        decode(b"")


def test_session_record_round_trip() -> None:
    message = MessageRecord(7, "t/1", b"\x01\x02", 1, False, b"\x00", "p", None, 10.0, None)
    record = SessionRecord(
        "dev ice/ü", "bob", 3600.0, 100.0, None,
        [SubscriptionRecord("a/#", 1, True, True, 2)],
        [SessionMessageRecord(message, 1, 1, False, None),
         SessionMessageRecord(message, 2, 2, True, 17, True)],
        [5, 9])
    assert session_record_of(session_record_json(record)) == record


def test_bad_session_record_is_refused() -> None:
    with pytest.raises(WireError):
        session_record_of({"client_id": "x"})
