"""emqx_lwm2m's server side on aiocoap, with a test device built on aiocoap
(objects 1, 3, 4) and an in-memory hub standing for the broker.

The same flows through a running node, with MQTT clients and lwm2m-node-lib,
are in tests/gateways/test_lwm2m_gateway.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from aiocoap import Code
from helpers.clients import wait_until
from helpers.coap_tools import LoopThread, coap_client
from helpers.lwm2m_device import JSON, TestDevice
from helpers.lwm2m_node import NodeLwm2mClient
from helpers.memory_hub import MemoryHub

from starling.gateways.coap.transport import CoapServer, start_dtls_server, start_server
from starling.gateways.lwm2m.objectdb import standard_objects
from starling.gateways.lwm2m.server import Lwm2mServer, Lwm2mSettings


@dataclass
class Gateway:
    thread: LoopThread
    hub: MemoryHub
    server: Lwm2mServer
    coap: CoapServer

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.coap.port)

    def published(self, topic: str) -> list[dict[str, Any]]:
        items = self.thread.call(lambda: list(self.hub.published))
        return [json.loads(payload) for _, t, payload in items if t == topic]

    def events(self) -> list[tuple[str, str, str]]:
        return list(self.thread.call(lambda: list(self.hub.events)))

    def command(self, endpoint: str, message: dict[str, Any] | bytes) -> None:
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.thread.call(self.hub.deliver, f"lwm2m/{endpoint}/dn", payload)

    def answer(self, endpoint: str, req_id: int, topic: str = "up/resp") -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [m for m in self.published(f"lwm2m/{endpoint}/{topic}")
                        if m.get("reqID") == req_id]
            return bool(found)
        wait_for(check)
        return found[-1]


#: Generous: the machine running the tests may be loaded.
wait_for = partial(wait_until, timeout=10.0)


def make_gateway(**settings: Any) -> Gateway:
    thread = LoopThread()
    hub = MemoryHub()

    async def start() -> tuple[Lwm2mServer, CoapServer]:
        server = Lwm2mServer(hub, Lwm2mSettings(standard_objects(), **settings))
        site = server.listener()
        coap = await start_server("lwm2m", site, "127.0.0.1", 0)
        site.context = coap.context
        return server, coap

    server, coap = thread.run(start())
    return Gateway(thread, hub, server, coap)


def stop_gateway(gateway: Gateway) -> None:
    async def stop() -> None:
        await gateway.server.close()
        await gateway.coap.close()
    gateway.thread.run(stop())
    gateway.thread.stop()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    made = make_gateway()
    yield made
    stop_gateway(made)


@pytest.fixture
def device(gateway: Gateway) -> Iterator[TestDevice]:
    made = TestDevice("dev1", gateway.address)
    assert made.register("&imei=4711").code == Code.CREATED
    yield made
    made.close()


def test_registration_subscribes_and_announces(gateway: Gateway, device: TestDevice) -> None:
    assert device.location == "/rd/dev1"
    assert ("subscribe", "dev1", "lwm2m/dev1/dn/#") in gateway.events()
    assert gateway.events()[0] == ("attached", "dev1", "lwm2m")
    assert gateway.published("lwm2m/dev1/up/resp") == [{"msgType": "register", "data": {
        "ep": "dev1", "lt": 300, "lwm2m": "1.0", "b": "U", "imei": "4711", "alternatePath": "/",
        "objectList": ["/1/0", "/3/0", "/4/0"]}}]


def test_read_an_instance_in_tlv(gateway: Gateway, device: TestDevice) -> None:
    gateway.command("dev1", {"reqID": 1, "msgType": "read", "data": {"path": "/3/0"}})
    answer = gateway.answer("dev1", 1)
    assert answer["msgType"] == "read"
    assert answer["data"]["code"] == "2.05" and answer["data"]["codeMsg"] == "content"
    content = {item["path"]: item["value"] for item in answer["data"]["content"]}
    assert content == {"/3/0/0": "Starling Test Devices", "/3/0/1": "TD-1", "/3/0/2": "0001",
                       "/3/0/6/0": 1, "/3/0/6/1": 5, "/3/0/9": 87, "/3/0/11/0": 0,
                       "/3/0/13": 1_700_000_000, "/3/0/16": "U"}


def test_read_connectivity_and_server_objects_in_json(gateway: Gateway,
                                                      device: TestDevice) -> None:
    device.format = JSON
    gateway.command("dev1", {"reqID": 2, "msgType": "read", "data": {"path": "/4/0"}})
    content = gateway.answer("dev1", 2)["data"]["content"]
    assert {"path": "/4/0/2", "value": -73} in content
    assert {"path": "/4/0/4/0", "value": "192.0.2.10"} in content
    gateway.command("dev1", {"reqID": 3, "msgType": "read", "data": {"path": "/1/0/6"}})
    assert gateway.answer("dev1", 3)["data"]["content"] == [{"path": "/1/0/6", "value": False}]


def test_write_execute_discover_and_write_attributes(gateway: Gateway,
                                                     device: TestDevice) -> None:
    gateway.command("dev1", {"reqID": 4, "msgType": "write", "data": {
        "path": "/3/0/13", "type": "Time", "value": 1_800_000_000}})
    assert gateway.answer("dev1", 4)["data"] == {"reqPath": "/3/0/13", "code": "2.04",
                                                 "codeMsg": "changed"}
    assert device.objects["3"].values[13] == 1_800_000_000
    gateway.command("dev1", {"reqID": 5, "msgType": "write", "data": {"basePath": "/1/0", "content": [
        {"path": "1", "type": "Integer", "value": "600"}, {"path": "7", "type": "String",
                                                           "value": "UQ"}]}})
    assert gateway.answer("dev1", 5)["data"]["code"] == "2.04"
    assert device.objects["1"].values[1] == 600 and device.objects["1"].values[7] == "UQ"
    gateway.command("dev1", {"reqID": 6, "msgType": "execute", "data": {"path": "/3/0/4",
                                                                        "args": "2,7"}})
    assert gateway.answer("dev1", 6)["data"]["code"] == "2.04"
    assert device.executed == [(4, "2,7")]
    gateway.command("dev1", {"reqID": 7, "msgType": "discover", "data": {"path": "/4/0"}})
    assert gateway.answer("dev1", 7)["data"]["content"][:2] == ["</4/0>", "</4/0/0>"]
    gateway.command("dev1", {"reqID": 8, "msgType": "write-attr", "data": {
        "path": "/3/0/9", "pmin": "1", "pmax": 5}})
    assert gateway.answer("dev1", 8)["data"]["code"] == "2.04"
    assert ("PUT", "/3/0/9", ("pmin=1", "pmax=5"), b"") in device.requests


def test_observe_notify_and_cancel(gateway: Gateway, device: TestDevice) -> None:
    gateway.command("dev1", {"reqID": 9, "msgType": "observe", "data": {"path": "/3/0/9"}})
    first = gateway.answer("dev1", 9)
    assert first["msgType"] == "observe"
    assert first["data"]["content"] == [{"path": "/3/0/9", "value": 87}]
    device.change("3", 9, 42)
    notify = gateway.answer("dev1", 9, "up/notify")
    assert notify["msgType"] == "notify" and notify["seqNum"] == 1
    assert notify["data"] == {"reqPath": "/3/0/9", "code": "2.05", "codeMsg": "content",
                              "content": [{"path": "/3/0/9", "value": 42}]}
    gateway.command("dev1", {"reqID": 10, "msgType": "cancel-observe",
                             "data": {"path": "/3/0/9"}})
    cancel = gateway.answer("dev1", 10)
    assert cancel["msgType"] == "cancel-observe" and cancel["data"]["code"] == "2.05"

    # aiocoap (the gateway's CoAP stack) resets a later notification, which ends the
    # device's side of the relation too
    def ended() -> bool:
        device.change("3", 9, 41)
        time.sleep(0.1)
        return device.cancelled == ["/3/0/9"]
    wait_for(ended)


def test_errors_are_answered_as_emqx_does(gateway: Gateway, device: TestDevice) -> None:
    gateway.command("dev1", b"{not json")  # dropped, nothing to answer
    gateway.command("dev1", {"reqID": 11, "msgType": "read", "data": {"path": "/9/0/1"}})
    assert gateway.answer("dev1", 11)["data"] == {"reqPath": "/9/0/1", "code": "4.04",
                                                  "codeMsg": "not_found"}
    # the device answers in TLV, but the gateway has no definition of object 3303
    gateway.command("dev1", {"reqID": 12, "msgType": "read", "data": {"path": "/3303/0"}})
    assert gateway.answer("dev1", 12)["data"]["codeMsg"] == "bad_request"
    gateway.command("dev1", {"reqID": 13, "msgType": "write", "data": {
        "path": "/3/0/13", "type": "Integer", "value": "soon"}})
    assert gateway.answer("dev1", 13)["data"]["code"] == "4.00"
    gateway.command("dev1", {"reqID": 14, "msgType": "execute", "data": {"path": "/4/0/1"}})
    assert gateway.answer("dev1", 14)["data"]["codeMsg"] == "method_not_allowed"
    answered = [m.get("reqID") for m in gateway.published("lwm2m/dev1/up/resp")]
    assert answered == [None, 11, 12, 13, 14]  # the register message, then one per command


def test_update_and_deregister(gateway: Gateway, device: TestDevice) -> None:
    assert device.update("lt=600").code == Code.CHANGED
    assert [m["msgType"] for m in gateway.published("lwm2m/dev1/up/resp")] == ["register"]
    assert device.update("", b"</1/0>,</3/0>").code == Code.CHANGED
    update = gateway.published("lwm2m/dev1/up/resp")[-1]
    assert update == {"msgType": "update", "data": {
        "ep": "dev1", "lt": 600, "lwm2m": "1.0", "b": "U", "imei": "4711",
        "alternatePath": "/", "objectList": ["/1/0", "/3/0"]}}
    assert device.deregister().code == Code.DELETED
    assert ("closed", "dev1", "deregistered") in gateway.events()
    assert device.update("lt=600").code == Code.NOT_FOUND


@pytest.mark.parametrize(("query", "code"), [
    ("lt=60&lwm2m=1.0", Code.BAD_REQUEST), ("ep=x&lwm2m=1.0", Code.BAD_REQUEST),
    ("ep=x&lt=999999&lwm2m=1.0", Code.BAD_REQUEST), ("ep=x&lt=60&lwm2m=2.0",
                                                    Code.PRECONDITION_FAILED)])
def test_registrations_refused(gateway: Gateway, query: str, code: Code) -> None:
    device = TestDevice("x", gateway.address)
    try:
        assert device._send(Code.POST, "/rd", query, b"</3/0>").code == code
        assert gateway.events() == []
    finally:
        device.close()


def test_a_refused_endpoint_is_forbidden(gateway: Gateway) -> None:
    gateway.hub.passwords["dev9"] = "x"  # hub refuses clients without this password

    async def refuse(details: Any, outlet: Any) -> Any:
        from starling.gateways.coap.hub import AttachRefused
        raise AttachRefused("not_authorized")
    gateway.hub.attach = refuse  # type: ignore[method-assign]
    device = TestDevice("dev9", gateway.address)
    try:
        assert device.register().code == Code.FORBIDDEN
    finally:
        device.close()


def test_lifetime_expiry_ends_the_session() -> None:
    gateway = make_gateway(lifetime_min=1)
    device = TestDevice("brief", gateway.address, lifetime=1)
    try:
        assert device.register().code == Code.CREATED
        wait_for(lambda: ("closed", "brief", "lifetime_expired") in gateway.events())
        assert device.update().code == Code.NOT_FOUND
    finally:
        device.close()
        stop_gateway(gateway)


def test_queue_mode_holds_commands_until_the_next_update() -> None:
    gateway = make_gateway(qmode_time_window=0)
    device = TestDevice("sleeper", gateway.address, binding="UQ")
    try:
        assert device.register().code == Code.CREATED
        gateway.command("sleeper", {"reqID": 1, "msgType": "read", "data": {"path": "/3/0/9"}})
        time.sleep(0.5)
        assert [m for m in gateway.published("lwm2m/sleeper/up/resp") if "reqID" in m] == []
        assert device.update().code == Code.CHANGED
        assert gateway.answer("sleeper", 1)["data"]["content"] == [{"path": "/3/0/9",
                                                                    "value": 87}]
    finally:
        device.close()
        stop_gateway(gateway)


def test_kick_forgets_the_device(gateway: Gateway, device: TestDevice) -> None:
    gateway.thread.call(gateway.hub.kick, "dev1")
    assert device.update().code == Code.NOT_FOUND
    assert device.register().code == Code.CREATED  # the device comes back by registering


def test_lwm2m_node_lib_registers_updates_and_deregisters(gateway: Gateway) -> None:
    client = NodeLwm2mClient("127.0.0.1", gateway.coap.port, "nodedev", lifetime=120)
    try:
        assert client.registered == "registered rd/nodedev"
        assert gateway.published("lwm2m/nodedev/up/resp")[0]["data"]["objectList"] == [
            "/1/0", "/3/0", "/4/0"]
        # lwm2m-node-lib sends each request from a new port: the registration is found
        # by its location and the device's address follows it
        assert client.update() == "updated"
        assert gateway.published("lwm2m/nodedev/up/resp")[-1]["msgType"] == "update"
        assert client.deregister() == "deregistered"
        wait_for(lambda: ("closed", "nodedev", "deregistered") in gateway.events())
    finally:
        client.close()


def test_auto_observe_observes_every_registered_instance() -> None:
    gateway = make_gateway(auto_observe=True)
    device = TestDevice("watched", gateway.address)
    try:
        assert device.register().code == Code.CREATED
        wait_for(lambda: sorted(device.observed) == ["/1/0", "/3/0", "/4/0"])

        def observed() -> list[str]:
            return sorted(m["data"]["reqPath"] for m in
                          gateway.published("lwm2m/watched/up/resp")
                          if m["msgType"] == "observe")
        wait_for(lambda: observed() == ["/1/0", "/3/0", "/4/0"])
        device.change("3", 9, 5)
        wait_for(lambda: any(m["data"]["reqPath"] == "/3/0" for m in
                             gateway.published("lwm2m/watched/up/notify")))
    finally:
        device.close()
        stop_gateway(gateway)


def test_registration_over_dtls_with_a_pre_shared_key() -> None:
    thread = LoopThread()
    hub = MemoryHub()
    keys = {"dtls-dev": b"device-secret"}

    async def start() -> tuple[Lwm2mServer, CoapServer]:
        server = Lwm2mServer(hub, Lwm2mSettings(standard_objects()))
        site = server.listener()
        coap = await start_dtls_server("lwm2m-dtls", site, "127.0.0.1", 0, keys.get)
        site.context = coap.context
        return server, coap

    server, coap = thread.run(start())
    gateway = Gateway(thread, hub, server, coap)
    try:
        url = f"coaps://127.0.0.1:{coap.port}/rd?ep=dtls-dev&lt=60&lwm2m=1.0&b=U"
        coap_client("-m", "post", "-t", "40", "-e", "</3/0>", "-u", "dtls-dev", "-k",
                    "device-secret", url, dtls=True)
        assert gateway.published("lwm2m/dtls-dev/up/resp")[0]["data"]["objectList"] == ["/3/0"]
        coap_client("-m", "post", "-e", "</3/0>", "-u", "dtls-dev", "-k", "wrong", url.replace(
            "dtls-dev&", "intruder&"), dtls=True, timeout=4)
        assert [e for e in gateway.events() if e[0] == "attached"] == [
            ("attached", "dtls-dev", "lwm2m")]
    finally:
        stop_gateway(gateway)
