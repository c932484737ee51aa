"""emqx_coap's and emqx_lwm2m's DTLS listeners with X.509 certificates on a
running node: libcoap's ``coap-client-openssl`` (certificate mode: -c/-j/-C)
publishes and observes over ``coaps://`` and meets paho through the real
broker; clients with an untrusted certificate or none are refused when the
listener verifies them; an LwM2M device behind OpenSSL's DTLS client is read
by an MQTT back end.  Certificates are made by the test (helpers.certs)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from aiocoap import Code
from helpers.api import ok
from helpers.certs import CA, Issued
from helpers.clients import uid, wait_until
from helpers.coap_tools import coap_client, start_coap_client
from helpers.dtls_relay import DtlsRelay
from helpers.gateway_node import API, load_gateway, subscriptions, udp_port_closed
from helpers.lwm2m_device import TestDevice
from helpers.plugin_api import plugin_call

LISTENER = "coap:dtls:default"


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = CA.create(directory / "ca")
        self.server = self.ca.issue_server()
        self.alice = self.ca.issue_client("alice")
        self.mallory = CA.create(directory / "other", "Other CA").issue_client("mallory")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def dtls_values(pki: Pki, **extra: str) -> dict[str, str]:
    return {"coap.port": "127.0.0.1:0", "coap.dtls.port": "127.0.0.1:0",
            "coap.dtls.certfile": str(pki.server.cert), "coap.dtls.keyfile": str(pki.server.key),
            **extra}


@pytest.fixture
def verifying(make_node: Any, pki: Pki) -> Any:
    """A node whose DTLS listener asks for, and checks, client certificates."""
    node = make_node(API)
    node.dtls_port = load_gateway(node, "emqx_coap", LISTENER, dtls_values(
        pki, **{"coap.dtls.cacertfile": str(pki.ca.cert), "coap.dtls.verify": "verify_peer",
                "coap.dtls.fail_if_no_peer_cert": "true"}))
    return node


def coaps(node: Any, path: str) -> str:
    return f"coaps://127.0.0.1:{node.dtls_port}{path}"


def with_cert(who: Issued | None, pki: Pki) -> list[str]:
    """coap-client-openssl's certificate options: our certificate (if any), and the
    CA that must have signed the server's."""
    mine = ["-c", str(who.cert), "-j", str(who.key)] if who is not None else []
    return [*mine, "-C", str(pki.ca.cert)]


def test_a_publish_over_dtls_with_certificates_reaches_mqtt(verifying: Any, pki: Pki,
                                                           clients: Any) -> None:
    topic, device = uid("sealed") + "/temp", uid("dev")
    subscriber = clients(verifying)
    subscriber.subscribe(topic, 0)
    out, err = coap_client("-m", "put", "-e", "21.5", *with_cert(pki.alice, pki),
                           coaps(verifying, f"/mqtt/{topic}?c={device}"), dtls=True)
    assert "WARN" not in out + err, out + err
    message = subscriber.get()
    assert (message.topic, message.payload) == (topic, b"21.5")
    out, _ = coap_client("-m", "get", *with_cert(pki.alice, pki),
                         coaps(verifying, "/.well-known/core"), dtls=True)
    assert out.strip() == "</mqtt>,</ps>"


def test_an_observer_over_dtls_gets_mqtt_publishes(verifying: Any, pki: Pki, clients: Any,
                                                   ) -> None:
    topic, device = uid("watched"), uid("obs")
    observer = start_coap_client("-s", "8", "-w", *with_cert(pki.alice, pki),
                                 coaps(verifying, f"/mqtt/{topic}?c={device}"), dtls=True)
    try:
        with verifying.api() as api:
            wait_until(lambda: subscriptions(api, device) == [topic], timeout=15,
                       message="the observer's subscription")
            publisher = clients(verifying)
            publisher.publish(topic, b"one", qos=1)
            publisher.publish(topic, b"two", qos=0)
            out, err = observer.communicate(timeout=30)
            assert out.split() == ["one", "two"], out + err
            # the observation ended with coap-client: its subscription goes
            wait_until(lambda: subscriptions(api, device) == [], timeout=10,
                       message="unsubscribed")
    finally:
        observer.kill()
        observer.communicate()


def test_untrusted_and_missing_client_certificates_are_refused(verifying: Any, pki: Pki,
                                                               clients: Any) -> None:
    topic = uid("guarded")
    subscriber = clients(verifying)
    subscriber.subscribe(topic, 0)
    for who in (pki.mallory, None):
        out, err = coap_client("-m", "put", "-e", "intruder", *with_cert(who, pki),
                               coaps(verifying, f"/mqtt/{topic}?c={uid('x')}"), dtls=True,
                               timeout=4)
        assert "alert" in out + err, out + err  # the handshake failed with an alert
    with pytest.raises(AssertionError):
        subscriber.get(timeout=1)
    # a trusted client still gets through on the same listener
    coap_client("-m", "put", "-e", "welcome", *with_cert(pki.alice, pki),
                coaps(verifying, f"/mqtt/{topic}?c={uid('ok')}"), dtls=True)
    assert subscriber.get().payload == b"welcome"


