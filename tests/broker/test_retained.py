"""Retained messages: one per topic, found by filter [MQTT-3.3.1-5 .. -11]."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starling.broker import Message
from starling.broker.retained import RetainedStore
from starling.mqtt import matches


def msg(topic: str, payload: bytes = b"x", qos: int = 0) -> Message:
    return Message(topic, payload, qos=qos, retain=True)


def store_with(*topics: str) -> RetainedStore:
    store = RetainedStore()
    for topic in topics:
        store.put(msg(topic, topic.encode() or b"-"))
    return store


def matched(store: RetainedStore, topic_filter: str) -> list[str]:
    found = [m.topic for m in store.match(topic_filter)]
    assert len(found) == len(set(found)), f"duplicates: {found}"
    return sorted(found)


# -- put / replace / delete ------------------------------------------------------------

def test_put_and_get() -> None:
    store = RetainedStore()
    assert len(store) == 0
    assert store.get("a/b") is None
    m = msg("a/b", b"1")
    store.put(m)
    assert len(store) == 1
    assert store.get("a/b") is m
    assert store.topics() == ["a/b"]


def test_put_replaces_message_on_the_same_topic() -> None:
    """[MQTT-3.3.1-5] the new retained message replaces any existing one."""
    store = RetainedStore()
    first, second = msg("a/b", b"1"), msg("a/b", b"2", qos=1)
    store.put(first)
    store.put(second)
    assert len(store) == 1
    assert store.get("a/b") is second
    assert store.match("a/b") == [second]
    assert store.match("a/+") == [second]
    assert store.match("#") == [second]


def test_empty_payload_deletes() -> None:
    """[MQTT-3.3.1-10] [MQTT-3.3.1-11] a zero-byte retained message removes the retained
    message for that topic and is not itself stored."""
    store = store_with("a/b", "a/c")
    store.put(msg("a/b", b""))
    assert store.get("a/b") is None
    assert len(store) == 1
    assert store.topics() == ["a/c"]
    assert matched(store, "a/#") == ["a/c"]
    assert store.match("a/b") == []


def test_empty_payload_for_unknown_topic_stores_nothing() -> None:
    store = RetainedStore()
    store.put(msg("a/b", b""))
    assert len(store) == 0
    assert store.match("#") == []


def test_delete_returns_whether_something_was_removed() -> None:
    store = store_with("a/b")
    assert store.delete("x") is False
    assert store.delete("a") is False  # a prefix of a stored topic, not itself stored
    assert store.delete("a/b") is True
    assert store.delete("a/b") is False
    assert len(store) == 0


def test_delete_parent_keeps_children_and_vice_versa() -> None:
    store = store_with("a", "a/b", "a/b/c")
    assert store.delete("a/b")
    assert matched(store, "#") == ["a", "a/b/c"]
    assert matched(store, "a/+") == []
    assert matched(store, "a/+/c") == ["a/b/c"]
    assert store.delete("a/b/c")
    assert matched(store, "#") == ["a"]
    assert matched(store, "a/#") == ["a"]


def test_trie_is_pruned_after_deletes() -> None:
    topics = ["a", "a/b", "a/b/c", "/", "//x", "$SYS/uptime", "b/c/d"]
    store = store_with(*topics)
    for topic in topics:
        store.put(msg(topic, b""))
    assert len(store) == 0
    assert store.match("#") == []
    assert store._root.children == {}  # white box: no empty nodes left behind


# -- match -----------------------------------------------------------------------------

TOPICS = ["a", "a/b", "a/c", "a/b/c", "a//c", "a/", "/", "/a", "b", "$SYS", "$SYS/uptime",
          "$SYS/brokers/x", "$other/a", "x/$SYS"]

MATCH_TABLE = [
    ("a", ["a"]),
    ("a/b", ["a/b"]),
    ("nope", []),
    ("a/+", ["a/", "a/b", "a/c"]),
    ("a/+/c", ["a//c", "a/b/c"]),
    ("+", ["a", "b"]),
    ("+/+", ["/", "/a", "a/", "a/b", "a/c", "x/$SYS"]),
    ("/+", ["/", "/a"]),
    ("a/#", ["a", "a/", "a//c", "a/b", "a/b/c", "a/c"]),
    ("a/b/#", ["a/b", "a/b/c"]),
    ("+/#", [t for t in TOPICS if not t.startswith("$")]),
    ("#", [t for t in TOPICS if not t.startswith("$")]),
    ("$SYS/#", ["$SYS", "$SYS/brokers/x", "$SYS/uptime"]),
    ("$SYS/+", ["$SYS/uptime"]),
    ("$SYS/+/x", ["$SYS/brokers/x"]),
    ("$SYS", ["$SYS"]),
    ("$other/+", ["$other/a"]),
    ("+/$SYS", ["x/$SYS"]),
    ("+/uptime", []),
]


@pytest.mark.parametrize(("topic_filter", "expected"), MATCH_TABLE,
                         ids=[f for f, _ in MATCH_TABLE])
def test_match_table(topic_filter: str, expected: list[str]) -> None:
    assert matched(store_with(*TOPICS), topic_filter) == sorted(expected)


def test_match_returns_the_stored_message_objects() -> None:
    store = RetainedStore()
    m = msg("s/1", b"payload", qos=2)
    store.put(m)
    assert store.match("s/+") == [m]
    assert store.match("s/1") == [m]
    assert store.match("#")[0] is m


# -- hypothesis: the store agrees with a naive matcher ---------------------------------

level = st.sampled_from(["a", "b", "", "$SYS", "$x"])
filter_level = st.sampled_from(["a", "b", "", "$SYS", "+"])
topics = st.lists(level, min_size=1, max_size=4).map("/".join)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(filter_level, min_size=0, max_size=3))
    if not levels or draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(topics, st.sampled_from([b"", b"1", b"2"])), min_size=1,
                    max_size=25),
       filters=st.lists(topic_filters(), min_size=1, max_size=8))
def test_store_agrees_with_naive_matcher(ops: list[tuple[str, bytes]],
                                         filters: list[str]) -> None:
    store = RetainedStore()
    model: dict[str, Message] = {}
    for topic, payload in ops:
        m = msg(topic, payload)
        store.put(m)
        if payload:
            model[topic] = m
        else:
            model.pop(topic, None)
    assert len(store) == len(model)
    assert sorted(store.topics()) == sorted(model)
    for topic_filter in filters:
        got = store.match(topic_filter)
        expected = [m for t, m in model.items() if matches(topic_filter, t)]
        assert sorted(m.id for m in got) == sorted(m.id for m in expected), topic_filter
    for topic in list(model):
        assert store.delete(topic)
    assert store._root.children == {}


# -- expiry (the retainer's expiry_interval and MQTT 5.0 Message Expiry) ----------------

def test_expire_drops_messages_whose_deadline_passed() -> None:
    store = RetainedStore()
    own = msg("own/expiry")
    own.expires_at = time.monotonic() + 10
    store.put(own)
    forever = msg("no/expiry")
    store.put(forever)
    assert store.expire(time.monotonic()) == []
    assert store.expire(time.monotonic() + 11) == ["own/expiry"]
    assert store.topics() == ["no/expiry"]
    # An interval applies to messages without their own expiry, from their publication.
    store.set_expiry_interval(5)
    assert store.is_expired(forever, time.monotonic() + 6)
    assert store.expire(time.monotonic() + 6) == ["no/expiry"]
    assert len(store) == 0


def test_replaced_messages_do_not_expire_their_successor() -> None:
    store = RetainedStore()
    store.set_expiry_interval(5)
    first = msg("a")
    store.put(first)
    second = msg("a", b"2")
    second.timestamp = first.timestamp + 100  # published much later
    store.put(second)
    assert store.expire(time.monotonic() + 6) == []
    assert store.get("a") is second


def test_deadline_heap_stays_proportional_to_the_store() -> None:
    store = RetainedStore()
    store.set_expiry_interval(3600)
    for i in range(10_000):
        store.put(msg("same/topic", str(i).encode()))
    assert len(store) == 1
    assert len(store._deadlines) <= 2 * len(store) + 1024 + 1
