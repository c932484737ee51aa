"""emqx_auth_http against a real HTTP server (http.server in a thread) and a live
node: paho clients let in, refused, ignored, made superuser; the requests the
server sees (form, JSON, GET, placeholders, headers); https with a CA and a
client certificate; a server that is down or
too slow answered by `auth.http.on_error`, with the `emqx_auth_http_down`
alarm raised and cleared; unload removes the hooks; no password in the log
(docs/auth-backends.md#http)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.api import ok
from helpers.certs import CA
from helpers.clients import PahoClient, uid, wait_until
from helpers.http_receiver import HttpReceiver, Request
from helpers.servers import free_port
from paho.mqtt.client import MQTTv5
from test_auth_clientid_username import BAD_PASSWORD, OK, connect

PLUGIN = "emqx_auth_http"
ALARM = "emqx_auth_http_down"


class AuthService:
    """What the HTTP server answers: users and passwords, superusers, ACL rules."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.supers: set[str] = set()
        #: username -> [(access "1"|"2", topic filter)] allowed; others denied.
        self.acl: dict[str, list[tuple[str, str]]] = {}
        self.status_override: int | None = None
        self.lock = threading.Lock()

    def __call__(self, req: Request) -> tuple[int, str]:
        user = req.params.get("username", "")
        if self.status_override is not None:
            return self.status_override, "overridden"
        if req.path == "/mqtt/auth":
            if user not in self.users:
                return 200, "ignore"
            return (200, "ok") if self.users[user] == req.params.get("password") else (401, "")
        if req.path == "/mqtt/superuser":
            return (200, "") if user in self.supers else (403, "")
        if req.path == "/mqtt/acl":
            if user not in self.acl:
                return 200, "ignore"
            access, topic = req.params.get("access"), req.params.get("topic", "")
            allowed = any(access == rule_access and _matches(topic, rule_filter)
                          for rule_access, rule_filter in self.acl[user])
            return (200, "") if allowed else (403, "")
        return 404, ""


def _matches(topic: str, rule_filter: str) -> bool:
    """As an ACL service following EMQ X matches: the rule's + and # are wildcards;
    the asked topic's own (a SUBSCRIBE's filter) are plain words."""
    words, levels = topic.split("/"), rule_filter.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(words) or level not in ("+", words[i]):
            return False
    return len(words) == len(levels)


@pytest.fixture(scope="module")
def service() -> AuthService:
    return AuthService()


@pytest.fixture(scope="module")
def server(service: AuthService) -> Iterator[HttpReceiver]:
    srv = HttpReceiver(service).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def node(api_node: Any) -> Any:
    """The module's node, with the API on (`api` is tests/plugins/conftest.py's)."""
    return api_node


def base_config(server: HttpReceiver) -> dict[str, str]:
    return {
        "auth.http.auth_req": f"{server.url}/mqtt/auth",
        "auth.http.auth_req.method": "post",
        "auth.http.auth_req.content_type": "x-www-form-urlencoded",
        "auth.http.auth_req.params": "clientid=%c,username=%u,password=%P",
        "auth.http.super_req": f"{server.url}/mqtt/superuser",
        "auth.http.acl_req": f"{server.url}/mqtt/acl",
        "auth.http.request.timeout": "5s",
        "auth.http.request.retry_times": "1",
        "auth.http.request.retry_interval": "0.05s",
        "auth.http.on_error": "ignore",
    }


def configure(api: httpx.Client, node: Any, values: dict[str, str]) -> None:
    ok(api.put(f"/nodes/{node.name}/plugin_configs/{PLUGIN}", json=values))


def plugin(api: httpx.Client, node: Any, verb: str) -> Any:
    return ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/{verb}"))


def alarms(api: httpx.Client, node: Any) -> list[dict[str, str]]:
    return ok(api.get(f"/alarms/present/{node.name}"))  # type: ignore[no-any-return]


