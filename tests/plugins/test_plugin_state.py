"""The plugin system's pieces on their own: pattern config keys (``auth.client.$id.clientid``),
the plugin store tables, the persisted active set and configs (`PluginPersistence`),
EMQ X conf files, and the auth plugins' hook attached at load and gone at unload."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from starling.broker import Broker, HookPoint
from starling.plugins import (
    ConfFileError,
    PluginContext,
    PluginError,
    PluginPersistence,
    PluginRegistry,
    PluginStore,
    parse_conf,
    plugin_names,
)
from starling.plugins.auth import ClientIdAuthPlugin, UsernameAuthPlugin

CID = "emqx_auth_clientid"
USER = "emqx_auth_username"


class Backing:
    """A node store's kv rows, as the journal would write them."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}

    def load(self, table: str) -> dict[str, str]:
        return {k: v for (t, k), v in self.rows.items() if t == table}

    def save(self, table: str, key: str, value: str) -> None:
        self.rows[(table, key)] = value

    def delete(self, table: str, key: str) -> None:
        self.rows.pop((table, key), None)

    def store(self) -> PluginStore:
        return PluginStore(self.load, self.save, self.delete)


def make(tmp_path: Path, backing: Backing | None = None,
         defaults: tuple[str, ...] = ("emqx_management",),
         etc_dir: Path | None = None) -> tuple[PluginRegistry, PluginPersistence, Broker]:
    backing = backing or Backing()
    store = backing.store()
    broker = Broker()
    registry = PluginRegistry(PluginContext(broker, "n@h", tmp_path, store=store),
                              version="v1.0.0")
    for auth in (ClientIdAuthPlugin, UsernameAuthPlugin):
        registry.implement(auth.SPEC.plugin, auth, auth.SCHEMA)
    return registry, PluginPersistence(registry, store, defaults, etc_dir), broker


# -- pattern keys --------------------------------------------------------------------------

def test_pattern_keys(tmp_path: Path) -> None:
    registry, _, _ = make(tmp_path)

    async def scenario() -> None:
        await registry.configure(CID, {"auth.client.1.clientid": "a",
                                       "auth.client.1.password": "p",
                                       "auth.client.lab.clientid": "b"})
        entry = registry.get(CID)
        settings = entry.settings()
        assert settings["auth.client.1.clientid"] == "a"
        assert settings["auth.client.lab.clientid"] == "b"
        assert "auth.client.$id.clientid" not in settings
        keys = [i["key"] for i in registry.config_items(CID)]
        assert keys == ["auth.client.password_hash", "auth.client.1.clientid",
                        "auth.client.lab.clientid", "auth.client.1.password"]
        assert all(not i["required"] for i in registry.config_items(CID)[1:])
        for bad in ({"auth.client.clientid": "x"}, {"auth.client.1.other": "x"},
                    {"auth.client..clientid": "x"}, {"auth.client.1.2.clientid": "x"}):
            with pytest.raises(PluginError) as info:
                await registry.configure(CID, bad)
            assert info.value.reason == "unknown_key", bad
        await registry.configure(CID, {"auth.client.lab.clientid": ""})  # removes it
        assert "auth.client.lab.clientid" not in registry.get(CID).config
        # a new implementation keeps the set values
        registry.implement(CID, ClientIdAuthPlugin, ClientIdAuthPlugin.SCHEMA)
        assert registry.get(CID).config["auth.client.1.clientid"] == "a"

    asyncio.run(scenario())


def test_preset_neither_reloads_nor_announces(tmp_path: Path) -> None:
    registry, _, _ = make(tmp_path)
    changes: list[tuple[str, str]] = []
    registry.watch(lambda name, what: changes.append((name, what)))
    registry.preset(CID, {"auth.client.password_hash": "md5"})
    assert registry.get(CID).config["auth.client.password_hash"] == "md5"
    with pytest.raises(PluginError):
        registry.preset(CID, {"auth.client.password_hash": "rot13"})
    assert changes == []


# -- the auth plugins' hook ----------------------------------------------------------------

def test_auth_hook_attached_at_load_and_gone_at_unload(tmp_path: Path) -> None:
    registry, _, broker = make(tmp_path)

    async def scenario() -> None:
        assert not broker.hooks.has(HookPoint.CLIENT_AUTHENTICATE)
        await registry.load(CID)
        await registry.load(USER)
        assert len(broker.hooks.callbacks(HookPoint.CLIENT_AUTHENTICATE)) == 2
        instance = registry.get(CID).instance
        assert isinstance(instance, ClientIdAuthPlugin)
        assert await instance.table.add("dev", "pw", instance.hash_type)
        await registry.unload(CID)
        assert len(broker.hooks.callbacks(HookPoint.CLIENT_AUTHENTICATE)) == 1
        await registry.unload(USER)
        assert not broker.hooks.has(HookPoint.CLIENT_AUTHENTICATE)
        await registry.load(CID)  # a new instance finds the entries
        again = registry.get(CID).instance
        assert isinstance(again, ClientIdAuthPlugin) and again is not instance
        assert again.table.keys() == ["dev"]
        await registry.stop()
        assert not broker.hooks.has(HookPoint.CLIENT_AUTHENTICATE)

    asyncio.run(scenario())


