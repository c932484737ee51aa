"""The delivery-time ACL check (issue #25, `acl_deliver_check`): with
``{deny, all, subscribe, ["secret/#"]}`` the filters ``+/#``, ``+/x``, ``+/+/x``,
``$share/g/+/#`` and ``$queue/+/#`` are still granted (the filter text is what
SUBSCRIBE checks) but never receive ``secret/...``, live, retained or queued while
offline; counted in `delivery/dropped/acl_denied`.  Off, they do (EMQ X v3).  An
ACL source that answers after I/O decides while the messages wait, in order.
Real paho clients against a running node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from acl_support import API_SETTINGS, api, metric
from helpers.api import ok
from helpers.clients import PahoClient, uid
from helpers.plugins import install_plugin

RULES = """\
{deny, all, subscribe, ["secret/#"]}.
{allow, all}.
"""

#: (filter, a topic the rules hide from it, a topic it may receive)
WILDCARDS = [
    ("+/#", "secret/x", "open/x"),
    ("+/x", "secret/x", "open/x"),
    ("+/+/x", "secret/a/x", "open/a/x"),
    ("$share/g/+/#", "secret/x", "open/x"),
    ("$queue/+/#", "secret/x", "open/x"),
]


def rules_node(make_node: Any, tmp_path: Path, rules: str = RULES, **settings: str) -> Any:
    path = tmp_path / "acl.conf"
    path.write_text(rules, "utf-8")
    return make_node({**API_SETTINGS, "acl_file": str(path), "acl_file_check_interval": "0",
                      **settings})


@pytest.fixture
def node(make_node: Any, tmp_path: Path) -> Any:
    return rules_node(make_node, tmp_path)


def received(client: PahoClient, marker: str) -> list[str]:
    """Topics received up to and including `marker` (published last)."""
    topics = []
    while True:
        msg = client.get(timeout=5)
        topics.append(msg.topic)
        if msg.topic == marker:
            return topics


def test_wildcard_subscriptions_do_not_receive_what_the_subscriber_may_not_subscribe(
        node: Any, clients: Any) -> None:
    publisher = clients(node, uid("pub"))
    for topic_filter, hidden, shown in WILDCARDS:
        subscriber = clients(node, uid("sub"))
        assert subscriber.subscribe(topic_filter, 1) == [1], topic_filter  # granted
        before = metric(node, "delivery/dropped/acl_denied")
        for topic in (hidden, shown, hidden):
            publisher.publish(topic, b"m", qos=1)
        assert received(subscriber, shown) == [shown], topic_filter
        publisher.publish(shown, b"end", qos=1)  # the second hidden one came before it
        assert received(subscriber, shown) == [shown], topic_filter
        assert metric(node, "delivery/dropped/acl_denied") == before + 2, topic_filter
        subscriber.close()


def test_exact_subscriptions_are_not_checked_again(node: Any, clients: Any) -> None:
    """Only wildcard subscriptions pay for the check: an exact filter was checked at
    SUBSCRIBE with the topic itself."""
    subscriber = clients(node, uid("sub"))
    assert subscriber.subscribe("secret/x", 1) == [0x80]
    assert subscriber.subscribe("open/y", 1) == [1]
    clients(node, uid("pub")).publish("open/y", b"m", qos=1)
    assert subscriber.get(timeout=5).topic == "open/y"
    assert metric(node, "delivery/dropped/acl_denied") == 0


def test_retained_messages_on_subscribe_are_checked(node: Any, clients: Any) -> None:
    publisher = clients(node, uid("pub"))
    tag = uid("r")
    publisher.publish(f"secret/{tag}", b"hidden", qos=1, retain=True)
    publisher.publish(f"open/{tag}", b"shown", qos=1, retain=True)
    subscriber = clients(node, uid("sub"))
    assert subscriber.subscribe(f"+/{tag}", 1) == [1]
    msg = subscriber.get(timeout=5)
    assert (msg.topic, msg.retain) == (f"open/{tag}", True)
    publisher.publish(f"open/{tag}", b"live", qos=1)
    assert subscriber.get(timeout=5).payload == b"live"  # nothing hidden came between
    assert metric(node, "delivery/dropped/acl_denied") == 1


def test_messages_queued_while_offline_are_checked_on_the_way_out(
        node: Any, clients: Any) -> None:
    cid = uid("offline")
    subscriber = clients(node, cid, clean_session=False)
    assert subscriber.subscribe("+/#", 1) == [1]
    subscriber.close()
    publisher = clients(node, uid("pub"))
    for topic in ("secret/q", "open/q1", "secret/q", "open/q2"):
        publisher.publish(topic, b"m", qos=1)
    subscriber = clients(node, cid, clean_session=False)
    assert subscriber.connack == (0, True)
    assert received(subscriber, "open/q2") == ["open/q1", "open/q2"]
    assert metric(node, "delivery/dropped/acl_denied") == 2
    with api(node) as http:  # nothing left behind in the session
        assert ok(http.get(f"/sessions/{cid}"))[0]["mqueue_len"] == 0


def test_a_rule_change_applies_to_the_next_delivery(node: Any, clients: Any,
                                                    tmp_path: Path) -> None:
    subscriber = clients(node, uid("sub"))
    assert subscriber.subscribe("+/#", 1) == [1]
    publisher = clients(node, uid("pub"))
    publisher.publish("other/x", b"1", qos=1)
    assert subscriber.get(timeout=5).topic == "other/x"
    (tmp_path / "acl.conf").write_text(
        '{deny, all, subscribe, ["secret/#", "other/#"]}.\n{allow, all}.\n', "utf-8")
    with api(node) as http:
        ok(http.put("/acl/reload"))
    for topic in ("other/x", "open/x"):
        publisher.publish(topic, b"2", qos=1)
    assert received(subscriber, "open/x") == ["open/x"]


def test_a_full_decision_cache_starts_again_and_decides_the_same(
        make_node: Any, tmp_path: Path, clients: Any) -> None:
    node = rules_node(make_node, tmp_path, **{"acl_deliver_cache_max_size": "1"})
    subscriber = clients(node, uid("sub"))
    assert subscriber.subscribe("+/#", 1) == [1]
    publisher = clients(node, uid("pub"))
    for round_ in range(3):
        for topic in ("open/a", "secret/a", "open/b", "secret/b"):
            publisher.publish(topic, str(round_).encode(), qos=1)
    topics = [m.topic for m in subscriber.get_many(6, timeout=10)]
    assert topics == ["open/a", "open/b"] * 3
    publisher.publish("open/end", b"", qos=1)
    assert subscriber.get(timeout=5).topic == "open/end"
    assert metric(node, "delivery/dropped/acl_denied") == 6


def test_deliver_check_off_is_emqx_behaviour(make_node: Any, tmp_path: Path,
                                             clients: Any) -> None:
    node = rules_node(make_node, tmp_path, **{"acl_deliver_check": "false"})
    publisher = clients(node, uid("pub"))
    for topic_filter, hidden, shown in WILDCARDS:
        subscriber = clients(node, uid("sub"))
        assert subscriber.subscribe(topic_filter, 1) == [1]
        publisher.publish(hidden, b"m", qos=1)
        publisher.publish(shown, b"m", qos=1)
        assert received(subscriber, shown) == [hidden, shown], topic_filter
        subscriber.close()
    assert metric(node, "delivery/dropped/acl_denied") == 0


SLOW_READ_ACL = '''
import asyncio

from starling.broker import HookPoint, Stop
from starling.plugins import Plugin, PluginInfo


class SlowReadAcl(Plugin):
    """Nobody may subscribe to hidden/..., after a pause that stands in for a
    database round trip; no opinion on the rest."""

    async def load(self):
        self.context.broker.hooks.add(HookPoint.CLIENT_CHECK_ACL, self.check)

    async def unload(self):
        self.context.broker.hooks.remove(HookPoint.CLIENT_CHECK_ACL, self.check)

    async def check(self, client, action, topic, acc):
        if action != "subscribe" or not topic.startswith(("hidden/", "shown/")):
            return None
        await asyncio.sleep(0.3)
        return Stop("deny" if topic.startswith("hidden/") else "allow")


def register(registry):
    registry.add(PluginInfo("slow_read_acl", "subscribe ACL answering after a pause", "auth"))
    registry.implement("slow_read_acl", SlowReadAcl, ())
'''


def test_an_acl_source_that_must_be_awaited_decides_while_messages_wait_in_order(
        make_node: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clients: Any) -> None:
    install_plugin(tmp_path / "site", monkeypatch, "slow_read_acl", SLOW_READ_ACL)
    node = make_node({**API_SETTINGS, "plugins.loaded": "emqx_management,slow_read_acl"})
    subscriber = clients(node, uid("sub"))
    assert subscriber.subscribe("+/#", 1) == [1]
    publisher = clients(node, uid("pub"))
    sent = [("shown/a", b"1"), ("hidden/a", b"2"), ("shown/a", b"3"), ("shown/b", b"4"),
            ("hidden/a", b"5"), ("shown/a", b"6")]
    for topic, payload in sent:
        publisher.publish(topic, payload, qos=1)
    got = subscriber.get_many(4, timeout=10)
    assert sorted((m.topic, m.payload) for m in got) == sorted(
        (t, p) for t, p in sent if t.startswith("shown/"))
    # each topic's own messages keep their order
    assert [m.payload for m in got if m.topic == "shown/a"] == [b"1", b"3", b"6"]
    publisher.publish("shown/b", b"end", qos=1)
    assert subscriber.get(timeout=5).payload == b"end"
    assert metric(node, "delivery/dropped/acl_denied") == 2
