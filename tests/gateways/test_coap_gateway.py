"""emqx_coap on a running node: CoAP clients (libcoap's coap-client, aiocoap)
meet MQTT clients (paho) through the real broker, with its authentication,
ACL, banned list, metrics, management API listing and kick, and the plugin's
load / unload opening and closing the listener."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.api import listener_row, ok
from helpers.clients import uid, wait_until
from helpers.coap_tools import aiocoap_client, coap_client, start_coap_client
from helpers.gateway_node import (
    API,
    connection,
    load_gateway,
    start_gateway_node,
    subscriptions,
    udp_port_closed,
)
from helpers.plugin_api import configure, metrics, plugin_call

RULES = """\
{deny, all, publish, ["denied/#"]}.
{deny, all, subscribe, ["private/#"]}.
{allow, all}.
"""


@pytest.fixture
def gateway(make_node: Any, tmp_path: Path) -> Any:
    acl = tmp_path / "acl.conf"
    acl.write_text(RULES, "utf-8")
    node, node.coap_port = start_gateway_node(make_node, "emqx_coap", "coap:udp:default",
                                              {"coap.port": "127.0.0.1:0"},
                                              {"acl_file": str(acl)})
    return node


@pytest.fixture
def api(gateway: Any) -> Iterator[Any]:
    with gateway.api() as client:
        yield client


def url(node: Any, path: str) -> str:
    return f"coap://127.0.0.1:{node.coap_port}{path}"


def test_a_coap_publish_reaches_mqtt_subscribers(gateway: Any, clients: Any, api: Any) -> None:
    topic, device = uid("room") + "/temp", uid("dev")
    subscriber = clients(gateway)
    subscriber.subscribe(topic, 1)
    before = metrics(api, gateway)["messages/received"]
    coap_client("-m", "put", "-e", "21.5", url(gateway, f"/mqtt/{topic}?c={device}"))
    message = subscriber.get()
    assert (message.topic, message.payload, message.qos) == (topic, b"21.5", 0)
    assert metrics(api, gateway)["messages/received"] == before + 1
    listed = connection(api, device)
    assert listed is not None and listed["ipaddress"] == "127.0.0.1"
    assert listed["proto_name"] == "CoAP"


def test_an_observer_gets_mqtt_publishes(gateway: Any, clients: Any, api: Any) -> None:
    base, device = uid("news"), uid("watch")
    observer = start_coap_client("-s", "6", "-w", url(gateway, f"/mqtt/{base}/%2B?c={device}"))
    try:
        wait_until(lambda: subscriptions(api, device) == [f"{base}/+"], timeout=10,
                   message="the observer's subscription")
        publisher = clients(gateway)
        publisher.publish(f"{base}/a", b"first", qos=1)
        publisher.publish(f"{base}/b", b"second", qos=0)
        publisher.publish(f"{uid('other')}/a", b"not for it")
        out, _ = observer.communicate(timeout=30)
    finally:
        observer.kill()
    assert out.split() == ["first", "second"]
    # coap-client deregistered at the end of its observation
    wait_until(lambda: subscriptions(api, device) == [], timeout=10, message="unsubscribed")
    # and the client is gone (an ICMP error answers what is sent to it): the gateway
    # still answers everyone else (under uvloop aiocoap's error queue once stalled it)
    publisher.subscribe(f"{base}/next", 0)
    coap_client("-m", "put", "-e", "next", url(gateway, f"/mqtt/{base}/next?c={uid('n')}"))
    assert publisher.get().payload == b"next"


def test_the_acl_is_answered_honestly(gateway: Any, clients: Any) -> None:
    device = uid("acl")
    watcher = clients(gateway)
    watcher.subscribe("denied/#", 0)
    out, err = coap_client("-m", "put", "-e", "x", url(gateway, f"/mqtt/denied/x?c={device}"))
    assert "4.03" in out + err
    out, err = coap_client("-s", "1", url(gateway, f"/mqtt/private/%23?c={device}"))
    assert "4.03" in out + err
    with pytest.raises(AssertionError):
        watcher.get(timeout=1)


def test_authentication_and_bans(gateway: Any, api: Any) -> None:
    plugin_call(api, gateway, "emqx_auth_username", "load")
    try:
        ok(api.post("/auth_username", json={"username": "alice", "password": "secret"}))
        device = uid("auth")
        out, err = coap_client("-m", "put", "-e", "x",
                               url(gateway, f"/mqtt/t?c={device}&u=alice&p=wrong"))
        assert "4.01" in out + err
        assert connection(api, device) is None
        done = aiocoap_client("-m", "PUT", "--payload", "x",
                              url(gateway, f"/mqtt/t?c={device}&u=alice&p=secret"))
        assert done.returncode == 0, done.stderr
        assert connection(api, device) is not None
    finally:
        plugin_call(api, gateway, "emqx_auth_username", "unload")
    banned = uid("banned")
    ok(api.post("/banned/", json={"who": banned, "as": "client_id"}))
    out, err = coap_client("-m", "put", "-e", "x", url(gateway, f"/mqtt/t?c={banned}"))
    assert "4.03" in out + err


def test_kick_through_the_api_ends_the_session(gateway: Any, api: Any) -> None:
    device = uid("kick")
    observer = start_coap_client("-s", "20", url(gateway, f"/mqtt/{device}/t?c={device}"))
    try:
        wait_until(lambda: connection(api, device), timeout=10, message="connected")
        assert ok(api.delete(f"/connections/{device}")) is None
        out, err = observer.communicate(timeout=30)
    finally:
        observer.kill()
    assert "5.03" in out + err or "kicked" in out + err
    wait_until(lambda: connection(api, device) is None, message="connection gone")


def test_malformed_datagrams_leave_the_gateway_serving(gateway: Any, clients: Any) -> None:
    topic = uid("alive")
    subscriber = clients(gateway)
    subscriber.subscribe(topic, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", b"\xff" * 64, b"\x40\x01\x00\x01\xff",
                     b"\x48\x02\x00\x01\x01", b"\x40\x03\x12\x34\xbd\xff\xff",
                     b"\x44\x02\x00\x01abcd\xb4mqtt\x0f"):
            sock.sendto(junk, ("127.0.0.1", gateway.coap_port))
    coap_client("-m", "put", "-e", "ok", url(gateway, f"/mqtt/{topic}?c={uid('after')}"))
    assert subscriber.get().payload == b"ok"
    assert not any("Traceback" in line for line in gateway.log_lines)


def test_a_session_ends_after_keepalive(make_node: Any) -> None:
    node = make_node(API)
    port = load_gateway(node, "emqx_coap", "coap:udp:default", {"coap.port": "127.0.0.1:0",
                                                    "coap.keepalive": "1s"})
    device = uid("idle")
    with node.api() as api:
        coap_client(f"coap://127.0.0.1:{port}/mqtt/t?c={device}")
        assert connection(api, device) is not None
        wait_until(lambda: connection(api, device) is None, timeout=10,
                   message="the idle session ended")


def test_unload_closes_the_listener_and_load_opens_it(make_node: Any) -> None:
    node = make_node(API)
    port = load_gateway(node, "emqx_coap", "coap:udp:default", {"coap.port": "127.0.0.1:0"})
    assert not udp_port_closed(port)
    coap_client("-m", "put", "-e", "1", f"coap://127.0.0.1:{port}/mqtt/t?c={uid('dev')}")
    with node.api() as api:
        # Listed with the node's own listeners while loaded, with its session.
        row = listener_row(api, node.name, "coap:udp")
        assert row is not None and row["listen_on"] == f"127.0.0.1:{port}"
        assert row["current_conns"] == 1
        plugin_call(api, node, "emqx_coap", "unload")
        assert udp_port_closed(port)
        assert listener_row(api, node.name, "coap:udp") is None
        configure(api, node, "emqx_coap", {"coap.port": f"127.0.0.1:{port}"})
        plugin_call(api, node, "emqx_coap", "load")
    assert not udp_port_closed(port)


def test_a_busy_port_refuses_the_load_naming_it(make_node: Any) -> None:
    node = make_node(API)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with node.api() as api:
            configure(api, node, "emqx_coap", {"coap.port": f"127.0.0.1:{port}"})
            answer = api.put(f"/nodes/{node.name}/plugins/emqx_coap/load").json()
    assert answer["code"] != 0 and str(port) in answer["message"]


def test_bad_config_is_refused_naming_the_key(gateway: Any, api: Any) -> None:
    for key, value in (("coap.port", "seventy"), ("coap.keepalive", "0s"),
                       ("coap.dtls.certfile", "etc/certs/cert.pem")):
        answer = api.put(f"/nodes/{gateway.name}/plugin_configs/emqx_coap",
                         json={key: value}).json()
        assert answer["code"] != 0 and key in answer["message"]