# -- the store tables ----------------------------------------------------------------------

def test_plugin_store_writes_through_and_reads_back() -> None:
    backing = Backing()
    table = backing.store().table("t")
    table.put("a", {"x": 1})
    table.put("b", [1, "é"])
    assert table.delete("b") and not table.delete("b")
    assert json.loads(backing.rows[("t", "a")]) == {"x": 1}
    backing.rows[("t", "bad")] = "{not json"
    again = backing.store().table("t")
    assert again.items() == [("a", {"x": 1})]  # the damaged row is skipped


def test_memory_only_store_keeps_rows_between_asks() -> None:
    store = PluginStore()
    store.table("t").put("k", 1)
    assert store.table("t").get("k") == 1


# -- persistence ---------------------------------------------------------------------------

def test_active_set_and_configs_survive(tmp_path: Path) -> None:
    backing = Backing()
    registry, state, _ = make(tmp_path, backing, defaults=("emqx_management", CID))
    assert state.restore() == ["emqx_management", CID]

    async def first_life() -> None:
        await registry.start([CID])
        state.attach()
        assert backing.load("plugins") == {}  # the boot set is no deviation
        await registry.load(USER)
        await registry.unload(CID)
        await registry.configure(USER, {"auth.user.password_hash": "sha",
                                        "auth.user.1.username": "u",
                                        "auth.user.1.password": "p"})
        await registry.stop()

    asyncio.run(first_life())
    rows = {k: json.loads(v) for k, v in backing.load("plugins").items()}
    assert rows[CID] == {"active": False}
    assert rows[USER]["active"] is True
    assert rows[USER]["config"]["auth.user.password_hash"] == "sha"

    registry, state, _ = make(tmp_path, backing, defaults=("emqx_management", CID))
    assert state.restore() == ["emqx_management", USER]
    config = registry.get(USER).config
    assert config["auth.user.password_hash"] == "sha"
    assert config["auth.user.1.username"] == "u"

    async def second_life() -> None:
        state.attach()
        await registry.load(CID)  # back to the default: the row says nothing more
        await registry.stop()

    asyncio.run(second_life())
    assert CID not in backing.load("plugins")


def test_stored_config_replaces_the_conf_file(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / f"{CID}.conf").write_text("auth.client.password_hash = md5\n"
                                     "auth.client.1.clientid = a\n"
                                     "auth.client.1.password = b\n"
                                     "auth.client.2.clientid = c\n")
    backing = Backing()
    registry, state, _ = make(tmp_path, backing, etc_dir=etc)
    state.restore()
    assert registry.get(CID).config["auth.client.password_hash"] == "md5"
    assert registry.get(CID).config["auth.client.2.clientid"] == "c"
    backing.save("plugins", CID, json.dumps({"config": {
        "auth.client.password_hash": "sha512", "auth.client.1.clientid": "a",
        "auth.client.1.password": "b"}}))
    backing.save("plugins", "emqx_gone", json.dumps({"active": True}))
    backing.save("plugins", USER, json.dumps({"config": {"auth.user.password_hash": "x"}}))
    registry, state, _ = make(tmp_path, backing, etc_dir=etc)
    with caplog.at_level(logging.WARNING):
        assert state.restore() == ["emqx_management"]
    config = registry.get(CID).config
    assert config["auth.client.password_hash"] == "sha512"
    assert "auth.client.2.clientid" not in config  # removed through the API since
    assert registry.get(USER).config["auth.user.password_hash"] == "sha256"  # bad: skipped
    assert "emqx_gone" in caplog.text and USER in caplog.text


def test_conf_file_with_a_bad_line_is_refused(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / f"{USER}.conf").write_text("auth.user.password_hash sha256\n")
    _, state, _ = make(tmp_path, etc_dir=etc)
    with pytest.raises(PluginError) as info:
        state.restore()
    assert "expected 'key = value'" in str(info.value)


def test_parse_conf() -> None:
    assert parse_conf('## comment\n\n a.b = 1 \nc.d="quoted value"\ne =\n') == {
        "a.b": "1", "c.d": "quoted value", "e": ""}
    with pytest.raises(ConfFileError):
        parse_conf("just words\n")


def test_plugin_names() -> None:
    assert plugin_names("a, b  c,,d") == ["a", "b", "c", "d"]
    assert plugin_names("") == []
