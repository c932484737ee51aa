"""emqx_lwm2m on a running node: LwM2M devices (lwm2m-node-lib from npm, and a
test device on aiocoap serving objects 1, 3 and 4) managed by an MQTT back end
(paho) through the real broker, its management API listing and kick, and the
plugin's load / unload opening and closing the listener."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiocoap import Code
from helpers.api import listener_row, ok
from helpers.clients import uid, wait_until
from helpers.gateway_node import (
    API,
    connection,
    load_gateway,
    start_gateway_node,
    subscriptions,
    udp_port_closed,
)
from helpers.lwm2m_device import TestDevice
from helpers.lwm2m_node import NodeLwm2mClient
from helpers.plugin_api import plugin_call


@pytest.fixture
def gateway(make_node: Any) -> Any:
    node, node.lwm2m_port = start_gateway_node(make_node, "emqx_lwm2m", "lwm2m:udp:default",
                                               {"lwm2m.port": "127.0.0.1:0"})
    return node


@pytest.fixture
def api(gateway: Any) -> Iterator[Any]:
    with gateway.api() as client:
        yield client


class BackEnd:
    """An MQTT back end managing one endpoint: commands out, answers in."""

    def __init__(self, clients: Any, node: Any, endpoint: str) -> None:
        self.endpoint = endpoint
        self.mqtt = clients(node)
        self.mqtt.subscribe(f"lwm2m/{endpoint}/up/#", 0)

    def next(self, topic: str = "up/resp") -> dict[str, Any]:
        message = self.mqtt.get(timeout=10, topic=f"lwm2m/{self.endpoint}/{topic}")
        return json.loads(message.payload)  # type: ignore[no-any-return]

    def command(self, req_id: int, msg_type: str, **data: Any) -> dict[str, Any]:
        self.mqtt.publish(f"lwm2m/{self.endpoint}/dn/dm", json.dumps(
            {"reqID": req_id, "msgType": msg_type, "data": data}), qos=1)
        answer = self.next()
        assert answer["reqID"] == req_id, answer
        return answer


@pytest.fixture
def device(gateway: Any) -> Iterator[TestDevice]:
    made = TestDevice(uid("dev"), ("127.0.0.1", gateway.lwm2m_port))
    yield made
    made.close()


def test_a_device_is_managed_over_mqtt(gateway: Any, clients: Any, api: Any,
                                       device: TestDevice) -> None:
    back = BackEnd(clients, gateway, device.endpoint)
    assert device.register().code == Code.CREATED
    register = back.next()
    assert register["msgType"] == "register"
    assert register["data"]["objectList"] == ["/1/0", "/3/0", "/4/0"]
    listed = connection(api, device.endpoint)
    assert listed is not None and listed["proto_name"] == "LwM2M"
    assert subscriptions(api, device.endpoint) == [f"lwm2m/{device.endpoint}/dn/#"]

    read = back.command(1, "read", path="/3/0/0")
    assert read["data"] == {"reqPath": "/3/0/0", "code": "2.05", "codeMsg": "content",
                            "content": [{"path": "/3/0/0", "value": "Starling Test Devices"}]}
    write = back.command(2, "write", path="/3/0/13", type="Time", value=1_800_000_000)
    assert write["data"]["codeMsg"] == "changed"
    assert device.objects["3"].values[13] == 1_800_000_000
    execute = back.command(3, "execute", path="/3/0/4")
    assert execute["data"]["code"] == "2.04" and device.executed == [(4, "")]
    connectivity = back.command(4, "read", path="/4/0")
    assert {"path": "/4/0/2", "value": -73} in connectivity["data"]["content"]

    observe = back.command(5, "observe", path="/3/0/9")
    assert observe["msgType"] == "observe"
    device.change("3", 9, 12)
    notify = back.next("up/notify")
    assert notify["msgType"] == "notify" and notify["reqID"] == 5
    assert notify["data"]["content"] == [{"path": "/3/0/9", "value": 12}]
    assert device.deregister().code == Code.DELETED
    wait_until(lambda: connection(api, device.endpoint) is None, message="gone")


def test_lwm2m_node_lib_registers_updates_and_deregisters(gateway: Any, clients: Any,
                                                          api: Any) -> None:
    endpoint = uid("node")
    back = BackEnd(clients, gateway, endpoint)
    client = NodeLwm2mClient("127.0.0.1", gateway.lwm2m_port, endpoint, lifetime=120)
    try:
        assert client.registered == f"registered rd/{endpoint}"
        assert back.next()["data"]["lt"] == 120
        assert connection(api, endpoint) is not None
        assert client.update() == "updated"
        assert back.next()["msgType"] == "update"
        assert client.deregister() == "deregistered"
        wait_until(lambda: connection(api, endpoint) is None, message="deregistered")
    finally:
        client.close()


def test_kick_through_the_api_forgets_the_registration(gateway: Any, api: Any,
                                                       device: TestDevice) -> None:
    assert device.register().code == Code.CREATED
    wait_until(lambda: connection(api, device.endpoint), message="registered")
    ok(api.delete(f"/connections/{device.endpoint}"))
    wait_until(lambda: connection(api, device.endpoint) is None, message="kicked")
    assert device.update().code == Code.NOT_FOUND


def test_a_banned_endpoint_is_refused(gateway: Any, api: Any, device: TestDevice) -> None:
    ok(api.post("/banned/", json={"who": device.endpoint, "as": "client_id"}))
    assert device.register().code == Code.FORBIDDEN
    assert connection(api, device.endpoint) is None


def test_unload_closes_the_listener(make_node: Any) -> None:
    node = make_node(API)
    port = load_gateway(node, "emqx_lwm2m", "lwm2m:udp:default", {"lwm2m.port": "127.0.0.1:0"})
    assert not udp_port_closed(port)
    device = TestDevice(uid("dev"), ("127.0.0.1", port))
    try:
        assert device.register().code == Code.CREATED
        with node.api() as api:
            # Listed with the node's own listeners while loaded, with its device.
            row = listener_row(api, node.name, "lwm2m:udp")
            assert row is not None and row["listen_on"] == f"127.0.0.1:{port}"
            assert row["current_conns"] == 1
            plugin_call(api, node, "emqx_lwm2m", "unload")
            assert listener_row(api, node.name, "lwm2m:udp") is None
    finally:
        device.close()
    assert udp_port_closed(port)


def test_both_gateways_on_one_port_is_refused(make_node: Any) -> None:
    node = make_node(API)
    port = load_gateway(node, "emqx_coap", "coap:udp:default", {"coap.port": "127.0.0.1:0"})
    with node.api() as api:
        ok(api.put(f"/nodes/{node.name}/plugin_configs/emqx_lwm2m",
                   json={"lwm2m.port": f"127.0.0.1:{port}"}))
        answer = api.put(f"/nodes/{node.name}/plugins/emqx_lwm2m/load").json()
    assert answer["code"] != 0 and str(port) in answer["message"]
