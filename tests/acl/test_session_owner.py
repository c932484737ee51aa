"""Who may resume a persistent session (issue #25, `session.strict_resume`): only its
owner, by user name or, without one, by client certificate; another user with the
same client id gets a new session (session present 0) and the old one is
discarded, logged and counted; the owner's resumed subscriptions are checked
against the ACL again; `session.strict_resume = false` is EMQ X v3's behaviour.
Real paho clients against a running node."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from acl_support import API_SETTINGS, api, metric
from helpers.api import ok
from helpers.certs import CA
from helpers.clients import PahoClient, uid
from helpers.nodes import restart

RULES = """\
{allow, {user, "admin"}, pubsub, ["#"]}.
{allow, {user, "bob"}, subscribe, ["bob/#"]}.
{allow, all, pubsub, ["open/#"]}.
{deny, all}.
"""


def owner_node(make_node: Any, tmp_path: Path, rules: str = RULES, **settings: str) -> Any:
    path = tmp_path / "acl.conf"
    path.write_text(rules, "utf-8")
    return make_node({**API_SETTINGS, "acl_file": str(path), "acl_file_check_interval": "0",
                      **settings})


@pytest.fixture
def connect(clients: Any) -> Any:
    """`connect(node, client_id, username)`: a connected persistent-session client
    (clean session 0, MQTT 3.1.1); `.connack` is (return code, session present)."""
    def factory(node: Any, client_id: str, username: str | None) -> PahoClient:
        return clients(node, client_id, username=username, password="pw",
                       clean_session=False)
    return factory


def publish_as_admin(node: Any, clients: Any, topic: str, payload: bytes) -> None:
    publisher = clients(node, uid("pub"), username="admin", password="pw")
    publisher.publish(topic, payload, qos=1)
    publisher.close()


def offline_with_message(node: Any, clients: Any, connect: Any, client_id: str, owner: str,
                         topic: str, payload: bytes) -> None:
    """`owner` subscribes `topic` on a persistent session and leaves; `payload` is
    then published there and waits in the session."""
    client = connect(node, client_id, owner)
    assert client.subscribe(topic, 1) == [1]
    client.close()
    publish_as_admin(node, clients, topic, payload)


def subscriptions(node: Any, client_id: str) -> list[str]:
    with api(node) as http:
        return sorted(s["topic"] for s in ok(http.get(f"/subscriptions/{client_id}")))


def test_another_user_does_not_resume_the_session(make_node: Any, tmp_path: Path,
                                                  clients: Any, connect: Any) -> None:
    node = owner_node(make_node, tmp_path)
    cid = uid("shared-id")
    offline_with_message(node, clients, connect, cid, "admin", "admin/inbox", b"for admin only")

    alice = connect(node, cid, "alice")
    assert alice.connack == (0, False)  # a new session, not admin's
    assert subscriptions(node, cid) == []
    assert alice.subscribe("open/x", 1) == [1]
    publish_as_admin(node, clients, "open/x", b"marker")
    assert alice.get(timeout=5).payload == b"marker"  # admin's queued message never came
    assert metric(node, "sessions/not_resumed") == 1
    node.wait_log(rf"client id '{cid}': the session of user 'admin' is not resumed by user "
                  r"'alice' from 127\.0\.0\.1; it is discarded")
    alice.close()

    # Admin's session is gone (alice's own persistent session took the id): admin too
    # starts afresh, and alice's session is not admin's to resume either.
    admin = connect(node, cid, "admin")
    assert admin.connack == (0, False)
    assert subscriptions(node, cid) == []
    assert metric(node, "sessions/not_resumed") == 2


def test_the_owner_resumes_with_its_queued_messages(make_node: Any, tmp_path: Path,
                                                    clients: Any, connect: Any) -> None:
    node = owner_node(make_node, tmp_path)
    cid = uid("bob-id")
    offline_with_message(node, clients, connect, cid, "bob", "bob/inbox", b"queued")
    bob = connect(node, cid, "bob")
    assert bob.connack == (0, True)
    assert bob.get(timeout=5).payload == b"queued"
    assert metric(node, "sessions/not_resumed") == 0


def test_resumed_subscriptions_are_checked_against_the_acl_again(
        make_node: Any, tmp_path: Path, clients: Any, connect: Any) -> None:
    node = owner_node(make_node, tmp_path)
    cid = uid("bob-id")
    bob = connect(node, cid, "bob")
    assert bob.subscribe([("bob/news", 1), ("open/news", 1)]) == [1, 1]
    bob.close()
    # bob loses bob/# while offline
    (tmp_path / "acl.conf").write_text(RULES.replace(
        '{allow, {user, "bob"}, subscribe, ["bob/#"]}.\n', ""), "utf-8")
    with api(node) as http:
        ok(http.put("/acl/reload"))

    bob = connect(node, cid, "bob")
    assert bob.connack == (0, True)
    assert subscriptions(node, cid) == ["open/news"]
    node.wait_log(rf"client id '{cid}': 1 subscription\(s\) of the resumed session removed, "
                  r"denied by the ACL for user 'bob': bob/news")
    publish_as_admin(node, clients, "bob/news", b"denied now")
    publish_as_admin(node, clients, "open/news", b"still allowed")
    assert bob.get(timeout=5).payload == b"still allowed"
    assert bob.drain() == []


def test_strict_resume_off_is_emqx_behaviour(make_node: Any, tmp_path: Path, clients: Any,
                                             connect: Any) -> None:
    node = owner_node(make_node, tmp_path, **{"session.strict_resume": "false"})
    cid = uid("shared-id")
    offline_with_message(node, clients, connect, cid, "admin", "admin/inbox", b"for admin only")
    alice = connect(node, cid, "alice")
    assert alice.connack == (0, True)  # EMQ X v3: whoever has the client id
    assert alice.get(timeout=5).payload == b"for admin only"
    assert subscriptions(node, cid) == ["admin/inbox"]  # not checked against alice's ACL
    assert metric(node, "sessions/not_resumed") == 0


def test_without_user_names_the_client_certificate_owns_the_session(
        make_node: Any, tmp_path: Path) -> None:
    ca = CA.create(tmp_path, "Owner Test CA")
    server = ca.issue_server()
    alice, bob = ca.issue_client("alice"), ca.issue_client("bob")
    prefix = "listeners.ssl.default"
    node = owner_node(make_node, tmp_path, **{
        f"{prefix}.bind": "127.0.0.1:0", f"{prefix}.ssl_options.certfile": str(server.cert),
        f"{prefix}.ssl_options.keyfile": str(server.key),
        f"{prefix}.ssl_options.cacertfile": str(ca.cert),
        f"{prefix}.ssl_options.verify": "verify_peer",
        f"{prefix}.ssl_options.fail_if_no_peer_cert": "true"})
    cid = uid("device")
    made: list[PahoClient] = []

    def connect_with(cert: Any) -> PahoClient:
        host, port = node.listeners["mqtt:ssl:default"]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca.cert)
        ctx.load_cert_chain(cert.cert, cert.key)
        client = PahoClient(host, port, cid, clean_session=False)
        client.client.tls_set_context(ctx)
        made.append(client)
        client.connect()
        return client

    try:
        first = connect_with(alice)
        assert first.subscribe("open/a", 1) == [1]
        first.close()
        assert connect_with(alice).connack == (0, True)
        made[-1].close()
        assert connect_with(bob).connack == (0, False)  # another certificate
        made[-1].close()
        assert connect_with(bob).connack == (0, True)
        made[-1].close()
        # The owner's certificate is kept with the session across a restart.
        restart(node)
        assert connect_with(bob).connack == (0, True)
        made[-1].close()
        assert connect_with(alice).connack == (0, False)
    finally:
        for client in made:
            client.close()
