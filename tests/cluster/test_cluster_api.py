"""The management API of a cluster, asked of each node: every "in the cluster"
route lists all nodes (paginated over the merged list), every /nodes/:node/...
form answers for any node, actions reach the node of the client or node they
name, and a node that is down is reported, never waited for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers.clients import PahoClient, uid, wait_until
from helpers.cluster import Cluster, settle
from helpers.ctl import ctl, ctl_json

pytestmark = pytest.mark.needs_server


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == 0, body
    return body


def data(resp: httpx.Response) -> Any:
    return ok(resp).get("data")


class World:
    """One client on each node: persistent, subscribed to its own filters."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.tag = uid("api")
        self.clients: dict[str, PahoClient] = {}
        for i, node in enumerate(cluster.nodes, 1):
            client = PahoClient(node.host, node.port, f"{self.tag}-c{i}", clean_session=False)
            client.connect()
            client.subscribe(f"{self.tag}/n{i}/#", 1)
            self.clients[node.name] = client

    def client_id(self, node: Any) -> str:
        return self.clients[node.name].client_id

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture(scope="module")
def world(cluster: Cluster) -> Iterator[World]:
    made = World(cluster)
    yield made
    made.close()


def names(cluster: Cluster) -> set[str]:
    return {n.name for n in cluster.nodes}


def test_nodes_and_per_node_lists_from_every_node(cluster: Cluster, world: World) -> None:
    for node in cluster.nodes:
        with node.api() as api:
            listed = data(api.get("/nodes/"))
            assert {n["name"] for n in listed} == names(cluster)
            assert {n["node_status"] for n in listed} == {"Running"}
            assert listed[0]["name"] == node.name  # this node first
            for path in ("/brokers/", "/stats/", "/metrics/", "/listeners/", "/plugins/",
                         "/alarms/present", "/alarms/history"):
                rows = data(api.get(path))
                assert {r["node"] for r in rows} == names(cluster), path
            for other in cluster.nodes:
                assert data(api.get(f"/nodes/{other.name}"))["name"] == other.name
                assert data(api.get(f"/brokers/{other.name}"))["node_status"] == "Running"
                assert "connections/count" in data(api.get(f"/nodes/{other.name}/stats/"))
                assert data(api.get(f"/nodes/{other.name}/listeners"))
                assert any(p["name"] == "emqx_management"
                           for p in data(api.get(f"/nodes/{other.name}/plugins/")))
            missing = api.get("/nodes/nobody@nowhere/metrics/")
            assert missing.status_code == 404


def test_merged_lists_are_paginated_over_every_node(cluster: Cluster, world: World) -> None:
    ours = {world.client_id(n) for n in cluster.nodes}
    for node in cluster.nodes:
        with node.api() as api:
            for path in ("/connections/", "/sessions/", "/subscriptions/"):
                body = ok(api.get(path, params={"_limit": 10000}))
                rows = [r for r in body["data"] if r["client_id"] in ours]
                assert {r["client_id"] for r in rows} == ours, path
                assert {r["node"] for r in rows} == names(cluster), path
                assert body["meta"]["count"] == len(body["data"])
                # one page at a time gives the same list, in the same order
                paged = []
                for page in range(1, body["meta"]["count"] + 1):
                    one = ok(api.get(path, params={"_limit": 1, "_page": page}))
                    assert one["meta"]["count"] == body["meta"]["count"]
                    paged += one["data"]
                key = "topic" if path == "/subscriptions/" else "client_id"
                assert [(r["node"], r["client_id"], r.get(key)) for r in paged] == \
                    [(r["node"], r["client_id"], r.get(key)) for r in body["data"]], path
            routes = data(api.get("/routes/", params={"_limit": 10000}))
            for i, other in enumerate(cluster.nodes, 1):
                assert {"topic": f"{world.tag}/n{i}/#", "node": other.name} in routes
                assert data(api.get(f"/routes/{quote(f'{world.tag}/n{i}/#', safe='')}")) \
                    == [{"topic": f"{world.tag}/n{i}/#", "node": other.name}]


def test_lookups_and_node_forms_find_clients_on_any_node(cluster: Cluster,
                                                         world: World) -> None:
    n1, n2, n3 = cluster.nodes
    far = world.client_id(n2)
    with n1.api() as api:
        [conn] = data(api.get(f"/connections/{far}"))
        assert conn["node"] == n2.name
        [session] = data(api.get(f"/sessions/{far}"))
        assert session["node"] == n2.name
        assert [s["topic"] for s in data(api.get(f"/subscriptions/{far}"))] == [
            f"{world.tag}/n2/#"]
        on_n2 = {c["client_id"] for c in data(api.get(f"/nodes/{n2.name}/connections/",
                                                      params={"_limit": 10000}))}
        assert far in on_n2 and world.client_id(n1) not in on_n2
        assert data(api.get(f"/nodes/{n2.name}/connections/{far}"))[0]["node"] == n2.name
        assert data(api.get(f"/nodes/{n3.name}/sessions/{far}")) == []


