"""The facade's node dimension, over real HTTP, before the cluster exists.

Two real nodes run in one event loop (a thread of this process): `a` serves the
API, `b` has none.  `a`'s facade is given a `RemoteNodes` that reaches `b`
through a JSON round trip in process (what the cluster's transport will do over
NATS), plus a third name, `down@...`, that never answers.  Real MQTT clients
(a child process) connect to both.  Through `a`'s API: merged pages over both
nodes' lists, per-node entries in cluster-wide lists, `/nodes/b/...` answered by
`b` (by its queries, or by forwarding the whole request), the silent node
reported without holding the request, an unknown node a 404.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers.api import err, ok
from helpers.fleet import Fleet, FleetClient

from starling.config import Config
from starling.mgmt import JSON, LocalNode, QueryError
from starling.node import Node

A, B, DOWN = "a@127.0.0.1", "b@127.0.0.1", "down@127.0.0.1"
TIMEOUT = 0.5
A_IDS = [f"a-{i:02d}" for i in range(30)]
B_IDS = [f"b-{i:02d}" for i in range(20)]


class LoopbackNodes:
    """`RemoteNodes` over JSON in process: `b` answers, `down` never does."""

    def __init__(self, peers: Mapping[str, LocalNode], silent: Sequence[str]) -> None:
        self.peers = dict(peers)
        self.silent = list(silent)
        self.calls: list[tuple[str, str]] = []

    def names(self) -> Sequence[str]:
        return [*self.peers, *self.silent]

    async def call(self, node: str, query: str, params: Mapping[str, Any],
                   timeout: float) -> JSON:
        self.calls.append((node, query))
        if node in self.silent:
            await asyncio.Event().wait()  # a node that is gone: no answer, ever
        sent = json.loads(json.dumps(params))
        try:
            result = await self.peers[node].execute(query, sent)
        except QueryError as exc:
            raise QueryError.from_json(json.loads(json.dumps(exc.to_json()))) from None
        return json.loads(json.dumps(result))


class TwoNodes:
    """Both nodes in one event loop, on a thread, until `close()`."""

    def __init__(self, tmp: Path) -> None:
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.tmp = tmp
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30) or self.error is not None:
            raise RuntimeError(f"nodes did not start: {self.error!r}")

    def _config(self, name: str, api: bool) -> Config:
        sets = [f"node.name={name}", f"node.data_dir={self.tmp / name}",
                "listeners.tcp.default.bind=127.0.0.1:0", "listeners.tcp.internal.bind=off",
                "listeners.ws.default.bind=off", "dashboard.bind=off",
                "management.bind=" + ("127.0.0.1:0" if api else "off"),
                "api.default_app_secret=test-secret", "log.level=warning",
                f"mqtt.max_packet_size={1 << 20 if api else 1 << 19}"]
        return Config.load(None, sets)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            self.a, self.b = Node(self._config(A, True)), Node(self._config(B, False))
            await self.a.start()
            await self.b.start()
            self.remote = LoopbackNodes({B: self.b.local}, [DOWN])
            self.a.mgmt.remote = self.remote
            self.a.mgmt.timeout = TIMEOUT
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            raise
        self.ready.set()
        await self.stop.wait()
        await self.a.stop()
        await self.b.stop()

    def mqtt(self, node: Node) -> tuple[str, int]:
        host, port = node.listeners[0].bound
        return host, port

    def api(self) -> httpx.Client:
        host, port = next(h.bound for h in self.a.http_listeners)
        return httpx.Client(base_url=f"http://{host}:{port}/api/v3",
                            auth=("admin", "test-secret"), timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    nodes = TwoNodes(tmp_path_factory.mktemp("two"))
    fleets = []
    try:
        fleets.append(Fleet(*nodes.mqtt(nodes.a), [
            FleetClient(cid, "alice" if i % 2 else None, [(f"t/{cid}", 1)])
            for i, cid in enumerate(A_IDS)]))
        fleets.append(Fleet(*nodes.mqtt(nodes.b), [
            FleetClient(cid, "alice" if i % 2 else None, [(f"t/{cid}", 1), ("t/shared", 0)])
            for i, cid in enumerate(B_IDS)]))
        yield nodes
    finally:
        for fleet in fleets:
            fleet.close()
        nodes.close()


@pytest.fixture
def api(cluster: TwoNodes) -> Iterator[httpx.Client]:
    with cluster.api() as client:
        yield client


def get_page(api: httpx.Client, path: str, **params: Any) -> tuple[list[Any], dict[str, Any]]:
    resp = api.get(path, params=params)
    return ok(resp), resp.json()["meta"]


def test_merged_pages_cover_both_nodes_in_node_order(api: httpx.Client) -> None:
    rows, meta = get_page(api, "/connections", _page=3, _limit=12)
    assert meta["count"] == 50 and meta["page"] == 3 and meta["limit"] == 12
    # rows 24..35 of a's list then b's: a's last six, b's first six
    assert [r["node"] for r in rows] == [A] * 6 + [B] * 6
    assert meta["failed_nodes"] == [{"node": DOWN,
                                     "error": f"no answer within {TIMEOUT:g} s"}]
    seen: list[str] = []
    for number in range(1, 6):
        rows, meta = get_page(api, "/connections", _page=number, _limit=11)
        assert meta["count"] == 50
        seen += [r["client_id"] for r in rows]
    assert sorted(seen) == sorted(A_IDS + B_IDS)
    assert get_page(api, "/connections", _page=6, _limit=10)[0] == []


def test_merged_subscriptions_sessions_routes_and_filters(api: httpx.Client) -> None:
    subs, meta = get_page(api, "/subscriptions", _limit=100)
    assert meta["count"] == 30 + 40 and len(subs) == 70
    shared, meta = get_page(api, "/subscriptions", topic="t/shared", _page=2, _limit=15)
    assert meta["count"] == 20 and len(shared) == 5 and {s["node"] for s in shared} == {B}
    sessions, meta = get_page(api, "/sessions", username="alice", _limit=100)
    assert meta["count"] == 15 + 10
    assert {s["node"] for s in sessions} == {A, B}
    routes, meta = get_page(api, "/routes", _limit=100)
    assert meta["count"] == 30 + 21
    assert {r["node"] for r in routes if r["topic"] == "t/shared"} == {B}


def test_cluster_lookups_and_node_forms(api: httpx.Client) -> None:
    [row] = ok(api.get("/connections/b-03"))
    assert row["node"] == B and row["client_id"] == "b-03"
    assert ok(api.get(f"/nodes/{quote(A)}/connections/b-03")) == []
    assert [r["client_id"] for r in ok(api.get(f"/nodes/{quote(B)}/connections/b-03"))] == [
        "b-03"]
    on_b, meta = get_page(api, f"/nodes/{quote(B)}/connections", _page=2, _limit=15)
    assert meta["count"] == 20 and [r["client_id"] for r in on_b] == B_IDS[15:]
    assert "failed_nodes" not in meta
    users = ok(api.get("/connection/username/alice"))
    assert len(users) == 25


def test_per_node_lists_mark_the_silent_node(api: httpx.Client) -> None:
    nodes = ok(api.get("/nodes"))
    assert [n["node"] for n in nodes] == [A, B, DOWN]
    assert nodes[1]["connections"] == 20 and nodes[1]["node_status"] == "Running"
    assert nodes[2] == {"node": DOWN, "name": DOWN, "node_status": "Stopped",
                        "error": f"no answer within {TIMEOUT:g} s"}
    stats = ok(api.get("/stats"))
    assert [s["node"] for s in stats] == [A, B, DOWN]
    assert stats[1]["connections/count"] == 20 and stats[2]["node_status"] == "Stopped"
    for path, key in (("/metrics", "metrics"), ("/plugins", "plugins"),
                      ("/listeners", "listeners"), ("/alarms/present", "alarms")):
        answer = ok(api.get(path))
        assert [e["node"] for e in answer] == [A, B, DOWN], path
        assert key in answer[1] and "error" in answer[2], path


def test_node_routes_reach_the_named_node(cluster: TwoNodes, api: httpx.Client) -> None:
    b = quote(B)
    assert ok(api.get(f"/nodes/{b}"))["name"] == B
    assert ok(api.get(f"/brokers/{b}"))["version"]
    assert [lst["protocol"] for lst in ok(api.get(f"/nodes/{b}/listeners"))] == ["mqtt:tcp"]
    # no query of its own: the whole request runs on b (its config differs from a's)
    configs = ok(api.get(f"/nodes/{b}/configs/"))
    size = next(c["value"] for c in configs if c["key"] == "mqtt.max_packet_size")
    assert size == "512KB"  # a's is 1MB
    assert ("b@127.0.0.1", "api.call") in cluster.remote.calls
    err(api.put(f"/nodes/{b}/plugins/emqx_nope/load"), 404, 102)


def test_silent_and_unknown_nodes(api: httpx.Client) -> None:
    err(api.get(f"/nodes/{quote(DOWN)}/stats"), 503, 101)
    err(api.get(f"/nodes/{quote(DOWN)}/configs/"), 503, 101)
    err(api.get("/nodes/nope@127.0.0.1/stats"), 404, 404)
    err(api.get("/nodes/nope@127.0.0.1/configs/"), 404, 404)


def test_kick_and_clean_reach_the_node_holding_the_client(api: httpx.Client) -> None:
    """Last: it takes b-19 away."""
    ok(api.delete("/connections/b-19"))
    assert ok(api.get("/connections/b-19")) == []
    err(api.delete("/connections/b-19"), 404, 112)
    err(api.delete("/sessions/persistent/b-19"), 404, 102)
