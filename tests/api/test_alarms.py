"""/alarms: real monitors on a live node (thresholds set low through config),
the seed's cluster and node shapes, and the $SYS alert/clear messages."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
from helpers.api import ok
from helpers.clients import PahoClient, wait_until

API_SETTINGS = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}
#: Monitors every 0.2 s; nothing fires unless a test lowers its threshold.
QUIET = {
    "alarm.check_interval": "200ms",
    "alarm.cpu_high_watermark": "101",
    "alarm.sysmem_high_watermark": "101",
    "alarm.procmem_high_watermark": "101",
}
DATETIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
NUMBER = re.compile(r"^\d+(\.\d+)?$")


def present(api: httpx.Client) -> dict[str, str]:
    return {a["id"]: a["desc"] for a in ok(api.get("/alarms/present"))[0]["alarms"]}


def history(api: httpx.Client) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in ok(api.get("/alarms/history"))[0]["alarms"]}


def test_shapes_on_a_quiet_node(api_node: Any, api: httpx.Client) -> None:
    node = api_node.name
    for path in ("/alarms/present", "/alarms/history"):
        data = ok(api.get(path))
        assert isinstance(data, list) and len(data) == 1
        assert set(data[0]) == {"node", "alarms"} and data[0]["node"] == node
        assert isinstance(data[0]["alarms"], list)
        assert ok(api.get(f"{path}/{node}")) == data[0]["alarms"]
        assert ok(api.get(f"{path}/")) == data  # trailing slash
        resp = api.get(f"{path}/nobody@nowhere")
        assert resp.status_code == 404 and resp.json()["code"] != 0, resp.text


def test_too_many_connections_raised_and_cleared(
        make_node: Callable[..., Any]) -> None:
    node = make_node({**API_SETTINGS, **QUIET,
                      "listeners.tcp.default.max_connections": "5"})
    watcher = PahoClient(node.host, node.port)
    clients = [PahoClient(node.host, node.port) for _ in range(3)]
    with node.api() as api:
        try:
            watcher.connect()
            watcher.subscribe(f"$SYS/brokers/{node.name}/alarms/#", 0)
            for c in clients[:2]:
                c.connect()
            # 3 of 5 = 60 %: below the high watermark (80 %)
            assert "too_many_connections" not in present(api)
            clients[2].connect()  # 4 of 5
            alarms = wait_until(lambda: present(api).get("too_many_connections"),
                                message="too_many_connections")
            assert alarms == "80.0"
            alert = watcher.get(topic=f"$SYS/brokers/{node.name}/alarms/alert")
            assert json.loads(alert.payload) == {"id": "too_many_connections", "desc": "80.0"}
            assert not alert.retain
            # $SYS messages are not client traffic
            assert ok(api.get(f"/nodes/{node.name}/metrics/"))["messages/sent"] == 0
            by_node = ok(api.get(f"/alarms/present/{node.name}"))
            assert {"id": "too_many_connections", "desc": "80.0"} in by_node
            assert "too_many_connections" not in history(api)

            clients[2].close()  # 3 of 5 = 60 %: not below the low watermark, stays
            clients[1].close()  # 2 of 5 = 40 %: cleared
            wait_until(lambda: "too_many_connections" not in present(api),
                       message="the alarm to clear")
            clear = watcher.get(topic=f"$SYS/brokers/{node.name}/alarms/clear")
            assert json.loads(clear.payload) == {"id": "too_many_connections"}
            item = history(api)["too_many_connections"]
            assert set(item) == {"id", "desc", "clear_at"}
            assert item["desc"] == "80.0" and DATETIME.match(item["clear_at"]), item
            assert ok(api.get(f"/alarms/history/{node.name}")) == \
                ok(api.get("/alarms/history"))[0]["alarms"]
        finally:
            for c in [*clients, watcher]:
                c.close()


def test_cpu_and_memory_monitors_fire(make_node: Callable[..., Any]) -> None:
    """Thresholds of 0 % are always reached: each monitor raises its alarm with the
    measured percentage."""
    node = make_node({**API_SETTINGS, "alarm.check_interval": "200ms",
                      "alarm.cpu_high_watermark": "0", "alarm.cpu_low_watermark": "0",
                      "alarm.sysmem_high_watermark": "0",
                      "alarm.procmem_high_watermark": "0"})
    expected = {"cpu_high_watermark", "system_memory_high_watermark",
                "process_memory_high_watermark"}
    with node.api() as api:
        def all_raised() -> dict[str, str] | None:
            now = present(api)
            return now if expected <= set(now) else None

        alarms = wait_until(all_raised, message=f"alarms {expected}")
        for alarm_id in expected:
            assert NUMBER.match(alarms[alarm_id]), alarms
            assert 0.0 <= float(alarms[alarm_id]) <= 100.0, alarms
        assert float(alarms["system_memory_high_watermark"]) > 0
        assert float(alarms["process_memory_high_watermark"]) > 0
        assert "too_many_connections" not in alarms


def test_a_threshold_not_reached_raises_nothing(
        make_node: Callable[..., Any]) -> None:
    """A threshold no broker reaches raises nothing; the monitors keep running
    (the sysmem alarm at 0 % shows they do)."""
    node = make_node({**API_SETTINGS, **QUIET, "alarm.sysmem_high_watermark": "0",
                      "alarm.procmem_high_watermark": "99.9"})
    with node.api() as api:
        wait_until(lambda: "system_memory_high_watermark" in present(api),
                   message="system_memory_high_watermark")
        assert "process_memory_high_watermark" not in present(api)
        assert history(api) == {}
