"""Clients connecting faster than the authentication backend answers
(docs/reliability.md, "Authentication backlog"): emqx_auth_http against a real
HTTP server that holds its answers. At most `max_auth_pending` CONNECTs of a
listener wait for it; the next ones are refused at once with CONNACK "server
busy" (0x89 for MQTT 5.0, 3 "server unavailable" for 3.1.1) instead of queueing
without bound, and counted. Once the backend answers, the waiting ones are let in
and new clients get their places."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.api import ok
from helpers.clients import uid, wait_until
from helpers.http_receiver import HttpReceiver
from helpers.packets import RawClient, gen_connect
from helpers.packets5 import gen_connect5

LIMIT = 5
SETTINGS = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
    "listeners.tcp.default.max_auth_pending": str(LIMIT),
}


@pytest.fixture
def backend() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def node(make_node: Callable[..., Any], backend: HttpReceiver) -> Any:
    node = make_node(SETTINGS)
    with node.api() as api:
        ok(api.put(f"/nodes/{node.name}/plugin_configs/emqx_auth_http", json={
            "auth.http.auth_req": f"{backend.url}/mqtt/auth",
            "auth.http.auth_req.method": "post",
            "auth.http.auth_req.params": "clientid=%c,username=%u,password=%P",
            "auth.http.request.timeout": "30s",
            "auth.http.request.retry_times": "0",
        }))
        ok(api.put(f"/nodes/{node.name}/plugins/emqx_auth_http/load"))
    return node


def shutdown_count(node: Any) -> dict[str, int]:
    with node.api() as api:
        rows = [row for row in ok(api.get("/listeners/"))[0]["listeners"]
                if row["listen_on"].endswith(f":{node.port}")]
    assert len(rows) == 1, rows
    return dict(rows[0]["shutdown_count"])


def test_connects_beyond_the_backlog_are_refused_busy(node: Any, backend: HttpReceiver) -> None:
    backend.gate.clear()  # the backend holds every answer
    waiting: list[RawClient] = []
    refused: list[RawClient] = []
    try:
        for _ in range(LIMIT):
            client = RawClient(node.host, node.port, timeout=30)
            client.send(gen_connect(uid("wait"), username="u", password="p"))
            waiting.append(client)
        wait_until(lambda: len(backend.requests) >= LIMIT, timeout=15,
                   message="the backend to get the first requests")
        for client in waiting:
            client.expect_nothing(0.2)  # still waiting for the backend

        # Past the backlog: refused at once, whatever the protocol version.
        for _ in range(10):
            client = RawClient(node.host, node.port)
            refused.append(client)
            client.send(gen_connect(uid("over"), username="u", password="p"))
            client.expect_packet(b"\x20\x02\x00\x03")  # 3.1.1: server unavailable
            client.expect_closed()
        v5 = RawClient(node.host, node.port)
        refused.append(v5)
        v5.send(gen_connect5(uid("over5"), username="u", password=b"p"))
        connack = v5.expect_type(2)
        assert connack.body[1] == 0x89, connack  # 5.0: server busy
        v5.expect_closed()
        assert len(backend.requests) == LIMIT  # the refused ones never reached it
        # Counted once each socket is gone: the server lingers up to 1 s after its last
        # word so that the peer can read it (docs/behaviour.md).
        wait_until(lambda: shutdown_count(node).get("auth_overload") == 11, timeout=10,
                   message="the 11 refusals counted as auth_overload")

        # The backend answers: the waiting clients are let in, and the places are free.
        backend.gate.set()
        for client in waiting:
            client.expect_packet(b"\x20\x02\x00\x00", timeout=30)
        late = RawClient(node.host, node.port, timeout=30)
        waiting.append(late)
        late.connect(uid("late"), username="u", password="p")
    finally:
        backend.gate.set()
        for client in waiting + refused:
            client.close()


def test_without_a_limit_every_connect_waits(make_node: Callable[..., Any],
                                             backend: HttpReceiver) -> None:
    """max_auth_pending = 0: no limit, every CONNECT waits for the backend (the
    behaviour the limit replaces)."""
    node = make_node({**SETTINGS, "listeners.tcp.default.max_auth_pending": "0"})
    with node.api() as api:
        ok(api.put(f"/nodes/{node.name}/plugin_configs/emqx_auth_http", json={
            "auth.http.auth_req": f"{backend.url}/mqtt/auth",
            "auth.http.request.timeout": "30s", "auth.http.request.retry_times": "0"}))
        ok(api.put(f"/nodes/{node.name}/plugins/emqx_auth_http/load"))
    backend.gate.clear()
    clients = []
    try:
        for _ in range(LIMIT * 2):
            client = RawClient(node.host, node.port, timeout=30)
            client.send(gen_connect(uid("wait"), username="u", password="p"))
            clients.append(client)
        for client in clients:
            client.expect_nothing(0.1)
        backend.gate.set()
        for client in clients:
            client.expect_packet(b"\x20\x02\x00\x00", timeout=30)
        assert "auth_overload" not in shutdown_count(node)
    finally:
        backend.gate.set()
        for client in clients:
            client.close()
