"""Rules and resources, with their enabled state, survive a restart (the node's
store) and a plugin unload/load; while emqx_rule_engine is unloaded no rule runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers.api import ok
from helpers.clients import PahoClient, uid

API = {"management.bind": "127.0.0.1:0", "api.default_app_id": "admin",
       "api.default_app_secret": "test-secret"}


def stable(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule object without its (runtime) metrics."""
    return {k: v for k, v in rule.items() if k != "metrics"} | {
        "actions": [{"name": a["name"], "params": a["params"]} for a in rule["actions"]]}


def client(node: Any, topic: str | None = None) -> PahoClient:
    c = PahoClient(node.host, node.port, uid("c"))
    c.connect()
    if topic is not None:
        c.subscribe(topic)
    return c


def test_rules_and_resources_survive_restart(make_node: Callable[..., Any],
                                             tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = make_node(API, data_dir=data)
    with node.api() as api:
        res = ok(api.post("/resources", json={"name": "keep", "type": "built_in",
                                              "config": {"a": 1}, "description": "kept"}))
        on = ok(api.post("/rules", json={
            "name": "on", "for": "message.publish", "rawsql": 'select payload from "in/on"',
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": "out/on", "payload_tmpl": "got ${payload}"}}],
            "description": "enabled"}))
        off = ok(api.post("/rules", json={
            "name": "off", "rawsql": 'select payload from "in/off"', "enabled": False,
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": "out/off"}}]}))
        before = [stable(r) for r in ok(api.get("/rules"))]
        resources = ok(api.get("/resources"))
    node.stop()

    node = make_node(API, data_dir=data)
    with node.api() as api:
        assert [stable(r) for r in ok(api.get("/rules"))] == before
        assert ok(api.get(f"/rules/{off['id']}"))["enabled"] is False
        assert ok(api.get("/resources")) == resources
        assert ok(api.get(f"/resources/{res['id']}"))["description"] == "kept"
        watch = client(node, "out/#")
        pub = client(node)
        try:
            pub.publish("in/off", "x")
            pub.publish("in/on", "y")
            got = watch.get()
            assert (got.topic, got.payload) == ("out/on", b"got y")
            metrics = ok(api.get(f"/rules/{on['id']}"))["metrics"][0]
            assert metrics["passed"] == 1  # counters start again at a restart
        finally:
            watch.close()
            pub.close()


def test_unload_stops_rules_and_load_brings_them_back(make_node: Callable[..., Any]) -> None:
    node = make_node(API)
    plugin = f"/nodes/{node.name}/plugins/emqx_rule_engine"
    with node.api() as api:
        assert {p["name"]: p["active"] for p in ok(api.get(f"/nodes/{node.name}/plugins"))}[
            "emqx_rule_engine"] is True  # active by default, as the seed shows
        rule = ok(api.post("/rules", json={
            "rawsql": 'select payload from "u/in"',
            "actions": [{"name": "built_in:republish_action",
                         "params": {"target_topic": "u/out", "payload_tmpl": "${payload}"}}]}))
        watch = client(node, "u/#")
        pub = client(node)
        try:
            ok(api.put(f"{plugin}/unload"))
            pub.publish("u/in", "while unloaded", qos=1)
            assert watch.get().payload == b"while unloaded"  # the original only
            ok(api.put(f"{plugin}/load"))
            assert stable(ok(api.get(f"/rules/{rule['id']}"))) == stable(rule)
            pub.publish("u/in", "loaded", qos=1)
            got = sorted((m.topic, m.payload) for m in watch.get_many(2))
            assert got == [("u/in", b"loaded"), ("u/out", b"loaded")]
            assert watch.drain() == []
        finally:
            watch.close()
            pub.close()
    node.stop()

    node = make_node(API, data_dir=node.data_dir)  # loaded again: active after a restart
    with node.api() as api:
        assert [r["id"] for r in ok(api.get("/rules"))] == [rule["id"]]
