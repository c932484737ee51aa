"""Transports: every MQTT listener kind EMQ X v3 offers, with real clients.

- mqtt:ssl: TLS 1.2 and 1.3, `ssl_options.versions` and `.ciphers`, mutual TLS
  (`verify_peer`, `fail_if_no_peer_cert`), `peercert` in /connections,
  `peer_cert_as_username` / `peer_cert_as_clientid`, certificate files reloaded
  while the node runs, and Debian's mosquitto_sub / mosquitto_pub over TLS.
- mqtt:ws and mqtt:wss: paho-mqtt over WebSocket, the `/mqtt` path, the `mqtt`
  and `mqttv3.1` sub-protocols, MQTT packets split across and combined within
  WebSocket messages (raw frames from the `websockets` client library),
  X-Forwarded-For behind a proxy, a large message, `conn_mod`.
- Several listeners of a kind, `max_connections`, `max_conn_rate`, and what
  /listeners reports (protocol, listen_on, current_conns, shutdown_count).
- Start-up errors: a bad certificate path stops the node with a message naming
  the listener; an ssl listener without a certificate is skipped.

Certificates are made at test time (tests/helpers/certs.py); nothing private
is committed.  Every port is chosen by the OS.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from helpers.certs import CA, Issued, peer_serial
from helpers.clients import PahoClient, uid, wait_until
from helpers.packets import (
    PUBLISH,
    SUBACK,
    ConnectionClosed,
    Packet,
    RawClient,
    gen_connack,
    gen_connect,
    gen_disconnect,
    gen_publish,
    gen_subscribe,
    parse_publish,
    read_packet,
)
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

pytestmark = pytest.mark.usefixtures("require_starling")

API = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}
DN_ALICE = "CN=alice,OU=Devices,O=Starling Tests"  # RFC 4514: most specific RDN first
DN_BOB = "CN=bob,O=Acme\\, Inc."  # the comma in the organisation is escaped


# -- certificates ----------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    ca: CA
    other_ca: CA
    server: Issued
    alice: Issued  # O=Starling Tests, OU=Devices, CN=alice (issued by `ca`)
    bob: Issued  # O=Acme, Inc., CN=bob (issued by `ca`)
    mallory: Issued  # issued by `other_ca`: not trusted by the listeners


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = CA.create(directory, "Starling Test CA")
    other = CA.create(directory, "Other CA")
    return Pki(ca, other, ca.issue_server(),
               ca.issue_client("alice", unit="Devices"),
               ca.issue_client("bob", organization="Acme, Inc."),
               other.issue_client("mallory"))


def listener(kind: str, name: str = "default", **fields: str) -> dict[str, str]:
    """Settings of one listener bound on a free port; `ssl_options__verify="x"`
    stands for `listeners.<kind>.<name>.ssl_options.verify = x`."""
    prefix = f"listeners.{kind}.{name}"
    out = {f"{prefix}.bind": "127.0.0.1:0"}
    out.update({f"{prefix}.{key.replace('__', '.')}": value for key, value in fields.items()})
    return out


def tls_listener(pki: Pki, kind: str = "ssl", name: str = "default", *, mutual: bool = False,
                 **fields: str) -> dict[str, str]:
    """A TLS listener with the server certificate; `mutual` = verify_peer and
    fail_if_no_peer_cert against the test CA."""
    tls = {"ssl_options__certfile": str(pki.server.cert),
           "ssl_options__keyfile": str(pki.server.key)}
    if mutual:
        tls.update(ssl_options__cacertfile=str(pki.ca.cert), ssl_options__verify="verify_peer",
                   ssl_options__fail_if_no_peer_cert="true")
    return listener(kind, name, **tls, **fields)


def client_ctx(pki: Pki, cert: Issued | None = None, version: ssl.TLSVersion | None = None,
               ciphers: str | None = None) -> ssl.SSLContext:
    """A client context that trusts the test CA (and checks the host name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca.cert)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


# -- raw clients -----------------------------------------------------------------------

def tls_connect(node: Any, name: str, ctx: ssl.SSLContext, client_id: str | None = None,
                **connect: Any) -> ssl.SSLSocket:
    """TLS handshake, CONNECT, CONNACK 0: the open socket (the caller closes it)."""
    host, port = node.listeners[name]
    sock = socket.create_connection((host, port), timeout=5)
    try:
        tls = ctx.wrap_socket(sock, server_hostname="localhost")
    except BaseException:
        sock.close()
        raise
    try:
        tls.sendall(gen_connect(client_id or uid("tls"), **connect))
        packet = read_packet(tls, 5)
        assert packet.raw == gen_connack(0), f"expected CONNACK 0, got {packet}"
    except BaseException:
        tls.close()
        raise
    return tls


