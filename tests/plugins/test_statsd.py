"""emqx_statsd on a live node: a real UDP socket in the test receives the
StatsD lines the node pushes after real MQTT traffic."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers.api import err, ok
from helpers.clients import Clients, uid, wait_until
from helpers.plugin_api import configure

from tests.conftest import API_SETTINGS

PLUGIN = "emqx_statsd"
LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+):(?P<value>-?[0-9.]+)\|(?P<type>[cg])"
                  r"(?:\|#(?P<tags>.+))?$")


class StatsdServer:
    """A UDP socket that keeps every line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.lines: list[str] = []
        self.datagrams = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except OSError:
                continue
            with self._lock:
                self.datagrams += 1
                self.lines += data.decode().split("\n")

    def __enter__(self) -> StatsdServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def parsed(self) -> list[dict[str, str]]:
        with self._lock:
            lines = list(self.lines)
        out = []
        for line in lines:
            match = LINE.match(line)
            assert match is not None, f"not a StatsD line: {line!r}"
            out.append(match.groupdict())
        return out

    def counter_total(self, name: str) -> int:
        return sum(int(p["value"]) for p in self.parsed()
                   if p["name"] == name and p["type"] == "c")

    def last_gauge(self, name: str) -> float | None:
        values = [float(p["value"]) for p in self.parsed()
                  if p["name"] == name and p["type"] == "g"]
        return values[-1] if values else None


@pytest.fixture
def node(make_node: Callable[..., Any]) -> Any:
    return make_node(API_SETTINGS)


def test_metrics_and_stats_reach_a_statsd_server(node: Any, api: httpx.Client,
                                                 clients: Clients) -> None:
    with StatsdServer() as server:
        configure(api, node, PLUGIN, {"statsd.port": str(server.port),
                                      "statsd.interval": "200ms", "statsd.prefix": "starling",
                                      "statsd.tags": "env:test,node:a"})
        ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"))
        sub, pub = clients(node, uid("sd")), clients(node, uid("sd"))
        try:
            sub.subscribe("sd/#", 1)
            for i in range(7):
                pub.publish(f"sd/{i}", b"x", qos=1)
            sub.get_many(7)
            wait_until(lambda: server.counter_total("starling.messages.received") == 7,
                       timeout=10, message="7 messages received, pushed as counter deltas")
            wait_until(lambda: server.counter_total("starling.messages.sent") == 7, timeout=10,
                       message="7 messages sent")
            wait_until(lambda: server.last_gauge("starling.connections.count") == 2, timeout=10,
                       message="connections gauge")
            assert server.counter_total("starling.packets.connect") == 2
            assert server.counter_total("starling.messages.qos1.received") == 7
        finally:
            sub.close()
            pub.close()
        wait_until(lambda: server.last_gauge("starling.connections.count") == 0, timeout=10,
                   message="connections gauge back to 0")
        parsed = server.parsed()
        assert all(p["tags"] == "env:test,node:a" for p in parsed)
        gauges = {p["name"] for p in parsed if p["type"] == "g"}
        stats = ok(api.get(f"/nodes/{node.name}/stats/"))
        assert {f"starling.{s.replace('/', '.')}" for s in stats} <= gauges
        assert {"starling.node.uptime", "starling.node.memory",
                "starling.messages.retained"} <= gauges
        metrics = ok(api.get(f"/nodes/{node.name}/metrics/"))
        counters = {p["name"] for p in parsed if p["type"] == "c"}
        assert counters <= {f"starling.{m.replace('/', '.')}" for m in metrics}
        # a counter is only sent when it changed: never a zero delta
        assert all(int(p["value"]) != 0 for p in parsed if p["type"] == "c")

        ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))
        time.sleep(0.3)  # a push sent just before the unload may still be on its way
        sent = server.datagrams
        time.sleep(1.0)  # five intervals: nothing more comes
        assert server.datagrams == sent


def test_without_tags_and_with_the_default_prefix(node: Any, api: httpx.Client,
                                                  clients: Clients) -> None:
    with StatsdServer() as server:
        configure(api, node, PLUGIN, {"statsd.port": str(server.port), "statsd.interval": "100"})
        ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"))
        c = clients(node, uid("sd"))
        try:
            c.publish("plain/x", b"1", qos=1)
            wait_until(lambda: server.counter_total("emqx.messages.received") == 1, timeout=10,
                       message="the publish counted")
        finally:
            c.close()
        ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))
        assert all(p["tags"] is None for p in server.parsed())


def test_a_statsd_server_that_is_not_there_changes_nothing_for_clients(
        node: Any, api: httpx.Client, clients: Clients) -> None:
    with StatsdServer() as server:
        port = server.port
    configure(api, node, PLUGIN, {"statsd.port": str(port), "statsd.interval": "50ms"})
    ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"))
    sub, pub = clients(node, uid("sd")), clients(node, uid("sd"))
    try:
        sub.subscribe("gone/#", 0)
        for i in range(20):
            pub.publish(f"gone/{i}", b"x", qos=1)
        assert len(sub.get_many(20)) == 20
    finally:
        sub.close()
        pub.close()
    plugins = {p["name"]: p for p in ok(api.get("/plugins/"))[0]["plugins"]}
    assert plugins[PLUGIN]["active"] is True
    ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))


@pytest.mark.parametrize(("key", "value"), [
    ("statsd.port", "0"),
    ("statsd.port", "http"),
    ("statsd.interval", "10ms"),
    ("statsd.interval", "often"),
    ("statsd.tags", "env prod"),
    ("statsd.prefix", "a b"),
    ("statsd.max_packet_size", "10"),
])
def test_bad_config_is_refused(node: Any, api: httpx.Client, key: str, value: str) -> None:
    err(api.put(f"/nodes/{node.name}/plugin_configs/{PLUGIN}", json={key: value}), 400, 108)


def test_an_unresolvable_host_fails_the_load_clearly(node: Any, api: httpx.Client) -> None:
    configure(api, node, PLUGIN, {"statsd.host": "no-such-host.invalid"})
    err(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/load"), 400)
    plugins = {p["name"]: p for p in ok(api.get("/plugins/"))[0]["plugins"]}
    assert plugins[PLUGIN]["active"] is False
