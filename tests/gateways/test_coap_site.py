"""emqx_coap's resource tree on aiocoap, driven by the real CoAP clients
(libcoap's coap-client, aiocoap-client) with an in-memory hub behind it.

The same flows through a running node and its broker are in
tests/gateways/test_coap_gateway.py; here the tree's own answers are checked.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import pytest
from helpers.clients import wait_until
from helpers.coap_tools import (
    LibraryObserver,
    LoopThread,
    aiocoap_client,
    coap_client,
    start_coap_client,
)
from helpers.memory_hub import MemoryHub

from starling.gateways.coap.pubsub import PsTopics
from starling.gateways.coap.sessions import CoapClients
from starling.gateways.coap.site import CoapSite
from starling.gateways.coap.transport import (
    CoapServer,
    ListenerError,
    start_dtls_server,
    start_server,
)


@dataclass
class Gateway:
    thread: LoopThread
    hub: MemoryHub
    clients: CoapClients
    server: CoapServer

    def url(self, path: str) -> str:
        return f"coap://127.0.0.1:{self.server.port}{path}"

    def events(self) -> list[tuple[str, str, str]]:
        return list(self.thread.call(lambda: list(self.hub.events)))

    def deliver(self, topic: str, payload: bytes) -> int:
        return int(self.thread.call(self.hub.deliver, topic, payload))


#: Generous: the machine running the tests may be loaded.
wait_for = partial(wait_until, timeout=10.0)


def make_gateway(keepalive: float = 30.0, uvloop: bool = False) -> Gateway:
    thread = LoopThread(uvloop)
    hub = MemoryHub()

    async def start() -> tuple[CoapClients, CoapServer]:
        clients = CoapClients(hub, keepalive)
        site = CoapSite(clients, PsTopics(), time.monotonic)
        return clients, await start_server("coap", site, "127.0.0.1", 0)

    clients, server = thread.run(start())
    return Gateway(thread, hub, clients, server)


def stop_gateway(gateway: Gateway) -> None:
    async def stop() -> None:
        await gateway.clients.close()
        await gateway.server.close()
    gateway.thread.run(stop())
    gateway.thread.stop()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    made = make_gateway()
    yield made
    stop_gateway(made)


def test_put_publishes_and_answers_changed(gateway: Gateway) -> None:
    _out, err = coap_client("-m", "put", "-e", "21.5", gateway.url("/mqtt/room/temp?c=dev1"))
    assert gateway.hub.published == [("dev1", "room/temp", b"21.5")], err
    assert gateway.events()[0] == ("attached", "dev1", "coap")


def test_aiocoap_client_publishes_and_sees_refusals(gateway: Gateway) -> None:
    done = aiocoap_client("-m", "PUT", "--payload", "on", gateway.url("/mqtt/lamp/set?c=app"))
    assert done.returncode == 0, done.stderr
    assert gateway.hub.published == [("app", "lamp/set", b"on")]
    gateway.hub.deny_publish.add("lamp/secret")
    denied = aiocoap_client("-m", "PUT", "--payload", "x", gateway.url("/mqtt/lamp/secret?c=app"))
    assert denied.returncode != 0 and "4.03" in denied.stderr
    assert len(gateway.hub.published) == 1


def test_missing_client_id_is_bad_request(gateway: Gateway) -> None:
    out, err = coap_client("-m", "put", "-e", "x", gateway.url("/mqtt/t?u=a"))
    assert "4.00" in out + err
    assert gateway.hub.published == []


def test_bad_credentials_are_unauthorized(gateway: Gateway) -> None:
    gateway.hub.passwords["alice"] = "secret"
    out, err = coap_client("-m", "put", "-e", "x", gateway.url("/mqtt/t?c=d&u=alice&p=wrong"))
    assert "4.01" in out + err
    assert gateway.hub.published == []
    coap_client("-m", "put", "-e", "x", gateway.url("/mqtt/t?c=d&u=alice&p=secret"))
    assert gateway.hub.published == [("d", "t", b"x")]


def test_a_publish_the_acl_denies_is_answered_forbidden(gateway: Gateway) -> None:
    gateway.hub.deny_publish.add("secret/topic")
    out, err = coap_client("-m", "put", "-e", "x", gateway.url("/mqtt/secret/topic?c=d"))
    assert "4.03" in out + err
    assert gateway.hub.published == []


@pytest.mark.parametrize(("method", "path", "code"), [
    ("post", "/mqtt/t?c=d", "4.05"), ("delete", "/mqtt/t?c=d", "4.05"),
    ("put", "/mqtt?c=d", "4.00"), ("put", "/mqtt/a/%2B?c=d", "4.00"),
    ("get", "/nothing?c=d", "4.04")])
def test_refused_requests(gateway: Gateway, method: str, path: str, code: str) -> None:
    out, err = coap_client("-m", method, "-e", "x", gateway.url(path))
    assert code in out + err
    assert gateway.hub.published == []


def test_well_known_core_lists_the_resources(gateway: Gateway) -> None:
    out, _ = coap_client(gateway.url("/.well-known/core"))
    assert "</mqtt>,</ps>" in out


def test_observe_subscribes_and_notifies_until_the_client_leaves(gateway: Gateway) -> None:
    observer = start_coap_client("-s", "4", "-w", gateway.url("/mqtt/room/%2B?c=watcher"))
    try:
        wait_for(lambda: ("subscribe", "watcher", "room/+") in gateway.events())
        assert gateway.deliver("room/temp", b"first") == 1
        assert gateway.deliver("other/temp", b"not for it") == 0
        assert gateway.deliver("room/hum", b"second") == 1
        out, _ = observer.communicate(timeout=30)
    finally:
        observer.kill()
    assert out.split() == ["first", "second"]
    # coap-client deregisters when its observe duration ends
    wait_for(lambda: ("unsubscribe", "watcher", "room/+") in gateway.events())


def test_non_confirmable_observe_with_the_aiocoap_library(gateway: Gateway) -> None:
    observer = LibraryObserver(gateway.url("/mqtt/news?c=reader"), non=True)
    try:
        assert observer.first.opt.observe == 0
        wait_for(lambda: ("subscribe", "reader", "news") in gateway.events())
        gateway.deliver("news", b"hello")
        gateway.deliver("news", b"again")
        wait_for(lambda: observer.payloads == [b"hello", b"again"])
    finally:
        observer.close()


def test_a_reset_notification_ends_the_observation(gateway: Gateway) -> None:
    observer = LibraryObserver(gateway.url("/mqtt/news?c=reader"))
    try:
        wait_for(lambda: ("subscribe", "reader", "news") in gateway.events())
        gateway.deliver("news", b"hello")
        wait_for(lambda: observer.payloads == [b"hello"])
        observer.cancel()

        # the client lost interest: aiocoap resets a later (confirmable) notification
        def unsubscribed() -> bool:
            gateway.deliver("news", b"anyone?")
            time.sleep(0.2)
            return ("unsubscribe", "reader", "news") in gateway.events()
        wait_for(unsubscribed)
    finally:
        observer.close()


def test_observe_deregistration_with_observe_1(gateway: Gateway) -> None:
    observer = start_coap_client("-s", "20", gateway.url("/mqtt/t1?c=o1"))
    try:
        wait_for(lambda: ("subscribe", "o1", "t1") in gateway.events())
        result = aiocoap_client(gateway.url("/mqtt/t1?c=o1"), "-m", "GET", "--payload", "")
        assert result.returncode == 0, result.stderr
        # a plain GET is only a keepalive: still subscribed
        assert ("unsubscribe", "o1", "t1") not in gateway.events()
        out, err = coap_client("-O", "6,0x01", gateway.url("/mqtt/t1?c=o1"))
        assert "4." not in out + err
        wait_for(lambda: ("unsubscribe", "o1", "t1") in gateway.events())
    finally:
        observer.kill()
        observer.communicate(timeout=10)


def test_an_observe_the_acl_denies_is_forbidden(gateway: Gateway) -> None:
    gateway.hub.deny_subscribe.add("private/#")
    out, err = coap_client("-s", "1", gateway.url("/mqtt/private/%23?c=o2"))
    assert "4.03" in out + err


def test_a_bad_observe_value_is_bad_option(gateway: Gateway) -> None:
    out, err = coap_client("-O", "6,0x05", gateway.url("/mqtt/t?c=o3"))
    assert "4.02" in out + err


def test_sessions_end_after_keepalive_without_requests() -> None:
    gateway = make_gateway(keepalive=1.0)
    try:
        observer = start_coap_client("-s", "10", gateway.url("/mqtt/k?c=sleepy"))
        try:
            wait_for(lambda: ("subscribe", "sleepy", "k") in gateway.events())
            wait_for(lambda: ("closed", "sleepy", "keepalive_timeout") in gateway.events())
            out, err = observer.communicate(timeout=20)
        finally:
            observer.kill()
        # the relation ended with the session: the client saw a final 5.03
        assert "5.03" in out + err or "keepalive_timeout" in out + err
        assert gateway.thread.call(len, gateway.clients) == 0
    finally:
        stop_gateway(gateway)


def test_a_kick_ends_the_observation(gateway: Gateway) -> None:
    observer = start_coap_client("-s", "10", gateway.url("/mqtt/k?c=victim"))
    try:
        wait_for(lambda: ("subscribe", "victim", "k") in gateway.events())
        gateway.thread.call(gateway.hub.kick, "victim")
        out, err = observer.communicate(timeout=20)
    finally:
        observer.kill()
    assert "kicked" in out + err


def test_ps_create_publish_read_delete(gateway: Gateway) -> None:
    out, err = coap_client("-m", "post", "-t", "40", "-e", "<sensors>;ct=50",
                           gateway.url("/ps?c=p"))
    assert "4." not in out + err
    out, err = coap_client("-m", "post", "-t", "40", "-e", "<sensors>;ct=50",
                           gateway.url("/ps?c=p"))
    assert "4.03" in out + err  # exists
    out, err = coap_client("-m", "put", "-t", "50", "-e", '{"t":1}',
                           gateway.url("/ps/sensors?c=p"))
    assert "4." not in out + err
    assert gateway.hub.published[-1] == ("p", "sensors", b'{"t":1}')
    out, err = coap_client("-m", "put", "-t", "0", "-e", "text", gateway.url("/ps/sensors?c=p"))
    assert "4.00" in out + err  # not the topic's content format
    out, _ = coap_client(gateway.url("/ps/sensors?c=p"))
    assert '{"t":1}' in out
    out, err = coap_client(gateway.url("/ps/sensors/%2B?c=p"))
    assert "4.00" in out + err
    out, err = coap_client("-m", "delete", gateway.url("/ps/sensors?c=p"))
    assert "4." not in out + err
    out, err = coap_client(gateway.url("/ps/sensors?c=p"))
    assert "4.04" in out + err


def test_malformed_datagrams_are_survived(gateway: Gateway) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", b"\xff" * 40, b"\x40\x01\x00\x01\xff",
                     b"\x48\x02\x00\x01" + b"\x00" * 3, b"\x40\x03\x12\x34\xbd\xff\xff"):
            sock.sendto(junk, ("127.0.0.1", gateway.server.port))
    _out, err = coap_client("-m", "put", "-e", "still", gateway.url("/mqtt/alive?c=after"))
    assert gateway.hub.published == [("after", "alive", b"still")], err


def test_a_port_in_use_is_refused(gateway: Gateway) -> None:
    async def second() -> None:
        site = CoapSite(gateway.clients, PsTopics(), time.monotonic)
        await start_server("coap", site, "127.0.0.1", gateway.server.port)
    with pytest.raises(ListenerError, match="cannot listen"):
        gateway.thread.run(second())


def test_dtls_with_a_pre_shared_key() -> None:
    keys = {"dev1": b"secret-key"}
    thread = LoopThread()
    hub = MemoryHub()

    async def start() -> tuple[CoapClients, CoapServer]:
        clients = CoapClients(hub, 30.0)
        site = CoapSite(clients, PsTopics(), time.monotonic)
        return clients, await start_dtls_server("coap-dtls", site, "127.0.0.1", 0, keys.get)

    clients, server = thread.run(start())
    gateway = Gateway(thread, hub, clients, server)
    try:
        url = f"coaps://127.0.0.1:{server.port}/mqtt/secure?c=dev1"
        coap_client("-m", "put", "-e", "sealed", "-u", "dev1", "-k", "secret-key", url,
                    dtls=True)
        assert hub.published == [("dev1", "secure", b"sealed")]
        coap_client("-m", "put", "-e", "forged", "-u", "dev1", "-k", "wrong-key", url,
                    dtls=True, timeout=4)
        coap_client("-m", "put", "-e", "who", "-u", "nobody", "-k", "secret-key", url,
                    dtls=True, timeout=4)
        assert hub.published == [("dev1", "secure", b"sealed")]
    finally:
        stop_gateway(gateway)


def test_dtls_refuses_the_any_address() -> None:
    thread = LoopThread()
    try:
        async def start() -> None:
            site = CoapSite(CoapClients(MemoryHub(), 30.0), PsTopics(), time.monotonic)
            await start_dtls_server("coap-dtls", site, "0.0.0.0", 0, {}.get)
        with pytest.raises(ListenerError, match="one address"):
            thread.run(start())
    finally:
        thread.stop()


def test_a_departed_client_does_not_stall_the_listener_under_uvloop() -> None:
    gateway = make_gateway(uvloop=True)
    try:
        for attempt in range(3):  # the stall (aiocoap's ICMP error queue) was not every time
            observer = start_coap_client("-s", "1", gateway.url(f"/mqtt/t{attempt}?c=gone"))
            observer.communicate(timeout=20)
            coap_client("-m", "put", "-e", "x", gateway.url(f"/mqtt/after?c=next{attempt}"),
                        timeout=5)
            assert gateway.hub.published[-1] == (f"next{attempt}", "after", b"x")
    finally:
        stop_gateway(gateway)