def assert_tls_refused(node: Any, name: str, ctx: ssl.SSLContext, why: str) -> None:
    """The handshake fails, or (TLS 1.3: the client finishes first) the server
    closes the connection instead of answering CONNECT."""
    try:
        tls = tls_connect(node, name, ctx)
    except (ssl.SSLError, ConnectionClosed, ConnectionError):
        return
    tls.close()
    raise AssertionError(f"{name} accepted {why}")


def raw_accepted(node: Any, name: str, client_id: str | None = None) -> RawClient | None:
    """A plain TCP connection with CONNECT: the client if it got CONNACK 0,
    None if the listener closed it first (refused)."""
    host, port = node.listeners[name]
    client = RawClient(host, port, timeout=5)
    try:
        client.send(gen_connect(client_id or uid("raw")))
        packet = client.read()
    except (ConnectionClosed, ConnectionError):
        client.close()
        return None
    assert packet.raw == gen_connack(0), f"expected CONNACK 0, got {packet}"
    return client


class WsStream:
    """MQTT over a `websockets` client connection, read as a byte stream: the
    server may put several packets in one WebSocket message."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer = b""

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buffer) < n:
            data = self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
            assert isinstance(data, bytes), f"text message from the broker: {data!r}"
            self.buffer += data

    def read(self, timeout: float = 5.0) -> Packet:
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        length, multiplier, pos = 0, 1, 1
        while True:
            self._fill(pos + 1, deadline)
            digit = self.buffer[pos]
            length += (digit & 0x7F) * multiplier
            multiplier *= 128
            pos += 1
            if not digit & 0x80:
                break
        self._fill(pos + length, deadline)
        first, body = self.buffer[0], self.buffer[pos:pos + length]
        self.buffer = self.buffer[pos + length:]
        return Packet(first >> 4, first & 0x0F, body)


# -- the management API -----------------------------------------------------------------

def api_data(node: Any, path: str) -> Any:
    with node.api() as api:
        resp = api.get(path)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == 0, body
    return body["data"]


def connection(node: Any, client_id: str) -> dict[str, Any]:
    """The client's row in /connections (waits for it to appear)."""
    rows = wait_until(lambda: api_data(node, f"/connections/{client_id}"),
                      message=f"{client_id} in /connections")
    assert len(rows) == 1, rows
    return rows[0]


def listener_row(node: Any, name: str) -> dict[str, Any]:
    """/listeners' row for the listener the node logged as `name` (by listen_on)."""
    host, port = node.listeners[name]
    rows = [row for row in api_data(node, "/listeners/")[0]["listeners"]
            if row["listen_on"] == f"{host}:{port}"]
    assert len(rows) == 1, rows
    return rows[0]


def listen_on(node: Any, name: str) -> str:
    host, port = node.listeners[name]
    return f"{host}:{port}"


def wait_conns(node: Any, name: str, count: int) -> dict[str, Any]:
    return wait_until(lambda: (row := listener_row(node, name))["current_conns"] == count
                      and row, message=f"{name} current_conns == {count}")


# -- paho -------------------------------------------------------------------------------

@pytest.fixture
def paho_to() -> Iterator[Callable[..., PahoClient]]:
    """paho-mqtt 2.x clients for a named listener: WebSocket for ws/wss, TLS
    with `tls=` (an ssl.SSLContext).  Not yet connected; closed afterwards."""
    made: list[PahoClient] = []

    def factory(node: Any, name: str, tls: ssl.SSLContext | None = None,
                client_id: str | None = None, path: str = "/mqtt",
                headers: dict[str, str] | None = None) -> PahoClient:
        host, port = node.listeners[name]
        web = name.split(":")[1] in ("ws", "wss")
        client = PahoClient(host, port, client_id=client_id,
                            transport="websockets" if web else "tcp")
        made.append(client)
        if web:
            client.client.ws_set_options(path=path, headers=headers)
        if tls is not None:
            client.client.tls_set_context(tls)
        return client

    yield factory
    for client in made:
        client.close()