@pytest.fixture
def loaded(node: Any, api: httpx.Client, server: HttpReceiver,
           service: AuthService) -> Iterator[AuthService]:
    """The plugin configured for the test server and loaded; unloaded afterwards."""
    configure(api, node, base_config(server))
    plugin(api, node, "load")
    yield service
    service.status_override = None
    server.delay = 0.0
    active = {p["name"]: p["active"] for p in ok(api.get("/plugins/"))[0]["plugins"]}
    if active[PLUGIN]:
        plugin(api, node, "unload")


def test_let_in_refused_ignored_and_the_request_sent(node: Any, server: HttpReceiver,
                                                     loaded: AuthService) -> None:
    user = uid("u")
    loaded.users[user] = "s3cret"
    client_id = uid("c")
    assert connect(node, client_id, user, "s3cret") == OK
    seen = server.last("/mqtt/auth")
    assert seen.method == "POST"
    assert seen.content_type == "application/x-www-form-urlencoded"
    assert seen.params == {"clientid": client_id, "username": user, "password": "s3cret"}
    assert connect(node, uid("c"), user, "wrong") == BAD_PASSWORD
    assert connect(node, uid("c"), user, "wrong", protocol=MQTTv5) == BAD_PASSWORD
    # The server answers "ignore" for a user it does not know: allow_anonymous decides.
    assert connect(node, uid("c"), uid("nobody"), "x") == OK
    # EMQ X: no password (or no user name) is "bad user name or password", unasked.
    before = len(server.requests)
    assert connect(node, uid("c"), user, None) == BAD_PASSWORD
    assert len(server.requests) == before


def test_json_and_get_requests_placeholders_and_headers(node: Any, api: httpx.Client,
                                                        server: HttpReceiver,
                                                        loaded: AuthService) -> None:
    user = uid("u")
    loaded.users[user] = "pw"
    configure(api, node, {"auth.http.auth_req.content_type": "json",
                          "auth.http.auth_req.params":
                              "username=%u,password=%P,c=%c,a=%a,mixed=user-%u@%a,fixed=yes",
                          "auth.http.header.X-Api-Key": "k1"})
    client_id = uid("c")
    assert connect(node, client_id, user, "pw") == OK
    seen = server.last("/mqtt/auth")
    assert seen.content_type == "application/json"
    assert seen.params == {"username": user, "c": client_id, "a": "127.0.0.1", "password": "pw",
                           "mixed": f"user-{user}@127.0.0.1", "fixed": "yes"}
    assert seen.headers["x-api-key"] == "k1"
    configure(api, node, {"auth.http.auth_req.method": "get"})
    assert connect(node, uid("c"), user, "nope") == BAD_PASSWORD
    seen = server.last("/mqtt/auth")
    assert seen.method == "GET"
    assert seen.params["password"] == "nope"


def test_any_status_but_200_refuses(node: Any, loaded: AuthService) -> None:
    user = uid("u")
    loaded.users[user] = "pw"
    for status in (403, 404, 500):
        loaded.status_override = status
        assert connect(node, uid("c"), user, "pw") == BAD_PASSWORD, status


def test_server_down_ignore_or_deny_alarm_raised_and_cleared(
        node: Any, api: httpx.Client, service: AuthService) -> None:
    # A server of our own on a port nobody listens on yet.
    port = free_port()
    down = HttpReceiver(service, port=port)
    config = base_config(down)
    config["auth.http.request.timeout"] = "2s"
    configure(api, node, config)
    plugin(api, node, "load")
    try:
        user = uid("u")
        service.users[user] = "pw"
        # ignore: the chain goes on, allow_anonymous (true) lets the client in
        assert connect(node, uid("c"), user, "wrong") == OK
        alarm = wait_until(lambda: [a for a in alarms(api, node) if a["id"] == ALARM])[0]
        assert f"127.0.0.1:{port}" in alarm["desc"]
        configure(api, node, {"auth.http.on_error": "deny"})
        assert connect(node, uid("c"), user, "pw") == BAD_PASSWORD
        # The server comes up: the probe clears the alarm without any client.
        down.start()
        wait_until(lambda: not [a for a in alarms(api, node) if a["id"] == ALARM],
                   timeout=20, message="alarm cleared")
        history = ok(api.get(f"/alarms/history/{node.name}"))
        assert any(a["id"] == ALARM for a in history)
        assert connect(node, uid("c"), user, "pw") == OK
        assert connect(node, uid("c"), user, "wrong") == BAD_PASSWORD
        # Down again while loaded: raised again; unloading clears it.
        down.stop()
        assert connect(node, uid("c"), user, "pw") == BAD_PASSWORD
        wait_until(lambda: [a for a in alarms(api, node) if a["id"] == ALARM])
    finally:
        plugin(api, node, "unload")
        down.stop()
    assert not [a for a in alarms(api, node) if a["id"] == ALARM]


