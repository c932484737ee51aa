"""The router: exact dict + wildcard trie, one entry per session with the best QoS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starling.broker.router import MATCH_CACHE, Router
from starling.mqtt import SubscriptionOptions, matches


@dataclass(frozen=True)
class FakeSession:
    """Any hashable object will do as a session for the router."""

    name: str


# Typed as Any: the router's signature names Session, but only hashes its sessions.
A: Any = FakeSession("a")
B: Any = FakeSession("b")
C: Any = FakeSession("c")


def opts(qos: int = 0, **kw: Any) -> SubscriptionOptions:
    return SubscriptionOptions(qos=qos, **kw)


def qos_map(result: dict[Any, SubscriptionOptions]) -> dict[Any, int]:
    return {session: o.qos for session, o in result.items()}


def router_with(*subs: tuple[str, Any, int]) -> Router:
    router = Router()
    for topic_filter, session, qos in subs:
        router.subscribe(topic_filter, session, opts(qos))
    return router


# -- table ---------------------------------------------------------------------------

ROUTE_TABLE: list[tuple[list[tuple[str, Any, int]], str, dict[Any, int]]] = [
    ([("a/b", A, 1)], "a/b", {A: 1}),
    ([("a/b", A, 1)], "a/c", {}),
    ([("a/b", A, 1)], "a", {}),
    ([("a/+", A, 0)], "a/b", {A: 0}),
    ([("a/+", A, 0)], "a/b/c", {}),
    ([("a/+", A, 0)], "a", {}),
    ([("a/+", A, 0)], "a/", {A: 0}),  # + matches an empty level
    ([("+/+", A, 0)], "/", {A: 0}),
    ([("+", A, 0)], "/", {}),
    ([("/+", A, 0)], "/x", {A: 0}),
    ([("a/+/c", A, 2)], "a//c", {A: 2}),
    ([("#", A, 1)], "a/b/c", {A: 1}),
    ([("#", A, 1)], "/", {A: 1}),
    ([("a/#", A, 1)], "a", {A: 1}),  # [MQTT-4.7.1-2] # includes the parent level
    ([("a/#", A, 1)], "a/b/c", {A: 1}),
    ([("a/#", A, 1)], "ab", {}),
    ([("a/b/#", A, 1)], "a", {}),
    ([("+/#", A, 1)], "a", {A: 1}),
    ([("a/+/#", A, 1)], "a/b", {A: 1}),
    ([("a/+/#", A, 1)], "a", {}),
    # $-topics are not matched by a leading wildcard [MQTT-4.7.2-1]
    ([("#", A, 0)], "$SYS/uptime", {}),
    ([("#", A, 0)], "$SYS", {}),
    ([("+/uptime", A, 0)], "$SYS/uptime", {}),
    ([("+/#", A, 0)], "$x/y", {}),
    ([("$SYS/#", A, 0)], "$SYS/uptime", {A: 0}),
    ([("$SYS/#", A, 0)], "$SYS", {A: 0}),
    ([("$SYS/+", A, 0)], "$SYS/uptime", {A: 0}),
    ([("$SYS/uptime", A, 0)], "$SYS/uptime", {A: 0}),
    ([("#", A, 0), ("$SYS/#", B, 1)], "$SYS/brokers", {B: 1}),
    ([("#", A, 0)], "a/$SYS", {A: 0}),
    # several sessions, several filters
    ([("a/b", A, 0), ("a/+", B, 1), ("#", C, 2)], "a/b", {A: 0, B: 1, C: 2}),
    ([("a/b", A, 0), ("a/+", B, 1), ("#", C, 2)], "a/c", {B: 1, C: 2}),
    ([("a/b", A, 0), ("a/+", B, 1), ("#", C, 2)], "x", {C: 2}),
    # overlapping filters for one session: the highest QoS wins
    ([("a/b", A, 0), ("a/+", A, 2), ("#", A, 1)], "a/b", {A: 2}),
    ([("a/b", A, 2), ("a/+", A, 0)], "a/b", {A: 2}),
    ([("+/b", A, 1), ("a/+", A, 0), ("a/#", A, 0)], "a/b", {A: 1}),
    ([("+/+", A, 0), ("+/#", A, 2)], "a/b", {A: 2}),
]


@pytest.mark.parametrize(("subs", "topic", "expected"), ROUTE_TABLE,
                         ids=[f"{[s[0] for s in subs]}~{t}" for subs, t, _ in ROUTE_TABLE])
def test_route_table(subs: list[tuple[str, Any, int]], topic: str,
                     expected: dict[Any, int]) -> None:
    assert qos_map(router_with(*subs).match(topic)) == expected


def test_overlap_returns_the_options_of_the_best_filter() -> None:
    router = Router()
    low = opts(0, no_local=True)
    high = opts(2, retain_as_published=True, retain_handling=1)
    mid = opts(1)
    router.subscribe("a/b", A, low)
    router.subscribe("a/+", A, high)
    router.subscribe("#", A, mid)
    result = router.match("a/b")
    assert list(result) == [A]
    assert result[A] is high


def test_exact_only_router() -> None:
    router = router_with(("a/b", A, 1), ("a/b", B, 0), ("c", A, 2))
    assert qos_map(router.match("a/b")) == {A: 1, B: 0}
    assert qos_map(router.match("c")) == {A: 2}
    assert router.match("a/+") == {}  # a topic is never a filter
    assert router.match("zzz") == {}


def test_match_result_reflects_later_changes() -> None:
    router = router_with(("a/b", A, 1))
    assert qos_map(router.match("a/b")) == {A: 1}
    router.unsubscribe("a/b", A)
    assert router.match("a/b") == {}
    router.subscribe("a/#", B, opts(2))
    assert qos_map(router.match("a/b")) == {B: 2}


def test_match_does_not_modify_router_state() -> None:
    router = router_with(("a/b", A, 0), ("a/+", B, 1))
    first = router.match("a/b")
    assert qos_map(first) == {A: 0, B: 1}
    assert qos_map(router.subscribers("a/b")) == {A: 0}
    assert qos_map(router.match("a/b")) == {A: 0, B: 1}


def test_kept_match_results_follow_changes_and_stay_bounded() -> None:
    router = router_with(("a/+", A, 0))
    assert qos_map(router.match("a/b")) == {A: 0}
    router.subscribe("a/b", B, opts(1))  # an exact filter: the kept result is wrong now
    assert qos_map(router.match("a/b")) == {A: 0, B: 1}
    router.subscribe("a/+", A, opts(2))  # the same pair with other options
    assert qos_map(router.match("a/b")) == {A: 2, B: 1}
    router.unsubscribe("a/+", A)
    assert qos_map(router.match("a/b")) == {B: 1}
    router.subscribe("#", C, opts(0))
    for i in range(MATCH_CACHE + 10):
        assert qos_map(router.match(f"t/{i}")) == {C: 0}
    assert len(router._matched) <= MATCH_CACHE


# -- bookkeeping ---------------------------------------------------------------------

def test_subscribe_returns_whether_pair_is_new_and_replaces_options() -> None:
    router = Router()
    assert router.subscribe("a/+", A, opts(0)) is True
    assert router.subscribe("a/+", A, opts(2)) is False  # replaced, not added
    assert router.subscription_count == 1
    assert qos_map(router.match("a/x")) == {A: 2}
    assert router.subscribe("a/+", B, opts(1)) is True
    assert router.subscribe("a/b", A, opts(1)) is True
    assert router.subscribe("a/b", A, opts(0)) is False
    assert router.subscription_count == 3
    assert router.route_count == 2
    assert sorted(router.filters()) == ["a/+", "a/b"]
    assert qos_map(router.subscribers("a/+")) == {A: 2, B: 1}
    assert qos_map(router.subscribers("a/b")) == {A: 0}
    assert router.subscribers("nope/#") == {}
    assert router.subscribers("nope") == {}


def test_unsubscribe_bookkeeping() -> None:
    router = router_with(("a/+", A, 0), ("a/+", B, 0), ("a/b", A, 0), ("#", C, 0))
    assert (router.subscription_count, router.route_count) == (4, 3)
    assert router.unsubscribe("a/+", A) is True
    assert router.unsubscribe("a/+", A) is False  # already gone
    assert router.unsubscribe("a/+", C) is False  # never there
    assert router.unsubscribe("x/y", A) is False
    assert router.unsubscribe("x/#", A) is False
    assert (router.subscription_count, router.route_count) == (3, 3)
    assert qos_map(router.match("a/b")) == {A: 0, B: 0, C: 0}
    assert router.unsubscribe("a/+", B) is True
    assert (router.subscription_count, router.route_count) == (2, 2)
    assert sorted(router.filters()) == ["#", "a/b"]
    assert qos_map(router.match("a/c")) == {C: 0}


def test_trie_is_pruned_after_unsubscribe() -> None:
    filters = ["a/+/c", "a/+", "a/#", "+/b/#", "#", "$SYS/+/x", "a/b/+", "+", "/+", "+/"]
    router = Router()
    for f in filters:
        router.subscribe(f, A, opts(1))
        router.subscribe(f, B, opts(0))
    for f in reversed(filters):
        assert router.unsubscribe(f, A)
        assert router.unsubscribe(f, B)
    assert list(router.filters()) == []
    assert router.route_count == 0
    assert router.subscription_count == 0
    assert router.match("a/b/c") == {}
    # White box: no empty trie nodes are left behind.
    assert router._root.children == {}


def test_partial_prune_keeps_shared_prefixes() -> None:
    router = router_with(("a/+/c", A, 1), ("a/+", B, 2))
    assert router.unsubscribe("a/+/c", A)
    assert qos_map(router.match("a/x")) == {B: 2}
    assert router.match("a/x/c") == {}
    plus = router._root.children["a"].children["+"]
    assert plus.children == {}  # the "c" node is gone, "+" stays for "a/+"
    router.subscribe("a/+/c", A, opts(0))
    assert qos_map(router.match("a/x/c")) == {A: 0}
    assert router.unsubscribe("a/+", B)
    assert qos_map(router.match("a/x/c")) == {A: 0}
    assert router.unsubscribe("a/+/c", A)
    assert router._root.children == {}


# -- hypothesis: the router agrees with a naive matcher ------------------------------

SESSIONS = [A, B, C]
filter_level = st.sampled_from(["a", "b", "", "$SYS", "+"])
topic_level = st.sampled_from(["a", "b", "", "$SYS", "$x"])


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(filter_level, min_size=0, max_size=3))
    if not levels or draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


topics = st.lists(topic_level, min_size=1, max_size=4).map("/".join)
operations = st.lists(
    st.tuples(st.booleans(), topic_filters(), st.sampled_from(SESSIONS), st.integers(0, 2)),
    min_size=1, max_size=30)


def naive_match(model: dict[tuple[str, Any], SubscriptionOptions],
                topic: str) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for (topic_filter, session), o in model.items():
        if matches(topic_filter, topic):
            out[session] = max(out.get(session, -1), o.qos)
    return out


@settings(max_examples=300, deadline=None)
@given(ops=operations, probe=st.lists(topics, min_size=1, max_size=10))
def test_router_agrees_with_naive_matcher(ops: list[tuple[bool, str, Any, int]],
                                          probe: list[str]) -> None:
    router = Router()
    model: dict[tuple[str, Any], SubscriptionOptions] = {}
    for add, topic_filter, session, qos in ops:
        key = (topic_filter, session)
        if add:
            o = opts(qos)
            assert router.subscribe(topic_filter, session, o) is (key not in model)
            model[key] = o
        else:
            assert router.unsubscribe(topic_filter, session) is (key in model)
            model.pop(key, None)
        # Matched between changes too: a topic's kept result must follow each change.
        assert qos_map(router.match(probe[0])) == naive_match(model, probe[0])
    assert router.subscription_count == len(model)
    assert router.route_count == len({f for f, _ in model})
    assert sorted(router.filters()) == sorted({f for f, _ in model})
    for topic in probe:
        result = router.match(topic)
        assert qos_map(result) == naive_match(model, topic), topic
        for session, o in result.items():  # the options come from a matching filter
            assert any(s == session and v is o and matches(f, topic)
                       for (f, s), v in model.items())
    for topic_filter, session in list(model):
        assert router.unsubscribe(topic_filter, session)
    assert router.subscription_count == 0
    assert list(router.filters()) == []
    assert router._root.children == {}