def roundtrip(a: PahoClient, b: PahoClient, payload: bytes = b"hello") -> None:
    """`a` and `b` (connected) exchange a QoS 1 message in each direction."""
    topic = uid("t")
    a.subscribe(f"{topic}/to-a", 1)
    b.subscribe(f"{topic}/to-b", 1)
    b.publish(f"{topic}/to-a", payload, qos=1)
    got = a.get(timeout=10, topic=f"{topic}/to-a")
    assert got.payload == payload and got.qos == 1
    a.publish(f"{topic}/to-b", payload[::-1], qos=1)
    got = b.get(timeout=10, topic=f"{topic}/to-b")
    assert got.payload == payload[::-1]


# ======================================================================================
# mqtt:ssl
# ======================================================================================

def test_tls_1_2_and_1_3(make_node, pki, paho_to):
    """A TLS 1.2-only and a TLS 1.3-only client both connect; paho over TLS
    exchanges messages with a TCP client."""
    node = make_node(tls_listener(pki))
    for version, name in ((TLS12, "TLSv1.2"), (TLS13, "TLSv1.3")):
        with tls_connect(node, "mqtt:ssl:default", client_ctx(pki, version=version)) as tls:
            assert tls.version() == name
            tls.sendall(gen_disconnect())
    secure = paho_to(node, "mqtt:ssl:default", tls=client_ctx(pki))
    secure.connect()
    plain = paho_to(node, "mqtt:tcp:default")
    plain.connect()
    roundtrip(secure, plain)


def test_versions_tlsv13_only_refuses_tls12_client(make_node, pki):
    node = make_node(tls_listener(pki, ssl_options__versions="tlsv1.3"))
    assert_tls_refused(node, "mqtt:ssl:default", client_ctx(pki, version=TLS12),
                       "a TLS 1.2-only client with versions=tlsv1.3")
    with tls_connect(node, "mqtt:ssl:default", client_ctx(pki, version=TLS13)) as tls:
        assert tls.version() == "TLSv1.3"


def test_ciphers_option_applied(make_node, pki):
    """`ssl_options.ciphers` narrows TLS 1.2's choice: the server's cipher is
    negotiated (OpenSSL would otherwise pick AES-256), and a client offering
    only other ciphers is refused."""
    chosen = "ECDHE-ECDSA-AES128-GCM-SHA256"
    node = make_node(tls_listener(pki, ssl_options__ciphers=chosen,
                                  ssl_options__versions="tlsv1.2"))
    with tls_connect(node, "mqtt:ssl:default", client_ctx(pki, version=TLS12)) as tls:
        assert tls.cipher()[0] == chosen
    assert_tls_refused(node, "mqtt:ssl:default",
                       client_ctx(pki, version=TLS12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384"),
                       "a client without the configured cipher")


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls1.2", "tls1.3"])
def test_mutual_tls_refuses_missing_and_foreign_certificates(make_node, pki, paho_to, version):
    """verify_peer + fail_if_no_peer_cert: no certificate, or one from another
    CA, is refused; a certificate from the configured CA is accepted."""
    node = make_node(tls_listener(pki, mutual=True))
    name = "mqtt:ssl:default"
    assert_tls_refused(node, name, client_ctx(pki, version=version), "a client without a cert")
    assert_tls_refused(node, name, client_ctx(pki, pki.mallory, version=version),
                       "a certificate from another CA")
    with tls_connect(node, name, client_ctx(pki, pki.alice, version=version)) as tls:
        assert tls.version() == ("TLSv1.2" if version == TLS12 else "TLSv1.3")
    good = paho_to(node, name, tls=client_ctx(pki, pki.alice, version=version))
    good.connect()
    bad = paho_to(node, name, tls=client_ctx(pki, pki.mallory, version=TLS12))
    with pytest.raises(ssl.SSLError) as refused:
        bad.connect()  # TLS 1.2: the server's refusal ends the handshake
    close_sockets_of(refused.tb)


def close_sockets_of(tb: TracebackType | None) -> None:
    """paho leaves the socket of a failed TLS handshake to the garbage collector
    (a ResourceWarning, an error here): close it from the traceback's frames."""
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, socket.socket):
                value.close()
        tb = tb.tb_next


