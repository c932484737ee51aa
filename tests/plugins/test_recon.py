"""emqx_recon as an operator meets it: a running node, real MQTT clients, the
management API and `starling ctl recon`."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.api import err, ok
from helpers.clients import Clients, uid, wait_until
from helpers.ctl import ctl, ctl_json

from tests.conftest import API_SETTINGS

NODE = "/nodes/starling@127.0.0.1"


@pytest.fixture
def node(make_node: Any) -> Any:
    return make_node(dict(API_SETTINGS))


def test_recon_is_loaded_by_default_and_shows_loop_lag_tasks_and_memory(node: Any) -> None:
    with node.api() as api:
        plugins = {p["name"]: p for p in ok(api.get(f"{NODE}/plugins/"))}
        assert plugins["emqx_recon"]["active"] is True  # EMQ X's default set
        ok(api.put(f"{NODE}/plugin_configs/emqx_recon", json={"recon.lag_interval": "50ms"}))
        summary = wait_until(lambda: (d := ok(api.get(f"{NODE}/recon")))["loop"]["samples"] >= 3
                             and d, timeout=10, message="three lag samples")
        loop = summary["loop"]
        assert loop["interval_ms"] == 50.0
        assert loop["lag_ms"] >= 0 and loop["lag_max_ms"] >= loop["lag_avg_ms"] >= 0
        assert summary["tasks"]["total"] >= 1
        assert summary["memory"]["rss"] > 1_000_000
        assert summary["connections"] == 0 and summary["threads"] >= 1
        tasks = ok(api.get(f"{NODE}/recon/tasks"))
        assert any(g["coroutine"].startswith("LagSampler._run") for g in tasks["groups"])
        if tasks["distinct"] <= 10:  # every group shown
            assert tasks["total"] == sum(g["count"] for g in tasks["groups"])


def test_top_talkers_rank_connections_by_what_they_sent(node: Any, clients: Clients) -> None:
    talker = clients(node, uid("talker"))
    quiet = clients(node, uid("quiet"))
    for _ in range(7):
        talker.publish("recon/" + talker.client_id, b"x" * 500, qos=1)
    quiet.publish("recon/" + quiet.client_id, b"y", qos=1)
    with node.api() as api:
        rows = ok(api.get(f"{NODE}/recon/top", params={"by": "recv_msg"}))
        assert [r["clientid"] for r in rows] == [talker.client_id, quiet.client_id]
        assert rows[0]["recv_msg"] == 7 and rows[1]["recv_msg"] == 1
        assert rows[0]["recv_oct"] > 3500 and rows[0]["rate"] > 0
        rows = ok(api.get(f"{NODE}/recon/top", params={"by": "recv_oct", "limit": "1"}))
        assert [r["clientid"] for r in rows] == [talker.client_id]
        err(api.get(f"{NODE}/recon/top", params={"by": "cpu"}), 400, 108)
        err(api.get(f"{NODE}/recon/top", params={"limit": "0"}), 400, 108)
        err(api.get(f"{NODE}/recon/top", params={"limit": "many"}), 400, 108)
    # The same through the command line.
    rows = ctl_json(node, "recon", "top", "--by", "recv_msg")
    assert rows[0]["clientid"] == talker.client_id
    done = ctl(node, "recon", "top", "--by", "recv_oct")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["clientid", "recv_oct"]
    assert lines[1].startswith(talker.client_id)


def test_memory_estimates_grow_with_what_a_connection_holds(node: Any,
                                                            clients: Clients) -> None:
    heavy = clients(node, uid("heavy"))
    light = clients(node, uid("light"))
    filters = [(f"recon/{'long-level-name/' * 4}{i}/#", 1) for i in range(200)]
    for start in range(0, len(filters), 50):
        heavy.subscribe(filters[start:start + 50])
    with node.api() as api:
        data = ok(api.get(f"{NODE}/recon/memory"))
        rows = {r["clientid"]: r for r in data["top"]}
        assert data["connections"] == 2 and data["rss"] > 0
        assert [r["clientid"] for r in data["top"]] == [heavy.client_id, light.client_id]
        # 200 filters of ~85 characters each: at least their text is in the estimate.
        assert rows[heavy.client_id]["session"] > rows[light.client_id]["session"] + 200 * 85
        assert rows[heavy.client_id]["memory"] == sum(
            rows[heavy.client_id][k] for k in ("channel", "transport", "send_pend", "session"))
        assert data["connections_estimate"] == sum(r["memory"] for r in data["top"])
        one = ok(api.get(f"{NODE}/recon/memory", params={"clientid": light.client_id}))
        assert [r["clientid"] for r in one["top"]] == [light.client_id]
    shown = ctl(node, "recon", "memory", "--limit", "1")
    assert shown.returncode == 0, shown.stderr
    assert heavy.client_id in shown.stdout and light.client_id not in shown.stdout


def test_recon_routes_are_listed_and_answer_404_while_unloaded(node: Any) -> None:
    with node.api() as api:
        listing = {r["path"] for r in ok(api.get("/"))}
        assert {"/nodes/:node/recon", "/nodes/:node/recon/tasks", "/nodes/:node/recon/memory",
                "/nodes/:node/recon/top"} <= listing
        assert "/api/v3/nodes/{node}/recon/top" in api.get("/openapi.json").json()["paths"]
        ok(api.put(f"{NODE}/plugins/emqx_recon/unload"))
        for path in ("recon", "recon/tasks", "recon/memory", "recon/top"):
            err(api.get(f"{NODE}/{path}"), 404, 404,
                "Not Found: plugin emqx_recon is not loaded")
        done = ctl(node, "recon")
        assert done.returncode == 1 and "emqx_recon is not loaded" in done.stderr
        ok(api.put(f"{NODE}/plugins/emqx_recon/load"))
        assert ok(api.get(f"{NODE}/recon"))["node"] == "starling@127.0.0.1"
    summary = ctl(node, "recon")
    assert summary.returncode == 0 and "loop.lag_ms" in summary.stdout


def test_tracemalloc_is_on_only_while_configured(node: Any) -> None:
    with node.api() as api:
        assert ok(api.get(f"{NODE}/recon/memory"))["tracemalloc"] is None
        ok(api.put(f"{NODE}/plugin_configs/emqx_recon", json={"recon.tracemalloc": "on"}))
        traced = ok(api.get(f"{NODE}/recon/memory", params={"limit": "3"}))["tracemalloc"]
        assert traced["peak"] >= traced["current"] > 0
        assert len(traced["top"]) == 3 and all(":" in row["site"] for row in traced["top"])
        ok(api.put(f"{NODE}/plugin_configs/emqx_recon", json={"recon.tracemalloc": "off"}))
        assert ok(api.get(f"{NODE}/recon"))["memory"]["tracemalloc"] is None
        err(api.put(f"{NODE}/plugin_configs/emqx_recon", json={"recon.lag_interval": "1ms"}),
            400, 108, "recon.lag_interval: must be at least 10ms")
