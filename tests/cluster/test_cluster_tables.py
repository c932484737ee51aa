"""What every node shares, made through the API of any node: banned clients, apps,
dashboard users, emqx_auth_username and emqx_auth_clientid entries, rules, resources,
delayed messages; in effect on
the other nodes within a second or two, and kept across a full cluster restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.clients import Clients, PahoClient, uid, wait_until
from helpers.cluster import Cluster, settle
from helpers.nats_server import NatsServer

pytestmark = pytest.mark.needs_server

PLUGINS = ("emqx_dashboard,emqx_management,emqx_recon,emqx_retainer,emqx_rule_engine,"
           "emqx_auth_username,emqx_auth_clientid,emqx_delayed_publish")


@pytest.fixture(scope="module")
def cluster(spawn_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("tables")
    nats = NatsServer(root / "nats").start()  # its files are kept for the restart test
    made = Cluster(spawn_node, root, nats, **{"plugins.loaded": PLUGINS})
    yield made
    made.stop()
    nats.close()


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == 0, body
    return body.get("data")


def connack(node: Any, client_id: str, username: str | None = None,
            password: str | None = None) -> int:
    client = PahoClient(node.host, node.port, client_id)
    if username is not None:
        client.client.username_pw_set(username, password)
    try:
        return client.connect(expect_rc=None)[0]
    finally:
        client.close()


def eventually(check: Any, what: str, timeout: float = 5.0) -> None:
    wait_until(check, timeout, 0.1, what)


def test_a_ban_made_on_one_node_holds_on_every_node(cluster: Cluster,
                                                   clients: Clients) -> None:
    n1, n2, n3 = cluster.nodes
    who = uid("bad")
    victim = clients(n3, who)
    with n1.api() as api:
        ok(api.post("/banned/", json={"who": who, "as": "client_id", "reason": "test"}))
    victim.wait_disconnected(5)  # connected on n3: kicked there
    eventually(lambda: connack(n2, who) != 0, "the ban in force on n2")
    with n3.api() as api:
        assert who in [b["who"] for b in ok(api.get("/banned/"))]
    with n2.api() as api:
        ok(api.delete(f"/banned/{who}", params={"as": "client_id"}))
    eventually(lambda: connack(n1, who) == 0, "the ban lifted on n1")


def test_an_app_made_on_one_node_opens_the_api_of_every_node(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    app_id = uid("app")
    with n1.api() as api:
        secret = ok(api.post("/apps/", json={"app_id": app_id, "name": "x"}))["secret"]

    def works(node: Any) -> bool:
        with node.api(auth=(app_id, secret)) as api:
            return api.get("/brokers/").status_code == 200

    eventually(lambda: works(n2) and works(n3), "the app usable on n2 and n3")
    with n3.api() as api:
        ok(api.delete(f"/apps/{app_id}"))
    eventually(lambda: not works(n1), "the app gone on n1")


def test_a_dashboard_user_made_on_one_node_is_listed_everywhere(cluster: Cluster) -> None:
    n1, n2, _ = cluster.nodes
    name = uid("user")
    with n1.api() as api:
        ok(api.post("/users/", json={"username": name, "password": "pw-1", "tags": "t"}))

    def listed() -> bool:
        with n2.api() as api:
            return name in [u["username"] for u in ok(api.get("/users/"))]

    eventually(listed, "the user listed on n2")


def test_auth_username_entries_work_on_every_node(cluster: Cluster) -> None:
    n1, _, n3 = cluster.nodes
    user = uid("u")
    with n1.api() as api:
        ok(api.post("/auth_username", json={"username": user, "password": "right"}))
    eventually(lambda: connack(n3, uid("c"), user, "wrong") != 0, "the entry on n3")
    assert connack(n3, uid("c"), user, "right") == 0


def test_auth_clientid_entries_work_on_every_node(cluster: Cluster) -> None:
    _, n2, n3 = cluster.nodes
    client_id = uid("dev")
    with n2.api() as api:
        ok(api.post("/auth_clientid", json={"clientid": client_id, "password": "right"}))
    # the password travels with any user name; emqx_auth_username does not know it
    eventually(lambda: connack(n3, client_id, "anyone", "wrong") != 0, "the entry on n3")
    assert connack(n3, client_id, "anyone", "right") == 0


def test_a_resource_made_on_one_node_is_listed_everywhere(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    with n1.api() as api:
        made = ok(api.post("/resources", json={"name": uid("res"), "type": "built_in",
                                               "config": {"a": 1}, "description": "shared"}))

    def listed(node: Any) -> list[str]:
        with node.api() as api:
            return [r["id"] for r in ok(api.get("/resources"))]

    for node in (n2, n3):
        eventually(lambda node=node: made["id"] in listed(node), f"the resource on {node.name}")
    with n3.api() as api:
        ok(api.delete(f"/resources/{made['id']}"))
    eventually(lambda: made["id"] not in listed(n1), "the resource deleted on n1")


def test_a_rule_made_on_one_node_runs_on_every_node(cluster: Cluster,
                                                   clients: Clients) -> None:
    n1, n2, _ = cluster.nodes
    source, target = uid("src"), uid("dst")
    with n1.api() as api:
        rule = ok(api.post("/rules", json={
            "rawsql": f'SELECT payload FROM "{source}/#"',
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": f"{target}/out"}}]}))
    watcher = clients(n2)
    watcher.subscribe(f"{target}/out", 1)
    publisher = clients(n2)

    def republished() -> bool:
        publisher.publish(f"{source}/x", b"via-rule", 1)
        try:
            return watcher.get(0.3).payload == b'{"payload":"via-rule"}'
        except AssertionError:
            return False

    eventually(republished, "the rule running on n2")
    with n2.api() as api:
        assert rule["id"] in [r["id"] for r in ok(api.get("/rules"))]
        ok(api.delete(f"/rules/{rule['id']}"))
    with n1.api() as api:
        eventually(lambda: rule["id"] not in [r["id"] for r in ok(api.get("/rules"))],
                   "the rule deleted on n1")


def test_a_delayed_message_is_listed_everywhere_and_published_once(
        cluster: Cluster, clients: Clients) -> None:
    n1, n2, n3 = cluster.nodes
    topic = uid("later") + "/t"
    subs = [clients(n) for n in (n1, n2, n3)]
    for sub in subs:
        sub.subscribe(topic, 1)
    probe = clients(n1)
    settle(probe, subs, topic)

    def delayed_count(node: Any) -> int:
        with node.api() as api:
            return int(ok(api.get(f"/nodes/{node.name}/stats/"))["delayed/count"])

    clients(n1).publish(f"$delayed/2/{topic}", b"late", 1)
    eventually(lambda: delayed_count(n3) == 1, "the delayed message listed on n3", 2)
    for sub in subs:
        assert sub.get(8).payload == b"late"
    time.sleep(1)
    assert all(not sub.drain() for sub in subs)  # published once, by one node
    eventually(lambda: delayed_count(n2) == 0, "the delayed message gone on n2")


def test_a_full_cluster_restart_keeps_everything(cluster: Cluster, clients: Clients,
                                                 tmp_path: Path) -> None:
    """Every node and NATS stopped and started again: bans, apps, dashboard users,
    auth entries, rules and retained messages made before are in effect on every node."""
    n1, n2, n3 = cluster.nodes
    who, app_id, user, login = uid("banned"), uid("app"), uid("u"), uid("admin")
    source, target, kept = uid("src"), uid("dst"), uid("kept") + "/t"
    with n2.api() as api:
        ok(api.post("/banned/", json={"who": who, "as": "client_id"}))
        secret = ok(api.post("/apps/", json={"app_id": app_id}))["secret"]
        ok(api.post("/users/", json={"username": login, "password": "pw-1", "tags": "t"}))
        ok(api.post("/auth_username", json={"username": user, "password": "right"}))
        rule = ok(api.post("/rules", json={
            "rawsql": f'SELECT payload FROM "{source}/#"',
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": f"{target}/out"}}]}))
    clients(n1).publish(kept, b"still-here", 1, retain=True)
    time.sleep(1.5)
    for node in cluster.nodes:
        node.stop()
    cluster.nats.stop()
    cluster.nats.start()
    for node in cluster.nodes:
        node.start()
    cluster.wait_joined()
    assert connack(n1, who) != 0 and connack(n3, who) != 0
    with n1.api(auth=(app_id, secret)) as api:
        assert api.get("/brokers/").status_code == 200
    with n3.api() as api:
        assert login in [u["username"] for u in ok(api.get("/users/"))]
        assert rule["id"] in [r["id"] for r in ok(api.get("/rules"))]
    assert connack(n3, uid("c"), user, "wrong") != 0
    assert connack(n3, uid("c"), user, "right") == 0
    late = clients(n3)
    late.subscribe(kept, 1)
    got = late.get(5)
    assert (got.payload, got.retain) == (b"still-here", True)
    watcher, publisher = clients(n1), clients(n1)
    watcher.subscribe(f"{target}/out", 1)

    def republished() -> bool:
        publisher.publish(f"{source}/x", b"via-rule", 1)
        try:
            return watcher.get(0.3).payload == b'{"payload":"via-rule"}'
        except AssertionError:
            return False

    eventually(republished, "the rule running on n1 after the restart")
    # a node that lost its own store gets everything back from the cluster
    n3.stop()
    fresh = cluster.start_node("n4@127.0.0.1")
    try:
        eventually(lambda: connack(fresh, who) != 0, "the ban on a new node")
        with fresh.api(auth=(app_id, secret)) as api:
            assert api.get("/brokers/").status_code == 200
    finally:
        fresh.stop()
        n3.start()