def test_verify_peer_optional_and_peercert(make_node, pki):
    """verify_peer without fail_if_no_peer_cert accepts clients with and without
    a certificate (a presented one is still checked); /connections' `peercert`
    is the subject DN, written as EMQ X does (RFC 4514), and "nossl" over TCP."""
    node = make_node({**API, **tls_listener(
        pki, ssl_options__cacertfile=str(pki.ca.cert), ssl_options__verify="verify_peer")})
    name = "mqtt:ssl:default"
    ids = {key: uid(key) for key in ("anon", "alice", "bob", "tcp")}
    with tls_connect(node, name, client_ctx(pki), ids["anon"]) as anon, \
            tls_connect(node, name, client_ctx(pki, pki.alice), ids["alice"]) as alice, \
            tls_connect(node, name, client_ctx(pki, pki.bob), ids["bob"]) as bob:
        tcp = raw_accepted(node, "mqtt:tcp:default", ids["tcp"])
        assert tcp is not None
        with tcp:
            assert connection(node, ids["alice"])["peercert"] == DN_ALICE
            assert connection(node, ids["bob"])["peercert"] == DN_BOB
            assert connection(node, ids["tcp"])["peercert"] == "nossl"
            assert connection(node, ids["anon"])["username"] == "undefined"
            assert_tls_refused(node, name, client_ctx(pki, pki.mallory),
                               "a presented certificate from another CA")
        for sock in (anon, alice, bob):
            sock.sendall(gen_disconnect())


def test_peer_cert_as_username_cn_and_dn(make_node, pki, paho_to):
    """peer_cert_as_username=cn / =dn: the certificate's CN or DN replaces the
    user name the client sent, in /connections and in $SYS .../connected."""
    node = make_node({**API,
                      **tls_listener(pki, name="cn", mutual=True, peer_cert_as_username="cn"),
                      **tls_listener(pki, name="dn", mutual=True, peer_cert_as_username="dn")})
    watcher = paho_to(node, "mqtt:tcp:default")
    watcher.connect()
    watcher.subscribe(f"$SYS/brokers/{node.name}/clients/+/connected", 0)
    cases = (("mqtt:ssl:cn", pki.alice, "alice"), ("mqtt:ssl:dn", pki.bob, DN_BOB))
    for name, cert, expected in cases:
        client_id = uid("certuser")
        with tls_connect(node, name, client_ctx(pki, cert), client_id, username="claimed",
                         password="pw"):
            assert connection(node, client_id)["username"] == expected
            event = watcher.get(timeout=5,
                                topic=f"$SYS/brokers/{node.name}/clients/{client_id}/connected")
            assert json.loads(event.payload)["username"] == expected


def test_peer_cert_as_clientid_cn(make_node, pki, paho_to):
    """peer_cert_as_clientid=cn: the client is known by its certificate's CN,
    whatever client id it sent."""
    node = make_node({**API, **tls_listener(pki, mutual=True, peer_cert_as_clientid="cn")})
    sent = uid("sent")
    client = paho_to(node, "mqtt:ssl:default", tls=client_ctx(pki, pki.alice), client_id=sent)
    client.connect()
    row = connection(node, "alice")
    assert row["peercert"] == DN_ALICE
    assert api_data(node, f"/connections/{sent}") == []
    plain = paho_to(node, "mqtt:tcp:default")
    plain.connect()
    roundtrip(client, plain)


def test_certificate_reload(make_node, pki, tmp_path, paho_to):
    """Certificate files replaced while the node runs: a certificate whose key
    is not (yet) replaced is not taken (the old pair keeps serving); once both
    are, new connections get the new certificate within the check interval
    (5 s), and a connection made before stays up."""
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    first = pki.ca.issue_server("localhost", stem="reload-first")
    second = pki.ca.issue_server("reloaded.localhost", stem="reload-second")
    first.write_to(live_cert, live_key)
    node = make_node(listener("ssl", ssl_options__certfile=str(live_cert),
                              ssl_options__keyfile=str(live_key)))
    name = "mqtt:ssl:default"

    def served_serial() -> int:
        with tls_connect(node, name, client_ctx(pki)) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return peer_serial(der)

    assert served_serial() == first.serial
    before = paho_to(node, name, tls=client_ctx(pki))
    before.connect()

    # Half-way: the new certificate with the old key cannot be loaded.
    live_cert.write_bytes(second.cert.read_bytes())
    node.wait_log("TLS files changed but cannot be loaded", timeout=12)
    assert served_serial() == first.serial, "a failed reload must keep the old pair"

    live_key.write_bytes(second.key.read_bytes())
    wait_until(lambda: served_serial() == second.serial, timeout=12, interval=0.25,
               message="the new certificate served")
    assert before.is_connected()
    plain = paho_to(node, "mqtt:tcp:default")
    plain.connect()
    roundtrip(before, plain)


