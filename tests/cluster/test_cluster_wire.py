"""What travels between nodes: names on NATS, forwarded batches, session records."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starling.broker import Message
from starling.cluster.names import MAX_TOKEN, Names, token
from starling.cluster.wire import (
    WireError,
    decode_batch,
    decode_body,
    encode_body,
    encode_route,
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


def test_a_batch_carries_everything_a_subscriber_needs() -> None:
    props = {PropertyId.CONTENT_TYPE: "text/plain",
             PropertyId.USER_PROPERTY: [("k", "v"), ("k", "w")]}
    first = Message("a/ü/c", b"\x00\xffpayload", 2, True, "pub-1", "alice", None, props,
                    1234.5)
    first.expires_at = time.monotonic() + 30
    second = Message("$SYS/brokers/n/uptime", b"1 s", 0, False, "", None, sys=True)
    data = (encode_route(True) + encode_body(first)
            + encode_route(False, (("g1", "a/+/c"), ("$queue", "a/#"))) + encode_body(second))
    records = list(decode_batch(data))
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


@given(st.text(max_size=50), st.binary(max_size=200), st.integers(0, 2), st.booleans(),
       st.text(max_size=20), st.none() | st.text(max_size=20))
def test_body_round_trip(topic: str, payload: bytes, qos: int, retain: bool, sender: str,
                         username: str | None) -> None:
    message = Message(topic, payload, qos, retain, sender, username)
    got, _end = decode_body(encode_body(message))
    assert (got.topic, got.payload, got.qos, got.retain, got.sender, got.username) == (
        topic, payload, qos, retain, sender, username)


@pytest.mark.parametrize("cut", [1, 5, 20, 40])
def test_truncated_batch_is_refused(cut: int) -> None:
    data = encode_route(True) + encode_body(Message("t/x", b"payload-bytes"))
    with pytest.raises(WireError):
        list(decode_batch(data[:-cut]))


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
