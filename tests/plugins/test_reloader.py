"""emqx_reloader: a plugin module written into the reloader's directory is
loaded through the API, changed on disk and seen doing the new thing by a real
subscriber; broken versions leave the old code running."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.api import err, ok
from helpers.clients import PahoClient, uid, wait_until
from helpers.ctl import ctl, ctl_json

from tests.conftest import API_SETTINGS

NODE = "/nodes/starling@127.0.0.1"
MODULE = "stamper"

#: A plugin that prefixes the payload of every message on stamp/... with a tag.
PLUGIN = '''
from starling.broker import HookPoint
from starling.plugins import Plugin, PluginInfo

TAG = {tag!r}


class Stamper(Plugin):
    async def load(self):
        {load_extra}
        self.context.broker.hooks.add(HookPoint.MESSAGE_PUBLISH, self.stamp)

    async def unload(self):
        self.context.broker.hooks.remove(HookPoint.MESSAGE_PUBLISH, self.stamp)

    def stamp(self, message):
        if message.topic.startswith("stamp/"):
            message.payload = TAG + message.payload
        return None


def register(registry):
    registry.add(PluginInfo("stamper", "Stamps payloads"))
    registry.implement("stamper", Stamper, ())
'''


def version(tag: bytes, load_extra: str = "pass") -> str:
    return textwrap.dedent(PLUGIN).format(tag=tag, load_extra=load_extra)


@pytest.fixture
def setup(make_node: Any, tmp_path: Path) -> tuple[Any, Path]:
    plugin_dir = tmp_path / "plugin-modules"
    plugin_dir.mkdir()
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "emqx_reloader.conf").write_text(
        f"reloader.interval = 100ms\nreloader.plugin_dir = {plugin_dir}\n")
    (plugin_dir / f"{MODULE}.py").write_text(version(b"v1:"))
    node = make_node({**API_SETTINGS, "plugins.etc_dir": str(etc)})
    return node, plugin_dir


@pytest.fixture
def subscriber(setup: tuple[Any, Path]) -> Iterator[PahoClient]:
    node, _ = setup
    client = PahoClient(node.host, node.port)
    client.connect()
    client.subscribe("stamp/#", 1)
    yield client
    client.client.disconnect()
    client.client.loop_stop()


def roundtrip(node: Any, subscriber: PahoClient) -> bytes:
    """Publish on stamp/... and return the payload the subscriber gets."""
    publisher = PahoClient(node.host, node.port)
    publisher.connect()
    try:
        topic = "stamp/" + uid("m")
        publisher.publish(topic, b"hello", qos=1)
        return subscriber.get(timeout=10, topic=topic).payload
    finally:
        publisher.client.disconnect()
        publisher.client.loop_stop()


def module_status(api: Any) -> dict[str, Any]:
    modules = ok(api.get(f"{NODE}/reloader"))["modules"]
    return next((m for m in modules if m["module"] == MODULE), {})


def alarm_ids(api: Any) -> set[str]:
    present = ok(api.get("/alarms/present"))
    return {a["id"] for entry in present for a in entry["alarms"]}


def test_changed_module_is_reloaded_and_broken_versions_keep_the_old_code(
        setup: tuple[Any, Path], subscriber: PahoClient) -> None:
    node, plugin_dir = setup
    path = plugin_dir / f"{MODULE}.py"
    with node.api() as api:
        err(api.get(f"{NODE}/reloader"), 404, 404, "Not Found: plugin emqx_reloader is not loaded")
        ok(api.put(f"{NODE}/plugins/emqx_reloader/load"))
        wait_until(lambda: module_status(api).get("status") == "ok", timeout=10,
                   message="the module imported")
        plugins = {p["name"]: p for p in ok(api.get(f"{NODE}/plugins/"))}
        assert plugins["stamper"] == {"name": "stamper", "version": plugins["stamper"]["version"],
                                      "description": "Stamps payloads", "active": False,
                                      "type": "feature"}
        assert roundtrip(node, subscriber) == b"hello"  # listed, not loaded yet
        ok(api.put(f"{NODE}/plugins/stamper/load"))
        assert roundtrip(node, subscriber) == b"v1:hello"

        # New code on disk: the loaded plugin now runs it.
        path.write_text(version(b"v2:"))
        wait_until(lambda: module_status(api).get("reloads") == 1, timeout=10,
                   message="the module reloaded")
        assert roundtrip(node, subscriber) == b"v2:hello"

        # A syntax error: logged, shown, alarmed; the v2 code keeps running.
        path.write_text(version(b"v3:") + "\ndef broken(:\n")
        status = wait_until(lambda: (s := module_status(api)).get("status") == "error" and s,
                            timeout=10, message="the failed reload reported")
        assert "SyntaxError" in status["error"] and status["reloads"] == 1
        assert "reloader:stamper" in alarm_ids(api)
        node.wait_log(r"reloader: .*stamper\.py: SyntaxError.*the old code stays in place")
        assert roundtrip(node, subscriber) == b"v2:hello"
        assert {p["name"]: p for p in ok(api.get(f"{NODE}/plugins/"))}["stamper"]["active"]

        # An exception while importing: the same.
        path.write_text(version(b"v3:") + "\nraise RuntimeError('no database today')\n")
        wait_until(lambda: "no database today" in (module_status(api).get("error") or ""),
                   timeout=10, message="the import error reported")
        assert roundtrip(node, subscriber) == b"v2:hello"

        # New code that imports but whose load() fails: the old code is loaded again.
        path.write_text(version(b"v3:", "raise ValueError('bad settings')"))
        wait_until(lambda: "bad settings" in (module_status(api).get("error") or ""),
                   timeout=10, message="the failed load reported")
        assert "failed to load the new code" in module_status(api)["error"]
        assert roundtrip(node, subscriber) == b"v2:hello"
        plugins = {p["name"]: p for p in ok(api.get(f"{NODE}/plugins/"))}
        assert plugins["stamper"]["active"] is True

        # A good version again: it runs, the error and the alarm are gone.
        path.write_text(version(b"v3:"))
        wait_until(lambda: module_status(api).get("reloads") == 2, timeout=10,
                   message="the fixed module reloaded")
        status = module_status(api)
        assert status["status"] == "ok" and status["error"] is None
        assert "reloader:stamper" not in alarm_ids(api)
        assert roundtrip(node, subscriber) == b"v3:hello"
    node.wait_log(r"reloader: reloaded .*stamper\.py \(plugins: stamper\)")
    log_file = node.data_dir / "reloader.log"
    assert "SyntaxError" in log_file.read_text()  # reloader.logfile


def test_manual_reload_through_ctl_and_restart(setup: tuple[Any, Path],
                                              subscriber: PahoClient) -> None:
    node, plugin_dir = setup
    with node.api() as api:
        # A long interval: only the manual trigger reloads.
        ok(api.put(f"{NODE}/plugin_configs/emqx_reloader", json={"reloader.interval": "1h"}))
        ok(api.put(f"{NODE}/plugins/emqx_reloader/load"))
        wait_until(lambda: module_status(api).get("status") == "ok", timeout=10,
                   message="the module imported")
        ok(api.put(f"{NODE}/plugins/stamper/load"))
    status = ctl_json(node, "reloader", "status")
    assert [m["module"] for m in status["modules"]] == [MODULE]
    assert status["interval"] == 3600.0

    (plugin_dir / f"{MODULE}.py").write_text(version(b"manual:"))
    done = ctl(node, "reloader", "reload")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{MODULE}: reloaded"
    assert roundtrip(node, subscriber) == b"manual:hello"
    # Unchanged: nothing to do, unless the module is named.
    assert ctl(node, "reloader", "reload").stdout.strip() == "no module changed"
    assert ctl_json(node, "reloader", "reload", MODULE)[0]["result"] == "reloaded"

    (plugin_dir / f"{MODULE}.py").write_text("def register(registry):\n    1/0\n")
    failed = ctl(node, "reloader", "reload", MODULE)
    assert failed.returncode == 1
    assert "ZeroDivisionError" in failed.stderr and "old code is kept" in failed.stderr
    missing = ctl(node, "reloader", "reload", "nosuchmodule")
    assert missing.returncode == 1 and "no module nosuchmodule" in missing.stderr
    assert roundtrip(node, subscriber) == b"manual:hello"

    # After a restart the directory's plugin that was loaded is loaded again.
    (plugin_dir / f"{MODULE}.py").write_text(version(b"after-restart:"))
    subscriber.client.disconnect()
    node.stop()
    node.start()
    fresh = PahoClient(node.host, node.port)
    fresh.connect()
    fresh.subscribe("stamp/#", 1)
    try:
        with node.api() as api:
            wait_until(lambda: any(p["name"] == "stamper" and p["active"]
                                   for p in ok(api.get(f"{NODE}/plugins/"))),
                       timeout=10, message="stamper loaded again after the restart")
        assert roundtrip(node, fresh) == b"after-restart:hello"
    finally:
        fresh.client.disconnect()
        fresh.client.loop_stop()