def test_cacertfile_reload_adds_and_removes_trust(make_node, pki, tmp_path):
    """`cacertfile` rewritten while the node runs: client certificates of the CA
    now in the file are accepted, and those of the CA taken out are refused."""
    cafile = tmp_path / "trusted-ca.pem"
    cafile.write_bytes(pki.other_ca.cert.read_bytes())
    node = make_node(tls_listener(pki, ssl_options__cacertfile=str(cafile),
                                  ssl_options__verify="verify_peer",
                                  ssl_options__fail_if_no_peer_cert="true"))
    name = "mqtt:ssl:default"
    tls_connect(node, name, client_ctx(pki, pki.mallory)).close()
    assert_tls_refused(node, name, client_ctx(pki, pki.alice), "alice before her CA is trusted")

    replacement = tmp_path / "trusted-ca.pem.new"
    replacement.write_bytes(pki.ca.cert.read_bytes())
    replacement.replace(cafile)
    node.wait_log("reloaded TLS certificate", timeout=12)
    tls_connect(node, name, client_ctx(pki, pki.alice)).close()
    assert_tls_refused(node, name, client_ctx(pki, pki.mallory),
                       "a client of the CA removed from cacertfile (still trusted after reload)")


def run_mosquitto(tool: str, port: int, pki: Pki, cert: Issued | None, *args: str,
                  timeout: float = 15) -> subprocess.CompletedProcess[str]:
    cmd = [tool, "-h", "localhost", "-p", str(port), "--cafile", str(pki.ca.cert), *args]
    if cert is not None:
        cmd += ["--cert", str(cert.cert), "--key", str(cert.key)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_mosquitto_clients_over_mutual_tls(make_node, pki):
    """mosquitto_sub / mosquitto_pub with --cafile --cert --key through a
    mutual-TLS listener; mosquitto_pub without a certificate is refused."""
    node = make_node({**API, **tls_listener(pki, mutual=True)})
    _host, port = node.listeners["mqtt:ssl:default"]
    topic, sub_id = uid("mosq"), uid("mosqsub")
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "localhost", "-p", str(port), "--cafile", str(pki.ca.cert),
         "--cert", str(pki.alice.cert), "--key", str(pki.alice.key), "-i", sub_id,
         "-t", topic, "-q", "1", "-C", "1", "-W", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: api_data(node, f"/subscriptions/{sub_id}"), timeout=10,
                   message="mosquitto_sub subscribed")
        assert connection(node, sub_id)["peercert"] == DN_ALICE
        denied = run_mosquitto("mosquitto_pub", port, pki, None, "-t", topic, "-m", "nope")
        assert denied.returncode != 0, denied
        sent = run_mosquitto("mosquitto_pub", port, pki, pki.bob, "-t", topic, "-q", "1",
                             "-m", "over mutual TLS")
        assert sent.returncode == 0, sent.stderr
        out, err = sub.communicate(timeout=15)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert sub.returncode == 0, err
    assert out.strip() == "over mutual TLS"


# ======================================================================================
# mqtt:ws and mqtt:wss
# ======================================================================================

def web_node(make_node: Callable[..., Any], pki: Pki, kind: str, **extra: str) -> Any:
    if kind == "wss":
        return make_node({**API, **tls_listener(pki, "wss"), **extra})
    return make_node({**API, **listener("ws"), **extra})


def ws_url(node: Any, name: str, path: str = "/mqtt") -> str:
    host, port = node.listeners[name]
    return f"{'wss' if ':wss:' in name else 'ws'}://{host}:{port}{path}"


@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_paho_over_websocket_with_tcp_client(make_node, pki, paho_to, kind):
    """paho over WebSocket (path /mqtt) and a TCP client exchange messages both
    ways, including one of 500 KB; /connections says emqx_ws_connection."""
    node = web_node(make_node, pki, kind)
    name = f"mqtt:{kind}:default"
    web = paho_to(node, name, tls=client_ctx(pki) if kind == "wss" else None)
    web.connect()
    plain = paho_to(node, "mqtt:tcp:default")
    plain.connect()
    roundtrip(web, plain)
    roundtrip(plain, web, payload=bytes(range(256)) * 2000)  # 512000 bytes
    assert connection(node, web.client_id)["conn_mod"] == "emqx_ws_connection"
    assert connection(node, plain.client_id)["conn_mod"] == "emqx_connection"
    assert listener_row(node, name)["protocol"] == f"mqtt:{kind}"


