"""GET /api/v3/prometheus/stats on a live node, parsed with prometheus_client's
own parser: every metric and stat is there, and counts follow real traffic."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers.api import err, ok
from helpers.clients import PahoClient, uid
from prometheus_client.parser import text_string_to_metric_families

PATH = "/prometheus/stats"


def prom(name: str) -> str:
    return "emqx_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape(node: Any, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """Families by name, from a request without credentials unless `auth`."""
    with httpx.Client(base_url=node.api_url, auth=auth, timeout=10) as client:
        resp = client.get(PATH)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4"), resp.headers
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def value(families: dict[str, Any], name: str) -> float:
    [sample] = families[name].samples
    return float(sample.value)


def test_every_metric_and_stat_with_its_type(api_node: Any, api: httpx.Client) -> None:
    metrics = ok(api.get(f"/nodes/{api_node.name}/metrics/"))
    stats = ok(api.get(f"/nodes/{api_node.name}/stats/"))
    families = scrape(api_node)
    for name in metrics:
        family = families[prom(name)]
        want = "gauge" if name == "messages/retained" else "counter"
        assert family.type == want, (name, family.type)
        if want == "counter":
            assert [s.name for s in family.samples] == [prom(name) + "_total"]
    for name, number in stats.items():
        family = families[prom(name)]
        assert family.type == "gauge", name
        if name.endswith("/max"):
            assert value(families, prom(name)) >= number  # high-water marks only grow
    [info] = families["emqx_node_info"].samples
    assert info.labels == {"node": api_node.name, "version": info.labels["version"]}
    assert value(families, "emqx_uptime_seconds") > 0
    assert value(families, "emqx_vm_loop_lag_seconds") >= 0
    assert value(families, "emqx_vm_tasks") >= 1
    assert value(families, "process_resident_memory_bytes") > 0
    assert families["emqx_alarms_present"].type == "gauge"


def test_counts_follow_real_traffic(api_node: Any, mqtt: Callable[..., PahoClient]) -> None:
    before = scrape(api_node)
    sub, pub = mqtt(uid("prom-sub")), mqtt(uid("prom-pub"))
    topic = uid("prom")
    sub.subscribe(f"{topic}/#", 1)
    for i in range(9):
        pub.publish(f"{topic}/{i}", b"x", qos=1)
    sub.get_many(9)
    after = scrape(api_node)

    def delta(name: str) -> float:
        return value(after, name) - value(before, name)

    assert delta("emqx_messages_received") == 9
    assert delta("emqx_messages_qos1_received") == 9
    assert delta("emqx_messages_sent") == 9
    assert delta("emqx_packets_connect") == 2
    assert delta("emqx_packets_subscribe") == 1
    assert value(after, "emqx_connections_count") == value(before, "emqx_connections_count") + 2
    assert value(after, "emqx_subscriptions_count") >= 1


def test_only_get(api_node: Any) -> None:
    with httpx.Client(base_url=api_node.api_url, timeout=10) as client:
        err(client.post(PATH), 405)


def test_credentials_when_configured(make_node: Callable[..., Any]) -> None:
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_id": "admin",
                      "api.default_app_secret": "test-secret", "prometheus.auth": "true"})
    with httpx.Client(base_url=node.api_url, timeout=10) as anonymous:
        resp = anonymous.get(PATH)
        err(resp, 401)
        assert resp.headers["www-authenticate"].lower().startswith("basic realm=")
    with httpx.Client(base_url=node.api_url, auth=("admin", "wrong"), timeout=10) as wrong:
        err(wrong.get(PATH), 401)
    families = scrape(node, auth=("admin", "test-secret"))
    assert "emqx_messages_received" in families


@pytest.mark.parametrize("path", ["/prometheus", "/prometheus/stats/more"])
def test_neighbouring_paths_are_not_open(api_node: Any, path: str) -> None:
    with httpx.Client(base_url=api_node.api_url, timeout=10) as anonymous:
        err(anonymous.get(path), 401)
