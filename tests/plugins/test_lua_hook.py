"""emqx_lua_hook: Lua scripts from the node's script directory change what real
MQTT clients see; broken scripts do not break the broker or the other scripts."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers.api import err, ok
from helpers.clients import Clients, uid
from helpers.ctl import ctl, ctl_json

from tests.conftest import API_SETTINGS

NODE = "/nodes/starling@127.0.0.1"
LUA = f"{NODE}/lua_hook"

REWRITE = """
function on_message_publish(clientid, username, topic, payload, qos, retain)
  if topic == "lua/drop" then
    return false
  end
  if topic == "lua/move" then
    return "lua/moved", payload, qos, retain
  end
  if string.sub(topic, 1, 4) == "lua/" then
    return topic, "{prefix}" .. payload .. "|" .. clientid .. "|" .. username, qos, retain
  end
end

function register_hook()
  return "on_message_publish"
end
"""

BROKEN_AT_RUNTIME = """
function on_message_publish(clientid, username, topic, payload, qos, retain)
  error("this script always fails")
end

function on_client_connected(clientid, username, returncode)
  local t = nil
  return t.field
end

function register_hook()
  return "on_message_publish", "on_client_connected"
end
"""

OBSERVER = """
function on_client_connected(clientid, username, returncode)
  print("observed connected", clientid, returncode)
end

function on_session_subscribed(clientid, username, topic)
  print("observed subscribed", clientid, topic)
end

function on_client_disconnected(clientid, username, reason)
  print("observed disconnected", clientid, reason)
end

function register_hook()
  return "on_client_connected", "on_session_subscribed", "on_client_disconnected",
         "on_not_a_hook"
end
"""

SANDBOX_AND_LIMITS = """
function on_message_publish(clientid, username, topic, payload, qos, retain)
  if topic == "lua/sandbox" then
    return topic, tostring(io) .. "," .. tostring(os.execute) .. "," .. tostring(require)
                  .. "," .. tostring(python) .. "," .. type(os.time()), qos, retain
  end
  if topic == "lua/forever" then
    while true do end
  end
end

function register_hook()
  return "on_message_publish"
end
"""

ACL = """
function on_client_check_acl(clientid, username, peerhost, password, topic, pubsub)
  if topic == "lua/denied" and pubsub == "publish" then
    return "deny"
  end
  return "ignore"
end

function register_hook()
  return "on_client_check_acl"