def test_websocket_other_path_is_404(make_node, pki):
    node = web_node(make_node, pki, "ws")
    for path in ("/other", "/", "/mqtt/more"):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(ws_url(node, "mqtt:ws:default", path), subprotocols=["mqtt"],
                       open_timeout=5).close()
        assert refused.value.response.status_code == 404, path


@pytest.mark.parametrize("offered", [["mqtt"], ["mqttv3.1"], None, ["mqttv3.1", "mqtt"]],
                         ids=["mqtt", "mqttv3.1", "none", "both"])
def test_websocket_subprotocols(make_node, pki, offered):
    """The sub-protocol the client offers first of mqtt / mqttv3.1 is selected
    (Sec-WebSocket-Protocol in the response); offering none is accepted too."""
    node = web_node(make_node, pki, "ws")
    with ws_connect(ws_url(node, "mqtt:ws:default"), subprotocols=offered,
                    open_timeout=5) as ws:
        assert ws.response is not None
        header = ws.response.headers.get("Sec-WebSocket-Protocol")
        assert header == (offered[0] if offered else None)
        assert ws.subprotocol == header
        ws.send(gen_connect(uid("sp")))
        assert WsStream(ws).read().raw == gen_connack(0)


def test_websocket_packets_split_and_combined(make_node, pki):
    """CONNECT split over three binary messages, SUBSCRIBE + PUBLISH in one,
    and a PUBLISH as one fragmented message (continuation frames)."""
    node = web_node(make_node, pki, "ws")
    topic = uid("frames")
    with ws_connect(ws_url(node, "mqtt:ws:default"), subprotocols=["mqtt"],
                    open_timeout=5) as ws:
        stream = WsStream(ws)
        connect = gen_connect(uid("split"))
        for part in (connect[:1], connect[1:7], connect[7:]):
            ws.send(part)
        assert stream.read().raw == gen_connack(0)
        ws.send(gen_subscribe(1, topic, 0) + gen_publish(topic, payload=b"one frame"))
        packets = [stream.read(), stream.read()]
        assert [p.type for p in packets] == [SUBACK, PUBLISH]
        assert parse_publish(packets[1]).payload == b"one frame"
        publish = gen_publish(topic, payload=b"fragmented" * 100)
        ws.send([publish[:3], publish[3:500], publish[500:]])  # FIN only on the last
        assert parse_publish(stream.read()).payload == b"fragmented" * 100
        ws.send(gen_disconnect())


def test_x_forwarded_for(make_node, pki):
    """With proxy_address_header=X-Forwarded-For the client's address is the
    header's first entry; without the setting the header is ignored."""
    node = make_node({**API, **listener("ws", "proxied",
                                        proxy_address_header="X-Forwarded-For"),
                      **listener("ws")})
    header = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    expected = {"mqtt:ws:proxied": "203.0.113.7", "mqtt:ws:default": "127.0.0.1"}
    for name, address in expected.items():
        client_id = uid("xff")
        with ws_connect(ws_url(node, name), subprotocols=["mqtt"], additional_headers=header,
                        open_timeout=5) as ws:
            ws.send(gen_connect(client_id))
            assert WsStream(ws).read().raw == gen_connack(0)
            row = connection(node, client_id)
            assert row["ipaddress"] == address, name
            assert row["conn_mod"] == "emqx_ws_connection"


def test_wss_mutual_tls_and_cert_username(make_node, pki, paho_to):
    """The same ssl_options under listeners.wss: a client certificate is
    required, and its CN is the user name."""
    node = make_node({**API, **tls_listener(pki, "wss", mutual=True,
                                            peer_cert_as_username="cn")})
    name = "mqtt:wss:default"
    good = paho_to(node, name, tls=client_ctx(pki, pki.alice))
    good.connect()
    row = connection(node, good.client_id)
    assert (row["username"], row["peercert"]) == ("alice", DN_ALICE)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ws_connect(ws_url(node, name), ssl=client_ctx(pki, version=TLS12),
                   open_timeout=5).close()


