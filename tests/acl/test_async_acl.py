"""ACL sources that answer after I/O (HTTP, databases): a plugin's `client.check_acl`
callback may be a coroutine.  The client's packets wait for the answer, in order,
and nothing else on the node waits with them."""

from __future__ import annotations

import time

import pytest

from tests.conftest import API_SETTINGS
from tests.helpers.clients import PahoClient, uid
from tests.helpers.plugins import install_plugin

SLOW_ACL = '''
import asyncio

from starling.broker import HookPoint, Stop
from starling.plugins import Plugin, PluginInfo


class SlowAcl(Plugin):
    """Allows topics under ok/ (and the public/ tree), denies the rest, after a
    pause that stands in for a database round trip."""

    async def load(self):
        self.context.broker.hooks.add(HookPoint.CLIENT_CHECK_ACL, self.check)

    async def unload(self):
        self.context.broker.hooks.remove(HookPoint.CLIENT_CHECK_ACL, self.check)

    async def check(self, client, action, topic, acc):
        if topic.startswith("public/") or "#" in topic:
            return None  # no opinion: the next source (or acl_nomatch) decides
        await asyncio.sleep(0.2 if topic.endswith("/slow") else 0.01)
        return Stop("allow" if topic.startswith("ok/") else "deny")


def register(registry):
    registry.add(PluginInfo("slow_acl", "ACL answering after a pause", "auth"))
    registry.implement("slow_acl", SlowAcl, ())
'''

NODE = "starling@127.0.0.1"


@pytest.fixture()
def node(make_node, tmp_path, monkeypatch):
    install_plugin(tmp_path / "site", monkeypatch, "slow_acl", SLOW_ACL)
    return make_node({**API_SETTINGS, "plugins.loaded": "emqx_management,slow_acl",
                      "acl_nomatch": "allow"})


def paho(node, **kwargs) -> PahoClient:
    client = PahoClient(node.host, node.port, **kwargs)
    client.connect()
    return client


def test_publishes_wait_for_the_answer_and_keep_their_order(node) -> None:
    sub = paho(node)
    try:
        assert sub.subscribe("#", qos=1) == [1]
        pub = paho(node)
        try:
            # The first answer takes 20x longer than the others: order must hold anyway.
            topics = ["ok/a/slow", "ok/b", "no/c", "ok/d", "no/e/slow", "ok/f"]
            for i, topic in enumerate(topics):
                pub.publish(topic, f"m{i}", qos=1)
            got = sub.get_many(4, timeout=10)
            assert [(m.topic, m.payload) for m in got] == [
                ("ok/a/slow", b"m0"), ("ok/b", b"m1"), ("ok/d", b"m3"), ("ok/f", b"m5")]
            time.sleep(0.3)
            assert sub.drain() == []  # the denied ones never arrive
        finally:
            pub.close()
    finally:
        sub.close()


def test_subscribe_answers_per_filter(node) -> None:
    client = paho(node)
    try:
        assert client.subscribe([("ok/x", 1), ("no/x", 1), ("public/x", 0)]) == [1, 128, 0]
    finally:
        client.close()


def test_a_will_on_a_denied_topic_refuses_the_connect(node) -> None:
    client = PahoClient(node.host, node.port)
    client.will_set("no/will", b"bye")
    try:
        rc, _ = client.connect(expect_rc=None)
        assert rc in (5, 135)  # not authorized (paho reports 3.1.1 codes as 5.0 ones)
    finally:
        client.close()
    allowed = PahoClient(node.host, node.port)
    allowed.will_set("ok/will", b"bye")
    try:
        assert allowed.connect()[0] == 0
    finally:
        allowed.close()


def test_other_clients_do_not_wait_for_a_slow_answer(node) -> None:
    """A slow ACL answer holds only the client it is for."""
    sub = paho(node)
    slow = paho(node)
    fast = paho(node)
    try:
        sub.subscribe("public/#")
        sub.subscribe("ok/#")
        for i in range(20):
            slow.publish(f"ok/{i}/slow", b"s")  # each waits 0.2 s: ~4 s in all
        fast.publish("public/now", b"f")
        first = sub.get(timeout=5)
        assert (first.topic, first.payload) == ("public/now", b"f")
    finally:
        for client in (slow, fast, sub):
            client.close()


def test_explain_awaits_the_plugin(node) -> None:
    with node.api() as api:
        params = {"client_id": uid(), "topic": "no/x", "action": "publish"}
        body = api.get("/acl/explain", params=params).json()
        assert body["code"] == 0
        assert body["data"]["decision"] == "deny"
        params["topic"] = "ok/x"
        assert api.get("/acl/explain", params=params).json()["data"]["decision"] == "allow"


def test_a_flood_behind_a_slow_answer_is_held_then_delivered(node) -> None:
    """Hundreds of packets behind one slow ACL answer: held in order past the point
    where the socket is no longer read, then all handled once reading resumes."""
    sub = paho(node)
    pub = paho(node)
    try:
        sub.subscribe("ok/#", qos=0)
        for i in range(600):  # the first waits 0.2 s; the rest use the cached answer
            pub.publish("ok/flood/slow", str(i))
        got = sub.get_many(600, timeout=20)
        assert [int(m.payload) for m in got] == list(range(600))
        pub.publish("ok/after", "still reading")
        assert sub.get(timeout=5).payload == b"still reading"
    finally:
        pub.close()
        sub.close()
