"""The table of the other nodes' routes: batches in order, gaps noticed,
shared groups picked across nodes by strategy."""

from __future__ import annotations

from collections import Counter

from starling.cluster.routes import RemoteRoutes


def snapshot(seq: int, *routes: tuple[str, str, int], inc: str = "i1") -> dict[str, object]:
    return {"inc": inc, "seq": seq, "routes": [list(r) for r in routes]}


def batch(seq: int, *changes: tuple[str, str, int], inc: str = "i1") -> dict[str, object]:
    return {"inc": inc, "seq": seq, "set": [list(c) for c in changes]}


def test_match_finds_the_nodes_with_a_matching_filter() -> None:
    table = RemoteRoutes()
    table.replace("b", snapshot(3, ("", "a/+", 1), ("", "x/y", 1)))
    table.replace("c", snapshot(1, ("", "a/#", 1)))
    assert set(table.plain.match("a/1")) == {"b", "c"}
    assert set(table.plain.match("x/y")) == {"b"}
    assert set(table.plain.match("z")) == set()
    assert set(table.plain.match("$SYS/a")) == set()  # [MQTT-4.7.2-1]


def test_batches_apply_in_order_and_a_gap_asks_for_the_table() -> None:
    table = RemoteRoutes()
    assert not table.apply("b", batch(1, ("", "t", 1)))  # unknown node: needs its table
    table.replace("b", snapshot(2, ("", "t", 1)))
    assert table.apply("b", batch(2, ("", "t", 1)))  # already in the snapshot
    assert table.apply("b", batch(3, ("", "t", 0), ("", "u", 1)))
    assert set(table.plain.match("t")) == set() and set(table.plain.match("u")) == {"b"}
    assert not table.apply("b", batch(5, ("", "v", 1)))  # 4 was missed
    assert set(table.plain.match("v")) == set()
    assert not table.apply("b", batch(4, ("", "v", 1), inc="i2"))  # restarted node


def test_drop_forgets_every_route_of_a_node() -> None:
    table = RemoteRoutes()
    table.replace("b", snapshot(1, ("", "a/#", 1), ("g", "s/+", 2)))
    table.replace("c", snapshot(1, ("g", "s/+", 1)))
    table.drop("b")
    assert set(table.plain.match("a/1")) == set()
    assert table.groups == {("g", "s/+"): {"c": 1}}
    table.drop("c")
    assert table.groups == {} and not table.shared.match("s/1")


def test_shared_group_pick_weighs_nodes_by_members() -> None:
    table = RemoteRoutes()
    table.replace("b", snapshot(1, ("g", "s/#", 3)))
    key = ("g", "s/#")
    picks = Counter(table.pick(key, "round_robin", "p", "a", 1) for _ in range(400))
    assert picks == {"a": 100, "b": 300}
    picks = Counter(table.pick(key, "random", "p", "a", 1) for _ in range(2000))
    assert set(picks) == {"a", "b"} and picks["b"] > picks["a"]
    # hash: one publisher always lands on the same node (its messages stay in order)
    assert len({table.pick(key, "hash", "pub-7", "a", 1) for _ in range(50)}) == 1
    sticky = {table.pick(key, "sticky", "p", "a", 1) for _ in range(50)}
    assert len(sticky) == 1
    # no local members: only remote nodes; no members anywhere: nobody
    assert {table.pick(key, "random", "p", "a", 0) for _ in range(50)} == {"b"}
    assert table.pick(("h", "s/#"), "random", "p", "a", 0) is None
    assert table.pick(("h", "s/#"), "random", "p", "a", 2) == "a"


def test_remembered_matches_follow_every_route_change() -> None:
    table = RemoteRoutes()
    assert table.match("a/1") == ((), ())
    table.replace("b", snapshot(1, ("", "a/+", 1)))
    assert table.match("a/1") == (("b",), ())
    assert table.apply("b", batch(2, ("g", "a/#", 2)))
    assert table.match("a/1") == (("b",), (("g", "a/#"),))
    assert table.apply("b", batch(3, ("", "a/+", 0)))
    assert table.match("a/1") == ((), (("g", "a/#"),))
    table.drop("b")
    assert table.match("a/1") == ((), ())