# ======================================================================================
# Several listeners, limits, /listeners
# ======================================================================================

def test_several_tcp_listeners(make_node):
    """listeners.tcp.<name>.bind adds listeners; each accepts clients and has
    its own row and count in /listeners; messages cross between them."""
    node = make_node({**API, **listener("tcp", "lan"), **listener("tcp", "lab")})
    assert {"mqtt:tcp:default", "mqtt:tcp:lan", "mqtt:tcp:lab"} <= set(node.listeners)
    wanted = {"mqtt:tcp:default": 1, "mqtt:tcp:lan": 2, "mqtt:tcp:lab": 3}
    clients: dict[str, list[RawClient]] = {}
    try:
        for name, count in wanted.items():
            clients[name] = [c for c in (raw_accepted(node, name) for _ in range(count))
                             if c is not None]
            assert len(clients[name]) == count
        for name, count in wanted.items():
            row = wait_conns(node, name, count)
            assert row["protocol"] == "mqtt:tcp"
            assert row["listen_on"] == listen_on(node, name)
        topic = uid("across")
        subscriber, publisher = clients["mqtt:tcp:lan"][0], clients["mqtt:tcp:lab"][0]
        subscriber.subscribe(1, topic, 0)
        publisher.send(gen_publish(topic, payload=b"lab to lan"))
        assert subscriber.expect_publish().payload == b"lab to lan"
    finally:
        for group in clients.values():
            for c in group:
                c.close()


def test_max_connections_per_listener(make_node):
    """Beyond max_connections a listener refuses (closes before CONNACK);
    current_conns stays at the maximum; other listeners are not affected; a
    freed place can be taken again."""
    node = make_node({**API, **listener("tcp", "small", max_connections="2")})
    name = "mqtt:tcp:small"
    first, second = raw_accepted(node, name), raw_accepted(node, name)
    assert first is not None and second is not None
    try:
        for _ in range(3):
            assert raw_accepted(node, name) is None, "a third connection was accepted"
        row = wait_conns(node, name, 2)
        assert row["max_conns"] == 2
        # The refusals are counted where /listeners shows how connections ended.
        assert row["shutdown_count"] == {"max_conns": 3}, row
        other = raw_accepted(node, "mqtt:tcp:default")
        assert other is not None
        other.close()
        first.send(gen_disconnect())
        first.close()
        wait_conns(node, name, 1)
        again = raw_accepted(node, name)
        assert again is not None
        again.close()
    finally:
        first.close()
        second.close()


def test_max_conn_rate(make_node):
    """max_conn_rate=3: of four connections opened at once, three are accepted
    and the fourth is refused; a second later one is accepted again."""
    node = make_node(listener("tcp", "rate", max_conn_rate="3"))
    name = "mqtt:tcp:rate"
    host, port = node.listeners[name]
    opened: list[RawClient] = []
    try:
        start = time.monotonic()
        opened += [RawClient(host, port) for _ in range(4)]  # accepted in one burst
        elapsed = time.monotonic() - start
        assert elapsed < 0.3, f"opening took {elapsed:.2f}s; too slow to test a rate of 3/s"
        accepted = []
        for client in opened:
            try:
                client.send(gen_connect(uid("rate")))
                accepted.append(client.read().raw == gen_connack(0))
            except (ConnectionClosed, ConnectionError):
                accepted.append(False)
        assert accepted == [True, True, True, False]
        time.sleep(1.1)
        again = raw_accepted(node, name)
        assert again is not None, "refused a connection after the rate had recovered"
        opened.append(again)
    finally:
        for c in opened:
            c.close()