def test_publish_and_subscribe_over_http_reach_other_nodes(cluster: Cluster,
                                                           world: World) -> None:
    n1, n2, n3 = cluster.nodes
    target = world.clients[n2.name]
    with n1.api() as api:
        probe = world.clients[n1.name]
        settle(probe, target, f"{world.tag}/n2/x")
        ok(api.post("/mqtt/publish", json={"topic": f"{world.tag}/n2/http", "payload": "hi",
                                           "qos": 1}))
        assert target.get(5).payload == b"hi"
    extra = f"{world.tag}/extra"
    with n3.api() as api:  # the session lives on n2: the subscribe runs there
        ok(api.post("/mqtt/subscribe", json={"client_id": target.client_id, "topic": extra,
                                             "qos": 1}))
        assert any(s["topic"] == extra for s in data(api.get(
            f"/subscriptions/{target.client_id}")))
        batch = data(api.post("/mqtt/unsubscribe_batch", json=[
            {"client_id": target.client_id, "topic": extra},
            {"client_id": uid("nobody"), "topic": extra}]))
        assert [b["code"] for b in batch] == [0, 112]
    with n1.api() as api:
        wait_until(lambda: not any(s["topic"] == extra for s in data(api.get(
            f"/subscriptions/{target.client_id}"))), 5, 0.1, "the unsubscribe")


def test_actions_on_other_nodes(cluster: Cluster, world: World) -> None:
    n1, n2, n3 = cluster.nodes
    with n1.api() as api:
        plugin = "emqx_delayed_publish"
        ok(api.put(f"/nodes/{n2.name}/plugins/{plugin}/load"))
        assert any(p["name"] == plugin and p["active"]
                   for p in data(api.get(f"/nodes/{n2.name}/plugins/")))
        assert not any(p["name"] == plugin and p["active"]
                       for p in data(api.get(f"/nodes/{n1.name}/plugins/")))
        ok(api.put(f"/nodes/{n2.name}/plugins/{plugin}/unload"))
        listener = quote("mqtt:tcp:default", safe="")
        ok(api.put(f"/nodes/{n3.name}/listeners/{listener}/stop"))
        assert data(api.get(f"/nodes/{n3.name}/listeners/{listener}"))["running"] is False
        ok(api.put(f"/nodes/{n3.name}/listeners/{listener}/start"))
        restarted = data(api.get(f"/nodes/{n3.name}/listeners/{listener}"))
        assert restarted["running"] is True
    # n3's listener runs again (bound anew: port 0 in the tests picks another port,
    # which the API tells): a client connects there
    host, _, port = restarted["listen_on"].rpartition(":")
    victim = PahoClient(host, int(port), uid("kick"))
    victim.connect()
    try:
        with n2.api() as api:  # kicked from another node
            ok(api.delete(f"/connections/{victim.client_id}"))
        victim.wait_disconnected(5)
    finally:
        victim.close()


def test_ctl_cluster_status(cluster: Cluster, world: World) -> None:
    rows = ctl_json(cluster.nodes[1], "cluster", "status")
    assert {r["name"] for r in rows} == names(cluster)
    done = ctl(cluster.nodes[1], "cluster")
    assert done.returncode == 0 and all(n.name in done.stdout for n in cluster.nodes)


def test_a_node_that_is_down_is_reported_not_waited_for(cluster: Cluster,
                                                        world: World) -> None:
    n1, n2, n3 = cluster.nodes
    n3.kill()
    try:
        with n1.api() as api:
            def stopped() -> bool:
                listed = {n["name"]: n["node_status"] for n in data(api.get("/nodes/"))}
                return listed.get(n3.name) == "Stopped"

            wait_until(stopped, 10, 0.2, "n3 listed as Stopped")
            started = time.monotonic()
            body = ok(api.get("/connections/", params={"_limit": 10000}))
            assert time.monotonic() - started < 5
            assert [f["node"] for f in body["meta"]["failed_nodes"]] == [n3.name]
            assert {r["node"] for r in body["data"]} >= {n1.name, n2.name}
            gone = api.get(f"/nodes/{n3.name}/metrics/")
            assert gone.status_code == 503 and gone.json()["code"] == 101
            metrics = {r["node"]: r for r in data(api.get("/metrics/"))}
            assert metrics[n3.name]["node_status"] == "Stopped"
    finally:
        n3.start()
    cluster.wait_joined()


def test_ctl_cluster_leave(cluster: Cluster, world: World) -> None:
    n1, _, n3 = cluster.nodes
    done = ctl(n3, "cluster", "leave")
    assert done.returncode == 0, done.stderr
    assert f"{n3.name} left the cluster" in done.stdout
    with n1.api() as api:
        wait_until(lambda: n3.name not in {n["name"] for n in data(api.get("/nodes/"))},
                   5, 0.1, "n3 forgotten at once")
    with n3.api() as api:
        assert [n["name"] for n in data(api.get("/nodes/"))] == [n3.name]
    again = ctl(n3, "cluster", "leave")
    assert again.returncode == 1 and "not_in_a_cluster" in again.stderr
    n3.stop()
    n3.start()  # joins again at its next start
    cluster.wait_joined()
