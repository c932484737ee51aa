"""Every hook point fires where EMQ X fires it, with values (`ClientInfo`,
`SessionSnapshot`, `Message`), never a live connection or session: a plugin
installed into a real node logs each call, real paho clients make them happen.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from helpers.clients import Clients, uid, wait_until
from helpers.plugins import install_plugin

from tests.conftest import API_SETTINGS

RECORDER = '''
import logging
from starling.broker import HookPoint
from starling.plugins import Plugin, PluginInfo

log = logging.getLogger("hook_recorder")


def describe(value):
    if hasattr(value, "client_id"):
        return f"{type(value).__name__}:{value.client_id}"
    if hasattr(value, "topic") and hasattr(value, "payload"):
        return f"{type(value).__name__}:{value.topic}"
    return repr(value) if isinstance(value, (str, int)) else type(value).__name__


class Recorder(Plugin):
    async def load(self):
        self.attached = []
        for point in HookPoint:
            if point in (HookPoint.CLIENT_ENHANCED_AUTHENTICATE, HookPoint.MESSAGE_PUBLISH):
                continue
            callback = self.recorder(point)
            self.context.broker.hooks.add_dynamic(point, callback, priority=100)
            self.attached.append((point, callback))

    async def unload(self):
        for point, callback in self.attached:
            self.context.broker.hooks.remove(point, callback)

    def recorder(self, point):
        def record(*args):
            log.warning("hook %s %s", point, " ".join(describe(a) for a in args))
            return None
        return record


def register(registry):
    registry.add(PluginInfo("hook_recorder", "Logs every hook call (tests)"))
    registry.implement("hook_recorder", Recorder, ())
'''
LINE = re.compile(r"hook (\S+) (.*)$")


@pytest.fixture
def node(make_node: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    install_plugin(tmp_path / "site", monkeypatch, "hook_recorder", RECORDER)
    return make_node({**API_SETTINGS, "plugins.loaded": "emqx_management,hook_recorder"})


def calls(node: Any, client_id: str) -> list[tuple[str, str]]:
    """(point, arguments) of every recorded call that names `client_id`, in order."""
    out = []
    for line in list(node.log_lines):
        match = LINE.search(line)
        if match and client_id in match.group(2):
            out.append((match.group(1), match.group(2)))
    return out


def points(node: Any, client_id: str) -> list[str]:
    return [point for point, _ in calls(node, client_id)]


def settle(node: Any, client_id: str, last: str) -> list[tuple[str, str]]:
    wait_until(lambda: last in points(node, client_id), message=f"{last} for {client_id}")
    time.sleep(0.2)  # nothing more may follow
    return calls(node, client_id)


def test_connect_and_disconnect_of_a_clean_session(node: Any, clients: Clients) -> None:
    client_id = uid("c")
    client = clients(node, client_id)
    client.subscribe("hooks/t", 1)
    client.publish("hooks/t", b"x", qos=1)
    client.get()
    client.disconnect()
    seen = settle(node, client_id, "session.terminated")
    assert [p for p, _ in seen] == [
        "client.connect", "client.authenticate", "session.created", "client.connack",
        "client.connected", "client.subscribe", "client.check_acl", "session.subscribed",
        "client.check_acl", "message.delivered", "message.acked", "client.disconnected",
        "session.terminated"]
    args = dict(seen)
    assert args["client.connect"] == f"ClientInfo:{client_id}"
    assert args["client.authenticate"] == f"ClientInfo:{client_id} AuthResult"
    assert args["session.created"] == f"'{client_id}' SessionSnapshot:{client_id}"
    assert args["client.connack"] == f"ClientInfo:{client_id} <ReasonCode.SUCCESS: 0>"
    assert args["client.connected"] == f"ClientInfo:{client_id}"
    assert args["client.check_acl"] == f"ClientInfo:{client_id} 'publish' 'hooks/t' 'allow'"
    assert args["message.acked"] == f"ClientInfo:{client_id} Message:hooks/t"
    assert args["client.disconnected"] == f"ClientInfo:{client_id} 'normal'"
    assert args["session.terminated"] == f"'{client_id}' 'normal' SessionSnapshot:{client_id}"


def test_refused_connect_is_answered_on_client_connack(node: Any, clients: Clients) -> None:
    client_id = uid("banned")
    with node.api() as api:
        assert api.post("/banned", json={"who": client_id, "as": "client_id"}
                        ).json()["code"] == 0
    refused = clients(node, client_id, connect=False)
    assert refused.connect(expect_rc=None)[0] != 0
    seen = settle(node, client_id, "client.connack")
    assert seen == [("client.connect", f"ClientInfo:{client_id}"),
                    ("client.connack", f"ClientInfo:{client_id} <ReasonCode.BANNED: 138>")]


def test_persistent_sessions_resumed_taken_over_and_discarded(node: Any,
                                                              clients: Clients) -> None:
    client_id = uid("p")
    first = clients(node, client_id, clean_session=False)
    first.disconnect()
    # Offline, kept: no session.terminated.
    assert settle(node, client_id, "client.disconnected")[-1][0] == "client.disconnected"
    assert "session.terminated" not in points(node, client_id)
    before = len(calls(node, client_id))
    second = clients(node, client_id, clean_session=False)
    assert [p for p, _ in settle(node, client_id, "session.resumed")[before:]] == [
        "client.connect", "client.authenticate", "session.resumed", "client.connack",
        "client.connected"]
    # A live persistent session claimed by a new connection: taken over, resumed.
    before = len(calls(node, client_id))
    clients(node, client_id, clean_session=False)
    second.wait_disconnected()
    seen = [p for p, _ in settle(node, client_id, "client.connected")[before:]]
    assert seen == ["client.connect", "client.authenticate", "client.disconnected",
                    "session.takeovered", "session.resumed", "client.connack",
                    "client.connected"]
    # A clean start discards it.
    before = len(calls(node, client_id))
    clients(node, client_id, clean_session=True)
    seen = [p for p, _ in settle(node, client_id, "client.connected")[before:]]
    assert seen == ["client.connect", "client.authenticate", "client.disconnected",
                    "session.discarded", "session.created", "client.connack",
                    "client.connected"]
