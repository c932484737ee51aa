"""`management.metric_names = dot`: /stats, /metrics and the Prometheus scrape
with EMQ X v3.2's names (facts §5.9, §5.10), which v3.2-era dashboards and
scripts read; a value other than slash or dot is refused at start.  The
default (the seed's names) is what the other API suites check."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.api import ok
from helpers.clients import PahoClient, uid, wait_until
from prometheus_client.parser import text_string_to_metric_families

API = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}

#: EMQ X v3.2's names of the seed's 43 metrics (facts §5.9), and the v3.2 additions
#: Starling counts.
V32_METRICS = {
    "bytes.received", "bytes.sent", "packets.received", "packets.sent",
    "packets.connect.received", "packets.connack.sent",
    "packets.publish.received", "packets.publish.sent",
    "packets.puback.received", "packets.puback.sent", "packets.puback.missed",
    "packets.pubrec.received", "packets.pubrec.sent", "packets.pubrec.missed",
    "packets.pubrel.received", "packets.pubrel.sent", "packets.pubrel.missed",
    "packets.pubcomp.received", "packets.pubcomp.sent", "packets.pubcomp.missed",
    "packets.subscribe.received", "packets.suback.sent",
    "packets.unsubscribe.received", "packets.unsuback.sent",
    "packets.pingreq.received", "packets.pingresp.sent",
    "packets.disconnect.received", "packets.disconnect.sent", "packets.auth.received",
    "messages.received", "messages.sent",
    "messages.qos0.received", "messages.qos0.sent", "messages.qos1.received",
    "messages.qos1.sent", "messages.qos2.received", "messages.qos2.sent",
    "messages.qos2.expired", "messages.qos2.dropped", "messages.retained",
    "messages.dropped", "messages.expired", "messages.forward",
} | {
    "packets.connack.error", "packets.connack.auth_error", "packets.publish.error",
    "packets.publish.auth_error", "packets.auth.sent", "auth.mqtt.anonymous",
}
#: EMQ X v3.2's stats (facts §5.10).
V32_STATS = {f"{name}.{kind}" for kind in ("count", "max") for name in (
    "connections", "sessions", "sessions.persistent", "topics", "routes", "subscribers",
    "subscriptions", "subscriptions.shared", "suboptions", "retained")}


@pytest.fixture
def dotted(make_node: Callable[..., Any]) -> Iterator[tuple[Any, httpx.Client]]:
    node = make_node({**API, "management.metric_names": "dot"})
    with node.api() as api:
        yield node, api


def test_stats_have_v32_names(dotted: tuple[Any, httpx.Client]) -> None:
    node, api = dotted
    [cluster] = ok(api.get("/stats/"))
    assert cluster.pop("node") == node.name
    assert set(cluster) >= V32_STATS, V32_STATS - set(cluster)
    assert not [name for name in cluster if "/" in name]
    assert set(ok(api.get(f"/nodes/{node.name}/stats/"))) == set(cluster)


def test_metrics_have_v32_names(dotted: tuple[Any, httpx.Client]) -> None:
    node, api = dotted
    [cluster] = ok(api.get("/metrics/"))
    assert cluster["node"] == node.name
    names = set(cluster["metrics"])
    assert names >= V32_METRICS, V32_METRICS - names
    assert not [name for name in names if "/" in name]
    assert "packets.connect" not in names and "packets/connect" not in names
    assert set(ok(api.get(f"/nodes/{node.name}/metrics/"))) == names


def test_dotted_numbers_follow_traffic(dotted: tuple[Any, httpx.Client]) -> None:
    node, api = dotted
    path = f"/nodes/{node.name}"
    before, stats_before = ok(api.get(f"{path}/metrics/")), ok(api.get(f"{path}/stats/"))
    client = PahoClient(node.host, node.port, client_id=uid("dot"))
    client.connect()
    try:
        client.subscribe(uid("dot") + "/t", 1)
        stats_now = ok(api.get(f"{path}/stats/"))
        assert stats_now["connections.count"] == stats_before["connections.count"] + 1
        assert stats_now["subscriptions.count"] == stats_before["subscriptions.count"] + 1
        after = ok(api.get(f"{path}/metrics/"))
        for name in ("packets.connect.received", "packets.connack.sent",
                     "packets.subscribe.received", "packets.suback.sent"):
            assert after[name] == before[name] + 1, name
    finally:
        client.close()
    wait_until(lambda: ok(api.get(f"{path}/stats/"))["connections.count"]
               == stats_before["connections.count"], message="connection gone")


def test_prometheus_scrape_uses_v32_names(dotted: tuple[Any, httpx.Client]) -> None:
    node, _ = dotted
    with httpx.Client(base_url=node.api_url, timeout=10) as scraper:
        text = scraper.get("/prometheus/stats").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["emqx_packets_connect_received"].type == "counter"
    assert families["emqx_packets_connack_sent"].type == "counter"
    assert "emqx_packets_connect" not in families
    assert families["emqx_connections_count"].type == "gauge"
    assert families["emqx_messages_retained"].type == "gauge"


def test_other_values_are_refused_at_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "starling", "start", "--data-dir", str(tmp_path),
         "--set", "management.metric_names=dots",
         "--set", "listeners.tcp.default.bind=127.0.0.1:0",
         "--set", "listeners.tcp.internal.bind=off", "--set", "listeners.ws.default.bind=off",
         "--set", "management.bind=off", "--set", "dashboard.bind=off"],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "management.metric_names" in done.stderr and "slash, dot" in done.stderr
    assert "Traceback" not in done.stderr