def test_without_verification_any_client_gets_in(make_node: Any, pki: Pki,
                                                  clients: Any) -> None:
    node = make_node(API)
    node.dtls_port = load_gateway(node, "emqx_coap", LISTENER, dtls_values(pki))
    topic = uid("open")
    subscriber = clients(node)
    subscriber.subscribe(topic, 0)
    coap_client("-m", "put", "-e", "anyone", *with_cert(None, pki),
                coaps(node, f"/mqtt/{topic}?c={uid('anon')}"), dtls=True)
    assert subscriber.get().payload == b"anyone"
    # and the client checks the server: a client trusting another CA refuses it
    out, err = coap_client("-m", "put", "-e", "x", "-C", str(pki.mallory.cert),
                           coaps(node, f"/mqtt/{topic}?c={uid('wary')}"), dtls=True, timeout=4)
    assert "verify" in (out + err).lower() or "alert" in (out + err).lower(), out + err
    with node.api() as api:
        plugin_call(api, node, "emqx_coap", "unload")
    assert udp_port_closed(node.dtls_port)


def test_certificate_keys_that_do_not_fit_are_refused_naming_the_key(
        make_node: Any, pki: Pki, tmp_path: Path) -> None:
    node = make_node(API)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello", "utf-8")
    base = {"coap.port": "127.0.0.1:0", "coap.dtls.port": "127.0.0.1:0"}
    with node.api() as api:
        for key, value in (("coap.dtls.certfile", str(not_pem)),
                           ("coap.dtls.certfile", str(tmp_path / "missing.pem")),
                           ("coap.dtls.keyfile", str(pki.server.cert)),
                           ("coap.dtls.cacertfile", str(not_pem)),
                           ("coap.dtls.verify", "verify_maybe"),
                           ("coap.dtls.ciphers", "NO-SUCH-CIPHER")):
            answer = api.put(f"/nodes/{node.name}/plugin_configs/emqx_coap",
                             json={key: value}).json()
            assert answer["code"] != 0 and key in answer["message"], (key, answer)
        # values each fine, together not: refused at load, naming the key
        for values, key in (
                ({**base, "coap.dtls.certfile": str(pki.server.cert),
                  "coap.dtls.keyfile": str(pki.alice.key)}, "coap.dtls.keyfile"),
                ({**base, "coap.dtls.certfile": str(pki.server.cert),
                  "coap.dtls.keyfile": str(pki.server.key),
                  "coap.dtls.verify": "verify_peer"}, "coap.dtls.cacertfile"),
                ({"coap.port": "127.0.0.1:0", "coap.dtls.port": "",
                  "coap.dtls.certfile": str(pki.server.cert),
                  "coap.dtls.keyfile": str(pki.server.key), "coap.dtls.verify": "verify_none"},
                 "coap.dtls.port")):
            ok(api.put(f"/nodes/{node.name}/plugin_configs/emqx_coap", json=values))
            answer = api.put(f"/nodes/{node.name}/plugins/emqx_coap/load").json()
            assert answer["code"] != 0 and key in answer["message"], (key, answer)
    assert not [line for line in node.log_lines if "Traceback" in line]


def free_udp_pair() -> int:
    """A port p with p and p + 1 both free for UDP on 127.0.0.1 now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port == 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise AssertionError("no two adjacent free UDP ports")


def test_lwm2m_over_dtls_with_certificates_on_port_plus_one(make_node: Any, pki: Pki,
                                                            clients: Any) -> None:
    """EMQ X's lwm2m.certfile / keyfile: DTLS on lwm2m.port + 1; an MQTT back end reads
    a device behind OpenSSL's DTLS client through it."""
    node = make_node(API)
    port = free_udp_pair()
    dtls_port = load_gateway(node, "emqx_lwm2m", "lwm2m:dtls:default", {
        "lwm2m.port": f"127.0.0.1:{port}", "lwm2m.certfile": str(pki.server.cert),
        "lwm2m.keyfile": str(pki.server.key), "lwm2m.dtls.cacertfile": str(pki.ca.cert),
        "lwm2m.dtls.verify": "verify_peer", "lwm2m.dtls.fail_if_no_peer_cert": "true"})
    assert dtls_port == port + 1
    endpoint = uid("x509")
    back_end = clients(node)
    back_end.subscribe(f"lwm2m/{endpoint}/up/#", 0)
    relay = DtlsRelay(("127.0.0.1", dtls_port), pki.alice.cert, pki.alice.key, pki.ca.cert)
    device = TestDevice(endpoint, relay.address)
    try:
        assert device.register().code == Code.CREATED
        registered = json.loads(back_end.get(timeout=10).payload)
        assert registered["msgType"] == "register", registered
        back_end.publish(f"lwm2m/{endpoint}/dn/dm", json.dumps(
            {"reqID": 7, "msgType": "read", "data": {"path": "/3/0/0"}}), qos=1)
        answer = json.loads(back_end.get(timeout=10, topic=f"lwm2m/{endpoint}/up/resp").payload)
        assert answer["reqID"] == 7 and answer["data"]["content"] == [
            {"path": "/3/0/0", "value": "Starling Test Devices"}], answer
    finally:
        device.close()
        relay.close()
