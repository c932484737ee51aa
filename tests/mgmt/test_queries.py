"""The facade's pure parts: where a page falls in several nodes' lists, and
query parameters checked as they arrive from another node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from starling.broker import Broker
from starling.mgmt import QUERIES, LocalNode, QueryError, clients, plugin_views
from starling.mgmt.paging import windows


@pytest.mark.parametrize(("counts", "offset", "limit", "expected"), [
    ([10, 10], 0, 5, [(0, 5), (0, 0)]),
    ([10, 10], 8, 5, [(8, 2), (0, 3)]),
    ([10, 10], 10, 5, [(0, 0), (0, 5)]),
    ([10, 10], 18, 5, [(0, 0), (8, 2)]),
    ([10, 10], 20, 5, [(0, 0), (0, 0)]),
    ([0, 3, 0, 4], 2, 3, [(0, 0), (2, 1), (0, 0), (0, 2)]),
    ([5, 5, 5], 4, 7, [(4, 1), (0, 5), (0, 1)]),
    ([], 0, 10, []),
])
def test_windows(counts: list[int], offset: int, limit: int,
                 expected: list[tuple[int, int]]) -> None:
    assert windows(counts, offset, limit) == expected


def test_windows_take_exactly_the_page_of_the_concatenation() -> None:
    lists = [list(range(n)) for n in (7, 0, 13, 1, 9)]
    whole = [(i, x) for i, part in enumerate(lists) for x in part]
    for limit in (1, 4, 30, 100):
        for offset in range(0, 35):
            cut = windows([len(p) for p in lists], offset, limit)
            got = [(i, x) for i, (first, take) in enumerate(cut)
                   for x in lists[i][first:first + take]]
            assert got == whole[offset:offset + limit]


def test_params_round_trip_and_refusals() -> None:
    made = clients.ClientSlice(5, 10, None, "alice")
    assert clients.ClientSlice.from_json(made.to_json()) == made
    assert clients.ClientSlice.from_json({}) == clients.ClientSlice()
    config = plugin_views.PluginConfig("p", {"k": "v"})
    assert plugin_views.PluginConfig.from_json(config.to_json()) == config
    for bad in ({"offset": "5"}, {"limit": True}, {"username": 3}, {"nope": 1}, []):
        with pytest.raises(QueryError) as info:
            clients.ClientSlice.from_json(bad)  # type: ignore[arg-type]
        assert info.value.reason == "bad_params"
    with pytest.raises(QueryError):
        clients.ClientId.from_json({})  # client_id is required


def test_execute_by_name_on_a_node() -> None:
    async def scenario() -> tuple[Any, Any]:
        node = LocalNode("n@h", "1.0", Broker())
        empty = await node.execute("connections.slice", {"offset": 0, "limit": 10})
        with pytest.raises(QueryError) as info:
            await node.execute("no.such.query", {})
        return empty, info.value
    empty, error = asyncio.run(scenario())
    assert empty == {"count": 0, "rows": []}
    assert (error.reason, error.detail) == ("unknown_query", "no.such.query")
    assert QueryError.from_json(error.to_json()).to_json() == error.to_json()
    assert {"connections.slice", "stats.get", "plugins.action", "api.call"} <= set(QUERIES)