def test_listeners_report(make_node, pki):
    """/listeners: protocol and listen_on of every kind, current_conns live,
    shutdown_count by reason (kicked, normal, closed)."""
    node = make_node({**API, **tls_listener(pki), **listener("ws"),
                      **tls_listener(pki, "wss"), **listener("tcp", "acct")})
    for name in ("mqtt:tcp:default", "mqtt:ssl:default", "mqtt:ws:default",
                 "mqtt:wss:default", "mqtt:tcp:acct"):
        row = listener_row(node, name)
        assert row["protocol"] == ":".join(name.split(":")[:2])
        assert row["listen_on"] == listen_on(node, name)
        assert row["current_conns"] == 0 and row["shutdown_count"] == []
        assert row["max_conns"] > 0 and row["acceptors"] > 0

    name = "mqtt:tcp:acct"
    ids = {reason: uid(reason) for reason in ("kicked", "normal", "closed")}
    clients = {reason: raw_accepted(node, name, client_id) for reason, client_id in ids.items()}
    wait_conns(node, name, 3)
    with node.api() as api:
        kicked = api.delete(f"/connections/{ids['kicked']}")
    assert kicked.status_code == 200, kicked.text
    normal, closed = clients["normal"], clients["closed"]
    assert normal is not None and closed is not None
    normal.send(gen_disconnect())
    closed.close()
    wait_conns(node, name, 0)
    wait_until(lambda: listener_row(node, name)["shutdown_count"]
               == {"kicked": 1, "normal": 1, "closed": 1},
               message="shutdown_count kicked/normal/closed")
    for c in clients.values():
        assert c is not None
        c.close()

    with ws_connect(ws_url(node, "mqtt:ws:default"), subprotocols=["mqtt"],
                    open_timeout=5) as ws:
        ws.send(gen_connect(uid("live")))
        assert WsStream(ws).read().raw == gen_connack(0)
        wait_conns(node, "mqtt:ws:default", 1)
    wait_conns(node, "mqtt:ws:default", 0)
    assert listener_row(node, "mqtt:ws:default")["shutdown_count"] == {"closed": 1}


# ======================================================================================
# Start-up
# ======================================================================================

def start_expecting_failure(tmp_path: Path, settings: dict[str, str]) -> tuple[int, str]:
    args = [sys.executable, "-m", "starling", "start", "--data-dir", str(tmp_path / "data")]
    merged = {"listeners.tcp.default.bind": "127.0.0.1:0", "listeners.tcp.internal.bind": "off",
              "listeners.ws.default.bind": "off", "listeners.wss.default.bind": "off",
              "listeners.ssl.default.bind": "off", "management.bind": "off",
              "dashboard.bind": "off", **settings}
    for key, value in merged.items():
        args += ["--set", f"{key}={value}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=20)
    return proc.returncode, proc.stderr


def test_bad_certificate_path_stops_the_node(tmp_path, pki):
    """A certificate file that does not exist: the node exits non-zero and says
    which listener and which file."""
    missing = tmp_path / "nowhere" / "server.crt"
    code, err = start_expecting_failure(tmp_path, listener(
        "ssl", "edge", ssl_options__certfile=str(missing),
        ssl_options__keyfile=str(pki.server.key)))
    assert code != 0
    assert "mqtt:ssl:edge" in err, err
    assert str(missing) in err, err
    assert "node started" not in err


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("ssl_options__keyfile", "alice-key", "mismatch"),
    ("ssl_options__ciphers", "NO-SUCH-CIPHER", "ciphers"),
    ("ssl_options__verify", "verify_maybe", "verify"),
], ids=["key-mismatch", "ciphers", "verify"])
def test_bad_tls_options_stop_the_node(tmp_path, pki, field, value, needle):
    fields = {"ssl_options__certfile": str(pki.server.cert),
              "ssl_options__keyfile": str(pki.server.key)}
    fields[field] = str(pki.alice.key) if value == "alice-key" else value
    code, err = start_expecting_failure(tmp_path, listener("wss", "edge", **fields))
    assert code != 0
    # named as the listener (mqtt:wss:edge) or as its key (listeners.wss.edge.*)
    assert ("mqtt:wss:edge" in err or "listeners.wss.edge." in err) and needle in err, err


def test_ssl_listener_without_certificate_is_not_started(make_node, paho_to):
    """No ssl_options.certfile: the ssl and wss listeners are skipped with a log
    line saying why, and the rest of the node runs."""
    node = make_node({**API, **listener("ssl"), **listener("wss")})
    node.wait_log(r"listener mqtt:ssl:default not started: no certificate")
    node.wait_log(r"listener mqtt:wss:default not started: no certificate")
    assert "mqtt:ssl:default" not in node.listeners
    protocols = {row["protocol"] for row in api_data(node, "/listeners/")[0]["listeners"]}
    assert "mqtt:ssl" not in protocols and "mqtt:wss" not in protocols
    a, b = paho_to(node, "mqtt:tcp:default"), paho_to(node, "mqtt:tcp:default")
    a.connect()
    b.connect()
    roundtrip(a, b)

