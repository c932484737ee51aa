"""The plugin API as a user meets it: the bundled example plugin, and a
third-party plugin found through the `starling.plugins` entry point group."""

from __future__ import annotations

import uuid

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import API_SETTINGS
from tests.helpers.plugins import install_plugin


def connect_and_leave(port: int, client_id: str) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish("tpl/" + client_id, b"hi", qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_template_plugin_hooks_attach_on_load_and_go_on_unload(make_node) -> None:
    node = make_node(dict(API_SETTINGS))
    with node.api() as api:
        assert api.put("/nodes/starling@127.0.0.1/plugins/emqx_plugin_template/load"
                       ).json()["code"] == 0
        first = "tpl-" + uuid.uuid4().hex[:8]
        connect_and_leave(node.port, first)
        node.wait_log(rf"template: client {first} connected")
        node.wait_log(rf"template: publish to tpl/{first}")
        assert api.put("/nodes/starling@127.0.0.1/plugins/emqx_plugin_template/unload"
                       ).json()["code"] == 0
        second = "tpl-" + uuid.uuid4().hex[:8]
        connect_and_leave(node.port, second)
        # The second client's publish was acknowledged, so the node has handled
        # its CONNECT: no template line may name it.
        with pytest.raises(AssertionError):
            node.wait_log(rf"template: client {second} connected", timeout=1.0)


DEMO = '''
import logging
from starling.broker import HookPoint
from starling.plugins import Plugin, PluginInfo

log = logging.getLogger("demo_plugin")


class Demo(Plugin):
    async def load(self):
        self.context.broker.hooks.add(HookPoint.CLIENT_CONNECTED, self.seen)

    async def unload(self):
        self.context.broker.hooks.remove(HookPoint.CLIENT_CONNECTED, self.seen)

    def seen(self, channel):
        log.warning("demo plugin saw %s", channel.client_id)


def register(registry):
    registry.add(PluginInfo("demo_plugin", "A third-party demo plugin"))
    registry.implement("demo_plugin", Demo, ())
'''


def test_entry_point_plugin_is_listed_and_loads(make_node, tmp_path, monkeypatch) -> None:
    install_plugin(tmp_path / "site", monkeypatch, "demo_plugin", DEMO)
    node = make_node(dict(API_SETTINGS))
    with node.api() as api:
        names = {p["name"]: p for p in api.get("/nodes/starling@127.0.0.1/plugins/").json()["data"]}
        assert names["demo_plugin"]["active"] is False
        assert names["demo_plugin"]["description"] == "A third-party demo plugin"
        assert api.put("/nodes/starling@127.0.0.1/plugins/demo_plugin/load").json()["code"] == 0
        client_id = "demo-" + uuid.uuid4().hex[:8]
        connect_and_leave(node.port, client_id)
        node.wait_log(rf"demo plugin saw {client_id}")
