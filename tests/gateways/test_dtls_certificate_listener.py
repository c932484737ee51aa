"""The certificate DTLS listener on its own (emqx_coap's resource tree and
emqx_lwm2m's server behind it, an in-memory hub for the broker), driven by
libcoap's ``coap-client-openssl``: the bounds on per-peer state (sessions per
IP address, idle sessions dropped) and LwM2M registration over ``coaps://``.
The node-level flows are in tests/gateways/test_coap_dtls_certificates.py."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiocoap import Code
from helpers.certs import CA
from helpers.clients import wait_until
from helpers.coap_tools import LoopThread, coap_client, start_coap_client
from helpers.dtls_relay import DtlsRelay
from helpers.lwm2m_device import TestDevice
from helpers.memory_hub import MemoryHub

from starling.gateways.coap.dtls_config import DtlsLimits
from starling.gateways.coap.pubsub import PsTopics
from starling.gateways.coap.sessions import CoapClients
from starling.gateways.coap.site import CoapSite
from starling.gateways.coap.transport import CoapServer, start_certificate_dtls_server
from starling.gateways.lwm2m.objectdb import standard_objects
from starling.gateways.lwm2m.server import Lwm2mServer, Lwm2mSettings
from starling.transport import TlsOptions

wait_for = partial(wait_until, timeout=10.0)


@dataclass
class Listener:
    thread: LoopThread
    hub: MemoryHub
    server: CoapServer
    ca: CA
    client: list[str]  #: coap-client-openssl's options: a trusted client certificate
    stop: Any

    def url(self, path: str) -> str:
        return f"coaps://127.0.0.1:{self.server.port}{path}"

    def events(self) -> list[tuple[str, str, str]]:
        return list(self.thread.call(lambda: list(self.hub.events)))

    def published(self) -> list[tuple[str, str, bytes]]:
        return list(self.thread.call(lambda: list(self.hub.published)))


def options(ca: CA) -> TlsOptions:
    server = ca.issue_server()
    return TlsOptions(str(server.cert), str(server.key), str(ca.cert), "verify_peer", True)


def client_options(ca: CA) -> list[str]:
    alice = ca.issue_client("alice")
    return ["-c", str(alice.cert), "-j", str(alice.key), "-C", str(ca.cert)]


#: Makes the resource tree a listener serves, on the hub: (site, its closer).
SiteMaker = Callable[[MemoryHub], tuple[Any, Callable[[], Awaitable[None]]]]


def start_listener(tmp_path: Path, make_site: SiteMaker,
                   limits: DtlsLimits | None = None) -> Listener:
    thread, hub, ca = LoopThread(), MemoryHub(), CA.create(tmp_path)

    async def start() -> tuple[CoapServer, Callable[[], Awaitable[None]]]:
        site, close_site = make_site(hub)
        server = await start_certificate_dtls_server("dtls", site, "127.0.0.1", 0,
                                                     options(ca), limits or DtlsLimits())
        site.context = server.context  # LwM2M's site sends through it
        return server, close_site

    server, close_site = thread.run(start())

    def stop() -> None:
        async def close() -> None:
            await close_site()
            await server.close()
        thread.run(close())
        thread.stop()
    return Listener(thread, hub, server, ca, client_options(ca), stop)


def coap_site(hub: MemoryHub) -> tuple[Any, Callable[[], Awaitable[None]]]:
    clients = CoapClients(hub, 30.0)
    return CoapSite(clients, PsTopics(), time.monotonic), clients.close


def lwm2m_site(hub: MemoryHub) -> tuple[Any, Callable[[], Awaitable[None]]]:
    server = Lwm2mServer(hub, Lwm2mSettings(standard_objects()))
    return server.listener(), server.close


@pytest.fixture
def one_per_address(tmp_path: Path) -> Iterator[Listener]:
    made = start_listener(tmp_path, coap_site, DtlsLimits(per_address=1))
    yield made
    made.stop()


@pytest.fixture
def quickly_idle(tmp_path: Path) -> Iterator[Listener]:
    made = start_listener(tmp_path, coap_site, DtlsLimits(idle_timeout=1.0))
    yield made
    made.stop()


@contextlib.contextmanager
def observing(gateway: Listener, topic: str, client_id: str) -> Iterator[Any]:
    """coap-client-openssl observing `topic` (subscribed once this enters)."""
    observer = start_coap_client("-s", "20", "-w", *gateway.client,
                                 gateway.url(f"/mqtt/{topic}?c={client_id}"), dtls=True)
    try:
        wait_for(lambda: ("subscribe", client_id, topic) in gateway.events(),
                 message="the observer's subscription")
        yield observer
    finally:
        observer.kill()
        observer.communicate()


def test_sessions_per_address_are_bounded(one_per_address: Listener) -> None:
    gateway = one_per_address
    with observing(gateway, "news", "holder") as observer:
        # a second session from 127.0.0.1 is one too many: its handshake is ignored
        coap_client("-m", "put", "-e", "crowded", *gateway.client,
                    gateway.url("/mqtt/t?c=second"), dtls=True, timeout=3)
        assert gateway.published() == []
        # the first session is still served
        gateway.thread.call(gateway.hub.deliver, "news", b"still here")
        observer.terminate()
        out, _ = observer.communicate(timeout=10)
        assert "still here" in out
    # the observer said goodbye (close_notify): its place is free again
    coap_client("-m", "put", "-e", "room now", *gateway.client,
                gateway.url("/mqtt/t?c=third"), dtls=True)
    assert gateway.published() == [("third", "t", b"room now")]


def test_an_idle_session_is_dropped(quickly_idle: Listener) -> None:
    gateway = quickly_idle
    with observing(gateway, "quiet", "sleeper"):
        # the client sends nothing more: a second later its session, and with it the
        # observation, is dropped
        wait_for(lambda: ("unsubscribe", "sleeper", "quiet") in gateway.events(),
                 message="the idle observation ended")


@pytest.fixture
def lwm2m(tmp_path: Path) -> Iterator[Listener]:
    made = start_listener(tmp_path, lwm2m_site)
    yield made
    made.stop()


def registrations(gateway: Listener, endpoint: str) -> list[dict[str, Any]]:
    return [json.loads(p) for _, t, p in gateway.published()
            if t == f"lwm2m/{endpoint}/up/resp"]


def test_lwm2m_registration_over_dtls_with_certificates(lwm2m: Listener,
                                                        tmp_path: Path) -> None:
    url = lwm2m.url("/rd?ep=x509-dev&lt=60&lwm2m=1.0&b=U")
    coap_client("-m", "post", "-t", "40", "-e", "</3/0>", *lwm2m.client, url, dtls=True)
    wait_for(lambda: registrations(lwm2m, "x509-dev"), message="the register message")
    assert registrations(lwm2m, "x509-dev")[0]["data"]["objectList"] == ["/3/0"]
    # a device whose certificate the server does not trust is not registered
    stranger = CA.create(tmp_path / "other", "Other CA").issue_client("stranger")
    out, err = coap_client("-m", "post", "-e", "</3/0>", "-c", str(stranger.cert), "-j",
                           str(stranger.key), "-C", str(lwm2m.ca.cert),
                           url.replace("x509-dev&", "stranger&"), dtls=True, timeout=4)
    assert "alert" in out + err
    assert [e for e in lwm2m.events() if e[0] == "attached"] == [
        ("attached", "x509-dev", "lwm2m")]


def test_lwm2m_commands_reach_a_device_over_dtls_with_certificates(lwm2m: Listener) -> None:
    """The LwM2M test device (aiocoap, TLV) behind OpenSSL's DTLS client: the gateway's
    requests to it travel through the device's DTLS session."""
    alice = lwm2m.ca.issue_client("device-7")
    relay = DtlsRelay(("127.0.0.1", lwm2m.server.port), alice.cert, alice.key, lwm2m.ca.cert)
    device = TestDevice("dev7", relay.address)

    def read(req_id: int) -> dict[str, Any]:
        command = {"reqID": req_id, "msgType": "read", "data": {"path": "/3/0/1"}}
        lwm2m.thread.call(lwm2m.hub.deliver, "lwm2m/dev7/dn", json.dumps(command).encode())

        def answers() -> list[dict[str, Any]]:
            return [m for m in registrations(lwm2m, "dev7") if m.get("reqID") == req_id]
        wait_for(answers, message=f"the answer to read {req_id}")
        return answers()[0]["data"]  # type: ignore[no-any-return]

    try:
        assert device.register().code == Code.CREATED
        first = read(1)
        assert (first["code"], first["content"]) == ("2.05", [{"path": "/3/0/1",
                                                                "value": "TD-1"}])
        # the device's DTLS client starts over from the same address (a reboot): the
        # old session is dropped, and once the device updates its registration the
        # gateway's requests take the new one
        relay.rehandshake()
        assert device.update().code == Code.CHANGED
        again = read(2)
        assert (again["code"], again["content"]) == ("2.05", [{"path": "/3/0/1",
                                                                "value": "TD-1"}])
        assert relay.handshakes == 2
    finally:
        device.close()
        relay.close()


def test_malformed_datagrams_are_ignored(lwm2m: Listener, caplog: Any) -> None:
    hello_header = bytes([22, 0xFE, 0xFD, 0, 0]) + bytes(6)
    junk = [b"", b"\x00", b"\x16\xfe\xfd", os.urandom(200),
            hello_header + (300).to_bytes(2, "big") + b"\x01" + bytes(10),  # truncated
            hello_header + (60).to_bytes(2, "big") + b"\x01" + os.urandom(59),  # garbled
            bytes([23, 0xFE, 0xFD, 0, 1]) + bytes(6) + (20).to_bytes(2, "big") + bytes(20)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for datagram in junk:
            raw.sendto(datagram, ("127.0.0.1", lwm2m.server.port))
    url = lwm2m.url("/rd?ep=after-junk&lt=60&lwm2m=1.0&b=U")
    coap_client("-m", "post", "-e", "</3/0>", *lwm2m.client, url, dtls=True)
    wait_for(lambda: registrations(lwm2m, "after-junk"), message="the register message")
    assert not [r for r in caplog.records if r.exc_info], caplog.text
