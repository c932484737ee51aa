"""Pages of the client lists over HTTP with hundreds of real connections: every
row exactly once across the pages, `meta.count` the list's length, page
boundaries, and Starling's filters (`clientid`, `username`, `topic`).

300 clients are held by a child process (helpers/fleet.py): `pg-000` ..
`pg-299`, user name `group<i % 3>`, each subscribed to `pg/<i>/#` (QoS 1) and
every fifth also to `pg/common` (QoS 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from helpers.api import err, ok
from helpers.fleet import Fleet, FleetClient

N = 300
IDS = [f"pg-{i:03d}" for i in range(N)]
COMMON = "pg/common"


def _client(i: int) -> FleetClient:
    subs = [(f"pg/{i}/#", 1)] + ([(COMMON, 0)] if i % 5 == 0 else [])
    return FleetClient(IDS[i], f"group{i % 3}", subs)


@pytest.fixture(scope="module")
def fleet(api_node: Any) -> Iterator[Fleet]:
    made = Fleet(api_node.host, api_node.port, [_client(i) for i in range(N)])
    yield made
    made.close()


def page(api: Any, path: str, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    resp = api.get(path, params=params)
    data = ok(resp)
    return data, resp.json()["meta"]


def walk(api: Any, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every page in turn until an empty one; each page's meta checked."""
    rows: list[dict[str, Any]] = []
    number = 1
    while True:
        data, meta = page(api, path, _page=number, _limit=limit, **params)
        assert (meta["page"], meta["limit"]) == (number, limit)
        assert len(data) <= limit
        if not data:
            assert meta["count"] == len(rows)
            return rows
        assert meta["count"] >= len(rows) + len(data)
        rows += data
        number += 1


@pytest.mark.parametrize("limit", [1, 7, 100, N, 1000])
def test_connection_pages_cover_every_client_once(api: Any, fleet: Fleet, limit: int) -> None:
    if limit == 1:
        # One row per page: walk only the first 40 pages, then jump to the last.
        ids = [page(api, "/connections", _page=p, _limit=1)[0][0]["client_id"]
               for p in range(1, 41)]
        assert len(set(ids)) == 40
        data, meta = page(api, "/connections", _page=N, _limit=1)
        assert meta["count"] == N and len(data) == 1
        assert page(api, "/connections", _page=N + 1, _limit=1)[0] == []
        return
    rows = walk(api, "/connections", limit)
    assert sorted(r["client_id"] for r in rows) == IDS
    assert all(r["username"] == f"group{int(r['client_id'][3:]) % 3}" for r in rows)


def test_page_boundaries_and_counts(api: Any, fleet: Fleet) -> None:
    first, meta = page(api, "/connections", _page=1, _limit=100)
    assert (len(first), meta) == (100, {"page": 1, "limit": 100, "count": N})
    last, meta = page(api, "/connections", _page=3, _limit=100)
    assert len(last) == 100 and meta["count"] == N
    short, _ = page(api, "/connections", _page=2, _limit=299)
    assert len(short) == 1
    assert page(api, "/connections", _page=4, _limit=100)[0] == []
    assert page(api, "/connections", _page=10**30, _limit=100)[0] == []
    # below 1 is the first page; the default limit takes everything
    assert page(api, "/connections", _page=0, _limit=100)[0] == first
    everything, meta = page(api, "/connections")
    assert len(everything) == N and meta["limit"] == 10000
    err(api.get("/connections", params={"_limit": 0}), 400, 108)


def test_node_form_pages_like_the_cluster_form(api_node: Any, api: Any, fleet: Fleet) -> None:
    node = quote(api_node.name, safe="")
    for path in ("connections", "sessions", "subscriptions"):
        cluster = page(api, f"/{path}", _page=2, _limit=50)
        on_node = page(api, f"/nodes/{node}/{path}", _page=2, _limit=50)
        assert [r["client_id"] for r in cluster[0]] == [r["client_id"] for r in on_node[0]]
        assert cluster[1] == on_node[1]


def test_session_pages(api: Any, fleet: Fleet) -> None:
    rows = walk(api, "/sessions", 64)
    assert sorted(r["client_id"] for r in rows) == IDS
    by_id = {r["client_id"]: r for r in rows}
    assert by_id["pg-005"]["subscriptions_count"] == 2
    assert by_id["pg-006"]["subscriptions_count"] == 1


def test_subscription_pages(api: Any, fleet: Fleet) -> None:
    expected = sorted((c.client_id, topic, qos) for c in map(_client, range(N))
                      for topic, qos in c.subscriptions)
    assert len(expected) == N + N // 5
    for limit in (1000, 37):
        rows = walk(api, "/subscriptions", limit)
        assert sorted((r["client_id"], r["topic"], r["qos"]) for r in rows) == expected


def test_route_pages(api: Any, fleet: Fleet) -> None:
    rows = walk(api, "/routes", 45)
    topics = [r["topic"] for r in rows]
    assert sorted(topics) == sorted([f"pg/{i}/#" for i in range(N)] + [COMMON])
    assert ok(api.get("/routes/" + quote(COMMON, safe=""))) == [
        {"topic": COMMON, "node": rows[0]["node"]}]


def test_filter_by_username(api: Any, fleet: Fleet) -> None:
    group1 = sorted(i for i in IDS if int(i[3:]) % 3 == 1)
    rows = walk(api, "/connections", 30, username="group1")
    assert sorted(r["client_id"] for r in rows) == group1
    data, meta = page(api, "/sessions", _page=2, _limit=60, username="group2")
    assert meta["count"] == N // 3 and len(data) == N // 3 - 60
    assert all(r["username"] == "group2" for r in data)
    assert page(api, "/connections", username="nobody") == (
        [], {"page": 1, "limit": 10000, "count": 0})
    # the seed's lookup route reads the same filter
    via_path = ok(api.get("/connection/username/group0"))
    assert sorted(r["client_id"] for r in via_path) == [
        i for i in IDS if int(i[3:]) % 3 == 0]


def test_filter_by_client_id(api: Any, fleet: Fleet) -> None:
    data, meta = page(api, "/connections", clientid="pg-007")
    assert meta["count"] == 1 and [r["client_id"] for r in data] == ["pg-007"]
    assert page(api, "/connections", clientid="pg-007", username="group0")[1]["count"] == 0
    assert page(api, "/connections", clientid="pg-007", username="group1")[1]["count"] == 1
    assert page(api, "/sessions", clientid="nope")[0] == []
    subs, meta = page(api, "/subscriptions", clientid="pg-010")
    assert meta["count"] == 2
    assert sorted(r["topic"] for r in subs) == ["pg/10/#", COMMON]


def test_filter_subscriptions_by_topic(api: Any, fleet: Fleet) -> None:
    rows = walk(api, "/subscriptions", 25, topic=COMMON)
    assert sorted(r["client_id"] for r in rows) == [IDS[i] for i in range(0, N, 5)]
    assert {(r["topic"], r["qos"]) for r in rows} == {(COMMON, 0)}
    data, meta = page(api, "/subscriptions", topic="pg/42/#")
    assert meta["count"] == 1 and data[0]["client_id"] == "pg-042"


def test_kick_shrinks_the_count(api: Any, fleet: Fleet) -> None:
    """Last: it takes a client out of the fleet."""
    ok(api.delete("/connections/pg-299"))
    assert page(api, "/connections", _page=1, _limit=1)[1]["count"] == N - 1
    assert ok(api.get("/connections/pg-299")) == []