def test_a_slow_server_is_cut_off_by_the_timeout(node: Any, api: httpx.Client,
                                                 server: HttpReceiver,
                                                 loaded: AuthService) -> None:
    user = uid("u")
    loaded.users[user] = "pw"
    configure(api, node, {"auth.http.request.timeout": "0.5s", "auth.http.on_error": "deny"})
    server.delay = 3.0
    started = time.monotonic()
    assert connect(node, uid("c"), user, "pw") == BAD_PASSWORD
    # Bounded by the timeout, not by the server (generous margin for a busy machine).
    assert time.monotonic() - started < 2.9


def test_unload_removes_the_check(node: Any, api: httpx.Client, server: HttpReceiver,
                                  loaded: AuthService) -> None:
    user = uid("u")
    loaded.users[user] = "pw"
    assert connect(node, uid("c"), user, "wrong") == BAD_PASSWORD
    plugin(api, node, "unload")
    before = len(server.requests)
    assert connect(node, uid("c"), user, "wrong") == OK
    assert len(server.requests) == before


def test_metrics_and_no_password_in_the_log(node: Any, api: httpx.Client,
                                            loaded: AuthService) -> None:
    user = uid("u")
    secret = uid("pw-never-logged")
    loaded.users[user] = secret
    before = ok(api.get(f"/nodes/{node.name}/metrics/"))
    assert connect(node, uid("c"), user, secret) == OK
    assert connect(node, uid("c"), user, secret + "x") == BAD_PASSWORD
    assert connect(node, uid("c"), uid("nobody"), secret) == OK
    after = ok(api.get(f"/nodes/{node.name}/metrics/"))
    for name in ("success", "failure", "ignore"):
        assert after[f"auth/http/{name}"] - before[f"auth/http/{name}"] == 1, name
    assert not [line for line in node.log_lines if secret in line]


def user_client(node: Any, service: AuthService, acl: list[tuple[str, str]] | None,
                superuser: bool = False) -> PahoClient:
    """A connected paho client whose user the HTTP server knows."""
    user = uid("u")
    service.users[user] = "pw"
    if acl is not None:
        service.acl[user] = acl
    if superuser:
        service.supers.add(user)
    client = PahoClient(node.host, node.port, client_id=uid("c"))
    client.client.username_pw_set(user, "pw")
    client.connect()
    return client


