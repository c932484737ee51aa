"""Stopping and starting an MQTT listener at runtime, without touching the others."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import quote

from tests.conftest import API_SETTINGS
from tests.helpers.packets import RawClient, gen_connect

NODE = "starling@127.0.0.1"


def listener_row(api: Any, name: str) -> dict[str, Any]:
    answer = api.get(f"/nodes/{NODE}/listeners/{quote(name, safe='')}").json()
    assert answer["code"] == 0, answer
    data: dict[str, Any] = answer["data"]
    return data


def connects(host: str, port: int) -> bool:
    try:
        client = RawClient(host, port, timeout=2)
    except OSError:
        return False
    try:
        client.send(gen_connect("lc-" + str(time.monotonic_ns())))
        client.expect_type(2)
        return True
    finally:
        client.close()


def test_stop_and_start_a_listener(make_node) -> None:
    node = make_node({**API_SETTINGS, "listeners.tcp.second.bind": "127.0.0.1:0"})
    path = quote("mqtt:tcp:second", safe="")
    host, port = node.listeners["mqtt:tcp:second"]
    client = RawClient(host, port, timeout=5)
    client.send(gen_connect("lc-victim"))
    client.expect_type(2)
    with node.api() as api:
        assert listener_row(api, "mqtt:tcp:second")["running"] is True
        assert api.put(f"/nodes/{NODE}/listeners/{path}/stop").json() == {"code": 0}
        client.expect_closed()
        row = listener_row(api, "mqtt:tcp:second")
        assert row["running"] is False and row["current_conns"] == 0
        assert not connects(host, port)
        assert connects(*node.listeners["mqtt:tcp:default"]), "the other listener stopped too"
        again = api.put(f"/nodes/{NODE}/listeners/{path}/stop")
        assert again.status_code == 409 and again.json()["message"] == "not_started"
        assert api.put(f"/nodes/{NODE}/listeners/{path}/start").json() == {"code": 0}
        assert listener_row(api, "mqtt:tcp:second")["running"] is True
        # Configured with port 0: it comes back on the port its clients know.
        assert listener_row(api, "mqtt:tcp:second")["listen_on"] == f"{host}:{port}"
        assert connects(host, port)
        unknown = api.put(f"/nodes/{NODE}/listeners/{quote('mqtt:tcp:nope', safe='')}/stop")
        assert unknown.status_code == 404 and unknown.json()["code"] != 0
    client.close()


def test_ctl_stops_and_starts_a_listener(make_node) -> None:
    from starling import ctl

    node = make_node({**API_SETTINGS, "listeners.tcp.third.bind": "127.0.0.1:0"})
    host, port = node.listeners["http:management"]
    base = ["--url", f"http://{host}:{port}", "--app-id", "admin", "--secret", "test-secret"]
    assert ctl.main([*base, "listeners", "stop", "mqtt:tcp:third"]) == 0
    with node.api() as api:
        assert listener_row(api, "mqtt:tcp:third")["running"] is False
        assert ctl.main([*base, "listeners", "stop", "mqtt:tcp:third"]) == 1  # not_started
        assert ctl.main([*base, "listeners", "start", "mqtt:tcp:third"]) == 0
        assert listener_row(api, "mqtt:tcp:third")["running"] is True


def test_listener_details_name_every_listener(make_node) -> None:
    """`/nodes/:node/listener_details` (the dashboard's Listeners page and MQTT tool):
    every listener with its name, whether it runs, and a WebSocket listener's path."""
    node = make_node({**API_SETTINGS, "listeners.tcp.second.bind": "127.0.0.1:0",
                      "listeners.ws.default.bind": "127.0.0.1:0",
                      "listeners.ws.default.path": "/mqtt-here"})
    with node.api() as api:
        ok = api.get(f"/nodes/{NODE}/listener_details").json()
        assert ok["code"] == 0, ok
        rows = {row["name"]: row for row in ok["data"]}
        assert set(rows) == {"mqtt:tcp:default", "mqtt:tcp:second", "mqtt:ws:default",
                             "http:management"}
        ws_host, ws_port = node.listeners["mqtt:ws:default"]
        assert rows["mqtt:ws:default"]["listen_on"] == f"{ws_host}:{ws_port}"
        assert rows["mqtt:ws:default"]["path"] == "/mqtt-here"
        assert "path" not in rows["mqtt:tcp:default"]
        assert all(row["running"] is True for row in rows.values())
        # the EMQ X list keeps its own fields only
        listed = api.get("/listeners/").json()["data"][0]["listeners"]
        assert all("name" not in row and "path" not in row for row in listed)
        path = quote("mqtt:tcp:second", safe="")
        assert api.put(f"/nodes/{NODE}/listeners/{path}/stop").json() == {"code": 0}
        rows = {row["name"]: row for row in api.get(f"/nodes/{NODE}/listener_details")
                .json()["data"]}
        assert rows["mqtt:tcp:second"]["running"] is False
        assert rows["mqtt:tcp:default"]["running"] is True
        assert listener_row(api, "mqtt:ws:default")["path"] == "/mqtt-here"
        unknown = api.get("/nodes/other@host/listener_details")
        assert unknown.status_code == 404 and unknown.json()["code"] == 404


def test_a_listener_whose_port_was_taken_meanwhile_says_so(make_node) -> None:
    """Started again while another process holds its port: a 500 naming the listener
    and the port (no stack trace), and it starts once the port is free."""
    node = make_node({**API_SETTINGS, "listeners.tcp.second.bind": "127.0.0.1:0"})
    path = quote("mqtt:tcp:second", safe="")
    host, port = node.listeners["mqtt:tcp:second"]
    with node.api() as api:
        assert api.put(f"/nodes/{NODE}/listeners/{path}/stop").json() == {"code": 0}
        squatter = socket.socket()
        squatter.bind((host, port))
        squatter.listen()
        try:
            answer = api.put(f"/nodes/{NODE}/listeners/{path}/start")
            assert answer.status_code == 500
            message = answer.json()["message"]
            assert "mqtt:tcp:second" in message and f"{host}:{port}" in message
            assert listener_row(api, "mqtt:tcp:second")["running"] is False
        finally:
            squatter.close()
        assert api.put(f"/nodes/{NODE}/listeners/{path}/start").json() == {"code": 0}
        assert connects(host, port)