end
"""


def write(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.lua").write_text(textwrap.dedent(source))


@pytest.fixture
def lua_node(make_node: Any, tmp_path: Path) -> tuple[Any, Path]:
    """A node whose data dir has the scripts directory (EMQ X's data/scripts)."""
    data_dir = tmp_path / "node"
    scripts = data_dir / "scripts"
    scripts.mkdir(parents=True)
    write(scripts, "a_rewrite", REWRITE.replace("{prefix}", "lua:"))
    write(scripts, "b_broken", BROKEN_AT_RUNTIME)
    write(scripts, "c_syntax", "function register_hook( return end")
    write(scripts, "d_observer", OBSERVER)
    write(scripts, "e_sandbox", SANDBOX_AND_LIMITS)
    write(scripts, "f_acl", ACL)
    node = make_node(dict(API_SETTINGS), data_dir=data_dir)
    with node.api() as api:
        ok(api.put(f"{NODE}/plugins/emqx_lua_hook/load"))
    return node, scripts


def scripts_by_name(api: Any) -> dict[str, dict[str, Any]]:
    return {s["script"]: s for s in ok(api.get(LUA))["scripts"]}


def test_scripts_rewrite_and_drop_messages_a_subscriber_receives(
        lua_node: tuple[Any, Path], clients: Clients) -> None:
    node, _ = lua_node
    sub = clients(node)
    sub.subscribe("lua/#", 1)
    pub = clients(node, client_id=uid("pub"), username="alice", password="pw")
    pub.publish("lua/a", b"hello", qos=1)
    got = sub.get(timeout=10)
    assert (got.topic, got.payload) == ("lua/a", f"lua:hello|{pub.client_id}|alice".encode())
    pub.publish("lua/drop", b"gone", qos=1)
    pub.publish("lua/move", b"moved", qos=1)
    got = sub.get(timeout=10)  # in order from one publisher: the dropped one never came
    assert (got.topic, got.payload) == ("lua/moved", b"moved")
    assert sub.drain() == []
    with node.api() as api:
        scripts = scripts_by_name(api)
        assert scripts["a_rewrite"]["status"] == "loaded"
        assert scripts["a_rewrite"]["hooks"] == ["on_message_publish"]
        assert scripts["a_rewrite"]["dropped"] == 1 and scripts["a_rewrite"]["rewritten"] == 2
        # Unloading the plugin removes every script's hooks.
        ok(api.put(f"{NODE}/plugins/emqx_lua_hook/unload"))
        err(api.get(LUA), 404, 404, "Not Found: plugin emqx_lua_hook is not loaded")
    pub.publish("lua/a", b"plain", qos=1)
    assert sub.get(timeout=10).payload == b"plain"


def test_a_failing_script_is_isolated_and_reported(lua_node: tuple[Any, Path],
                                                   clients: Clients) -> None:
    node, _ = lua_node
    sub = clients(node)
    sub.subscribe("lua/#", 1)
    pub = clients(node, username="bob", password="pw")
    for i in range(3):
        pub.publish(f"lua/{i}", b"m", qos=1)
    # b_broken raises on every call; a_rewrite (and delivery) go on.
    assert [m.payload for m in sub.get_many(3, timeout=10)] == \
        [f"lua:m|{pub.client_id}|bob".encode()] * 3
    with node.api() as api:
        scripts = scripts_by_name(api)
    broken = scripts["b_broken"]
    assert broken["status"] == "loaded" and broken["errors"] >= 3 + 2  # + two connects
    assert any(text in broken["last_error"] for text in (
        "on_message_publish: b_broken:3: this script always fails",
        "on_client_connected: b_broken:8: attempt to index a nil value"))
    syntax = scripts["c_syntax"]
    assert syntax["status"] == "error" and "expected near 'return'" in syntax["error"]
    node.wait_log(r"lua hook b_broken: on_\w+ failed: ")
    node.wait_log(r"lua hook .*c_syntax\.lua not loaded: c_syntax:1:")
    # An endless loop is cut off by the instruction limit; the message goes through.
    pub.publish("lua/forever", b"still delivered", qos=1)
    assert sub.get(timeout=10).payload.startswith(b"lua:still delivered")
    with node.api() as api:
        limited = scripts_by_name(api)["e_sandbox"]
    assert "instruction limit exceeded" in limited["last_error"]


def test_observers_sandbox_and_acl(lua_node: tuple[Any, Path],
                                   clients: Clients) -> None:
    node, _ = lua_node
    client_id = uid("watched")
    sub = clients(node, client_id=client_id)
    sub.subscribe("lua/#", 1)
    node.wait_log(rf"lua d_observer: observed connected\t{client_id}\t0")
    node.wait_log(rf"lua d_observer: observed subscribed\t{client_id}\tlua/#")
    with node.api() as api:
        assert scripts_by_name(api)["d_observer"]["ignored"] == ["on_not_a_hook"]
    pub = clients(node)
    pub.publish("lua/sandbox", b"", qos=1)
    # a_rewrite runs first (file order), then e_sandbox replaces the payload.
    assert sub.get(timeout=10).payload == b"nil,nil,nil,nil,number"
    pub.publish("lua/denied", b"no", qos=1)  # the ACL script denies it
    pub.publish("lua/allowed", b"yes", qos=1)
    assert sub.get(timeout=10).topic == "lua/allowed"
    sub.client.disconnect()
    node.wait_log(rf"lua d_observer: observed disconnected\t{client_id}\t")


def test_scripts_are_reloaded_enabled_and_disabled_through_ctl(
        lua_node: tuple[Any, Path], clients: Clients) -> None:
    node, scripts = lua_node
    sub = clients(node)
    sub.subscribe("lua/#", 1)
    pub = clients(node, username="u", password="pw")

    def payload() -> bytes:
        topic = "lua/" + uid("t")
        pub.publish(topic, b"x", qos=1)
        return sub.get(timeout=10, topic=topic).payload

    assert payload().startswith(b"lua:x")
    write(scripts, "a_rewrite", REWRITE.replace("{prefix}", "v2:"))
    assert payload().startswith(b"lua:x")  # not yet: scripts reload on demand
    done = ctl(node, "luahook", "reload", "a_rewrite")
    assert done.returncode == 0 and "Reload a_rewrite successfully." in done.stdout
    assert payload().startswith(b"v2:x")

    # A broken new version is refused; the loaded one stays.
    write(scripts, "a_rewrite", "function register_hook() return 'on_message_publish'")
    failed = ctl(node, "luahook", "reload", "a_rewrite")
    assert failed.returncode == 1 and "reload a_rewrite failed" in failed.stderr
    assert payload().startswith(b"v2:x")
    write(scripts, "a_rewrite", REWRITE.replace("{prefix}", "v3:"))

    assert ctl(node, "luahook", "disable", "a_rewrite").returncode == 0
    assert (scripts / "a_rewrite.lua.x").exists() and not (scripts / "a_rewrite.lua").exists()
    assert payload() == b"x"
    listed = {s["script"]: s for s in ctl_json(node, "luahook", "list")["scripts"]}
    assert listed["a_rewrite"]["status"] == "disabled"
    assert ctl(node, "luahook", "enable", "a_rewrite.lua").returncode == 0
    assert payload().startswith(b"v3:x")

    # Reloading the directory picks up new scripts too.
    write(scripts, "z_last", REWRITE.replace("{prefix}", "z:").replace(
        "function register_hook", "function register_hook_unused"))
    assert ctl(node, "luahook", "reload").returncode == 0
    with node.api() as api:
        listed = scripts_by_name(api)
        assert listed["z_last"]["status"] == "error"
        assert "no register_hook()" in listed["z_last"]["error"]
        err(api.put(f"{LUA}/scripts/nosuch/load"), 404, 404, "script nosuch not found")
        err(api.put(f"{LUA}/scripts/..%2Fetc/load"), 400, 108)
        unloaded = ok(api.put(f"{LUA}/scripts/a_rewrite/unload"))
        assert unloaded is None
        assert scripts_by_name(api)["a_rewrite"]["status"] == "unloaded"
    assert payload() == b"x"


def test_without_lupa_loading_says_what_is_missing(make_node: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shim = tmp_path / "no-lupa"
    shim.mkdir()
    (shim / "lupa.py").write_text("raise ImportError('lupa is not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]))
    node = make_node(dict(API_SETTINGS))
    with node.api() as api:
        body = err(api.put(f"{NODE}/plugins/emqx_lua_hook/load"), 400, 102)
        assert body["message"] == ("load_failed: emqx_lua_hook needs the lupa "
                                   "package: pip install 'starling-mqtt[lua]'")
        plugins = {p["name"]: p for p in ok(api.get(f"{NODE}/plugins/"))}
        assert plugins["emqx_lua_hook"]["active"] is False