def test_acl_allowed_denied_superuser_and_cache(node: Any, server: HttpReceiver,
                                                loaded: AuthService) -> None:
    base = uid("t")
    watcher = user_client(node, loaded, [("1", f"{base}/#")])
    pub = user_client(node, loaded, [("2", f"{base}/ok"), ("1", f"{base}/mine")])
    root = user_client(node, loaded, [], superuser=True)

    def asked(access: str, topic: str | None = None, by: PahoClient | None = None) -> int:
        """ACL requests the server got, for this access (and topic, and client)."""
        return len([r for r in server.requests if r.path == "/mqtt/acl"
                    and r.params["access"] == access
                    and (topic is None or r.params["topic"] == topic)
                    and (by is None or r.params["clientid"] == by.client_id)])

    try:
        assert watcher.subscribe(f"{base}/#", qos=1) == [1]
        seen = server.last("/mqtt/acl")
        assert seen.method == "GET"
        assert seen.params["access"] == "1"
        assert seen.params["topic"] == f"{base}/#"
        assert seen.params["username"] == watcher.client._username.decode()
        assert seen.params["clientid"] == watcher.client_id
        assert seen.params["ipaddr"] == "127.0.0.1"
        assert watcher.subscribe(f"other-{base}", qos=1) == [0x80]
        assert pub.subscribe(f"{base}/mine", qos=1) == [1]
        assert pub.subscribe(f"{base}/ok", qos=1) == [0x80]  # publish only
        pub.publish(f"{base}/denied", b"no", qos=1)
        pub.publish(f"{base}/ok", b"yes", qos=1)
        assert asked("2", f"{base}/denied", pub) == asked("2", f"{base}/ok", pub) == 1
        # The superuser bypasses ACL: the server is not asked, the message goes out.
        publishes = asked("2")
        root.publish(f"{base}/root", b"root", qos=1)
        assert [(m.topic, m.payload) for m in watcher.get_many(2)] == [
            (f"{base}/ok", b"yes"), (f"{base}/root", b"root")]
        assert asked("2") == publishes
        # What the watcher's wildcard subscription delivers is checked once per topic
        # (acl_deliver_check): may it subscribe to the topic itself?
        assert asked("1", f"{base}/ok", watcher) == asked("1", f"{base}/root", watcher) == 1
        # The broker's ACL cache keeps the answers: the same publish is not asked again,
        # nor its delivery.
        pub.publish(f"{base}/ok", b"again", qos=1)
        assert watcher.get().payload == b"again"
        assert asked("2") == publishes
        assert asked("1", f"{base}/ok", watcher) == 1
        assert watcher.drain() == []
    finally:
        for client in (watcher, pub, root):
            client.close()


def test_acl_server_down_answers_on_error(node: Any, api: httpx.Client,
                                          server: HttpReceiver,
                                          loaded: AuthService) -> None:
    base = uid("t")
    client = user_client(node, loaded, [("1", f"{base}/a")])
    try:
        # acl_req goes to a port nobody listens on, auth_req still answers
        configure(api, node, {"auth.http.acl_req": f"http://127.0.0.1:{free_port()}/acl",
                              "auth.http.on_error": "deny"})
        client.close()
        client = user_client(node, loaded, None)
        assert client.subscribe(f"{base}/a", qos=1) == [0x80]
        configure(api, node, {"auth.http.on_error": "ignore"})
        client.close()
        client = user_client(node, loaded, None)
        assert client.subscribe(f"{base}/b", qos=1) == [1]  # acl_nomatch = allow
        assert [a for a in alarms(api, node) if a["id"] == ALARM]
    finally:
        client.close()


def test_https_server_and_client_certificate(node: Any, api: httpx.Client,
                                             service: AuthService, tmp_path: Path) -> None:
    ca = CA.create(tmp_path / "ca")
    server_pair = ca.issue_server()
    client_pair = ca.issue_client("starling-node")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(server_pair.cert, server_pair.key)
    tls.verify_mode = ssl.CERT_REQUIRED  # the server wants our client certificate
    tls.load_verify_locations(ca.cert)
    https = HttpReceiver(service, tls=tls).start()
    user = uid("u")
    service.users[user] = "pw"
    config = {**base_config(https), "auth.http.on_error": "deny",
              "auth.http.request.retry_times": "0", "auth.http.ssl.cacertfile": "",
              "auth.http.ssl.certfile": "", "auth.http.ssl.keyfile": ""}
    try:
        configure(api, node, config)
        plugin(api, node, "load")
        # The server's certificate is not trusted (its CA is not configured).
        assert connect(node, uid("c"), user, "pw") == BAD_PASSWORD
        configure(api, node, {"auth.http.ssl.cacertfile": str(ca.cert)})
        # Trusted now, but the server refuses a client without a certificate.
        assert connect(node, uid("c"), user, "pw") == BAD_PASSWORD
        configure(api, node, {"auth.http.ssl.certfile": str(client_pair.cert),
                              "auth.http.ssl.keyfile": str(client_pair.key)})
        assert connect(node, uid("c"), user, "pw") == OK
        assert connect(node, uid("c"), user, "wrong") == BAD_PASSWORD
        assert https.last("/mqtt/auth").params["username"] == user
    finally:
        plugin(api, node, "unload")
        configure(api, node, {"auth.http.ssl.cacertfile": "", "auth.http.ssl.certfile": "",
                              "auth.http.ssl.keyfile": ""})
        https.stop()
