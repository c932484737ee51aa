"""/plugins and /nodes/:node/plugin_configs against a live node, and the plugin
registry itself (load/unload/reload semantics, config validation, the seams the
plugin system builds on)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.api import err, ok
from helpers.clients import uid

from starling.broker import Broker, HookPoint
from starling.mgmt import fields
from starling.plugins import (
    PLUGIN_TYPES,
    SEED_PLUGINS,
    ConfigKey,
    Plugin,
    PluginContext,
    PluginError,
    PluginRegistry,
)

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "emqx-rest-api-v3.md"

#: The seed's /plugins example: (name, description, active) in its order.
SEED_LIST = [
    ("emqx_auth_clientid", "EMQ X Authentication with ClientId/Password"),
    ("emqx_auth_http", "EMQ X Authentication/ACL with HTTP API"),
    ("emqx_auth_jwt", "EMQ X Authentication with JWT"),
    ("emqx_auth_ldap", "EMQ X Authentication/ACL with LDAP"),
    ("emqx_auth_mongo", "EMQ X Authentication/ACL with MongoDB"),
    ("emqx_auth_mysql", "EMQ X Authentication/ACL with MySQL"),
    ("emqx_auth_pgsql", "EMQ X Authentication/ACL with PostgreSQL"),
    ("emqx_auth_redis", "EMQ X Authentication/ACL with Redis"),
    ("emqx_auth_username", "EMQ X Authentication with Username and Password"),
    ("emqx_coap", "EMQ X CoAP Gateway"),
    ("emqx_dashboard", "EMQ X Web Dashboard"),
    ("emqx_delayed_publish", "EMQ X Delayed Publish"),
    ("emqx_lua_hook", "EMQ X Lua Hooks"),
    ("emqx_lwm2m", "EMQ X LwM2M Gateway"),
    ("emqx_management", "EMQ X Management API and CLI"),
    ("emqx_plugin_template", "EMQ X Plugin Template"),
    ("emqx_psk_file", "EMQX PSK Plugin from File"),
    ("emqx_recon", "EMQ X Recon Plugin"),
    ("emqx_reloader", "EMQ X Reloader Plugin"),
    ("emqx_retainer", "EMQ X Retainer"),
    ("emqx_rule_engine", "EMQ X Rule Engine"),
    ("emqx_sn", "EMQ X MQTT SN Plugin"),
    ("emqx_statsd", "Statsd for EMQ X"),
    ("emqx_stomp", "EMQ X Stomp Protocol Plugin"),
    ("emqx_web_hook", "EMQ X Webhook Plugin"),
]
#: Plugins implemented in Starling (the others answer not_implemented).
IMPLEMENTED_PLUGINS = {"emqx_management", "emqx_plugin_template", "emqx_auth_clientid", "emqx_auth_username",
                       "emqx_dashboard", "emqx_psk_file", "emqx_rule_engine"}
IMPLEMENTED_PLUGINS |= {"emqx_auth_http", "emqx_auth_jwt", "emqx_auth_ldap"}
IMPLEMENTED_PLUGINS |= {"emqx_web_hook", "emqx_statsd"}  # feature plugins (webhook-metrics)
IMPLEMENTED_PLUGINS |= {"emqx_retainer", "emqx_delayed_publish"}
IMPLEMENTED_PLUGINS |= {"emqx_recon", "emqx_reloader", "emqx_lua_hook"}
IMPLEMENTED_PLUGINS |= {"emqx_auth_redis", "emqx_auth_mysql", "emqx_auth_pgsql", "emqx_auth_mongo"}
IMPLEMENTED_PLUGINS |= {"emqx_coap", "emqx_lwm2m"}  # gateways (docs/gateways.md)
IMPLEMENTED_PLUGINS |= {"emqx_sn", "emqx_stomp"}  # protocol gateways (docs/gateways.md)
NOT_IMPLEMENTED = [name for name, _ in SEED_LIST if name not in IMPLEMENTED_PLUGINS]


def plugin_path(node: Any, plugin: str, verb: str) -> str:
    return f"/nodes/{node.name}/plugins/{plugin}/{verb}"


def by_name(plugins: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in plugins}


# -- listing -------------------------------------------------------------------------------

def test_seed_list_matches_the_spec_document() -> None:
    """SEED_LIST (and the registry's catalogue) is the seed's example, read from the spec."""
    if not SPEC.exists():
        pytest.skip("the seed document is not next to the repository")
    section = SPEC.read_text().split("### List all Plugins of Cluster", 1)[1]
    section = section.split("### List all Plugins of a Node", 1)[0]
    names = re.findall(r'"name": "([^"]+)"', section)
    descriptions = re.findall(r'"description": "([^"]+)"', section)
    assert list(zip(names, descriptions, strict=True)) == SEED_LIST
    assert [(p.name, p.description) for p in SEED_PLUGINS] == SEED_LIST


def test_cluster_list_has_every_seed_plugin(api_node: Any, api: httpx.Client) -> None:
    data = ok(api.get("/plugins/"))
    assert len(data) == 1
    assert data[0]["node"] == api_node.name
    plugins = data[0]["plugins"]
    assert [(p["name"], p["description"]) for p in plugins] == SEED_LIST
    for plugin in plugins:
        assert set(plugin) == {"name", "version", "description", "active", "type"}
        assert isinstance(plugin["active"], bool)
        assert plugin["type"] in PLUGIN_TYPES
        assert re.fullmatch(r"v\d+\.\d+\.\d+.*", plugin["version"]), plugin
    types = {p["name"]: p["type"] for p in plugins}
    assert types["emqx_auth_clientid"] == "auth"
    assert types["emqx_coap"] == "protocol"
    assert types["emqx_retainer"] == "feature"


def test_only_implemented_plugins_are_active(api: httpx.Client) -> None:
    """emqx_management (the API itself), emqx_dashboard, emqx_recon, emqx_retainer and
    emqx_rule_engine (loaded by default, as the seed shows) are active. Nothing whose implementation has not landed
    pretends to be."""
    plugins = by_name(ok(api.get("/plugins/"))[0]["plugins"])
    assert plugins["emqx_management"]["active"] is True
    assert [n for n, p in plugins.items() if p["active"]] == ["emqx_dashboard",
                                                             "emqx_management",
                                                             "emqx_recon",
                                                             "emqx_retainer",
                                                             "emqx_rule_engine"]


def test_node_list_equals_cluster_entry(api_node: Any, api: httpx.Client) -> None:
    cluster = ok(api.get("/plugins/"))[0]["plugins"]
    assert ok(api.get(f"/nodes/{api_node.name}/plugins/")) == cluster
    assert ok(api.get(f"/nodes/{api_node.name}/plugins")) == cluster


def test_unknown_node(api: httpx.Client) -> None:
    for path in ("/nodes/other@host/plugins/", "/nodes/other@host/plugins/emqx_management/load",
                 "/nodes/other@host/plugin_configs/emqx_management"):
        method = "GET" if path.endswith(("plugins/", "emqx_management")) else "PUT"
        resp = api.request(method, path)
        assert resp.status_code == 404, resp.text
        assert "other@host" in resp.json()["message"]


# -- load / unload / reload ----------------------------------------------------------------

def test_every_seed_plugin_is_implemented() -> None:
    """A listed plugin without code answers not_implemented (the registry tests below
    check that answer); every plugin of the seed's list has its code now."""
    assert NOT_IMPLEMENTED == []


def test_every_unimplemented_plugin_refuses_to_load(api_node: Any, api: httpx.Client) -> None:
    for plugin in NOT_IMPLEMENTED:
        err(api.put(plugin_path(api_node, plugin, "load")), 400, 102, "not_implemented")
    active = [p["name"] for p in ok(api.get(f"/nodes/{api_node.name}/plugins/"))
              if p["active"]]
    assert active == ["emqx_dashboard", "emqx_management", "emqx_recon", "emqx_retainer",
                      "emqx_rule_engine"]


def test_unloading_an_inactive_plugin_is_not_started(api_node: Any, api: httpx.Client) -> None:
    err(api.put(plugin_path(api_node, "emqx_delayed_publish", "unload")), 409, 102,
        "not_started")


def test_loading_the_running_management_plugin_is_already_started(
        api_node: Any, api: httpx.Client) -> None:
    err(api.put(plugin_path(api_node, "emqx_management", "load")), 409, 102,
        "already_started")


def test_management_cannot_be_unloaded_through_itself(api_node: Any,
                                                      api: httpx.Client) -> None:
    err(api.put(plugin_path(api_node, "emqx_management", "unload")), 409, 102, "in_use")
    assert ok(api.get("/brokers/"))  # still serving


def test_reload_management_keeps_it_active(api_node: Any, api: httpx.Client) -> None:
    resp = api.put(plugin_path(api_node, "emqx_management", "reload"))
    assert resp.status_code == 200 and resp.json() == {"code": 0}
    assert by_name(ok(api.get("/plugins/"))[0]["plugins"])["emqx_management"]["active"]
    assert api_node.wait_log(r"plugin emqx_management loaded")


@pytest.mark.parametrize("verb", ["load", "unload", "reload"])
def test_unknown_plugin_is_404(api_node: Any, api: httpx.Client, verb: str) -> None:
    err(api.put(plugin_path(api_node, "emqx_no_such_plugin", verb)), 404, 102, "not_found")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_plugin_actions_are_put_only(api_node: Any, api: httpx.Client, method: str) -> None:
    resp = api.request(method, plugin_path(api_node, "emqx_management", "load"))
    assert resp.status_code == 405, resp.text


# -- plugin_configs ------------------------------------------------------------------------

def configs_path(node: Any, plugin: str) -> str:
    return f"/nodes/{node.name}/plugin_configs/{plugin}"


def test_management_plugin_config(api_node: Any, api: httpx.Client) -> None:
    items = ok(api.get(configs_path(api_node, "emqx_management")))
    assert items == [{"key": "management.max_row_limit", "value": "10000",
                      "desc": items[0]["desc"], "required": True}]
    assert items[0]["desc"]


def test_unimplemented_plugin_has_no_config_yet(tmp_path: Path) -> None:
    # every seed plugin is implemented in a node: a bare registry lists them without code
    registry, _, _ = make_registry(tmp_path)
    assert registry.config_items("emqx_lwm2m") == []
    with pytest.raises(PluginError) as refused:
        registry.validate("emqx_lwm2m", {"lwm2m.port": "5683"})
    assert refused.value.reason == "unknown_key" and "lwm2m.port" in str(refused.value)


def test_unknown_plugin_config_is_404(api_node: Any, api: httpx.Client) -> None:
    err(api.get(configs_path(api_node, "emqx_nope")), 404, 102, "not_found")
    err(api.put(configs_path(api_node, "emqx_nope"), json={}), 404, 102, "not_found")


def test_max_row_limit_changes_the_default_page_size(api_node: Any, api: httpx.Client,
                                                     mqtt: Any) -> None:
    """PUT plugin_configs validates, stores and reloads emqx_management: the new
    management.max_row_limit is at once the default `_limit` of paginated lists."""
    clients = [mqtt(uid("rows")) for _ in range(3)]
    path = configs_path(api_node, "emqx_management")
    try:
        assert ok(api.put(path, json={"management.max_row_limit": "2"})) is None
        assert ok(api.get(path))[0]["value"] == "2"
        resp = api.get("/connections/")
        body = resp.json()
        assert body["meta"]["limit"] == 2
        assert len(body["data"]) == 2
        assert body["meta"]["count"] >= len(clients)
        # an explicit _limit still wins
        assert api.get("/connections/", params={"_limit": 100}).json()["meta"]["limit"] == 100
        # still active after the reload the change caused
        assert by_name(ok(api.get("/plugins/"))[0]["plugins"])["emqx_management"]["active"]
    finally:
        ok(api.put(path, json={"management.max_row_limit": "10000"}))
    assert api.get("/connections/").json()["meta"]["limit"] == 10000


@pytest.mark.parametrize(("body", "code"), [
    ({"management.max_row_limit": "many"}, 108),
    ({"management.max_row_limit": "0"}, 108),
    ({"management.max_row_limit": "-5"}, 108),
    ({"management.max_row_limit": ["1"]}, 108),
    ({"management.no_such_key": "1"}, 102),
    ({"management.max_row_limit": "5", "bogus": "1"}, 102),
])
def test_bad_plugin_config_is_refused_and_nothing_changes(
        api_node: Any, api: httpx.Client, body: dict[str, Any], code: int) -> None:
    path = configs_path(api_node, "emqx_management")
    err(api.put(path, json=body), 400, code)
    assert ok(api.get(path))[0]["value"] == "10000"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3"])
def test_plugin_config_body_must_be_an_object(api_node: Any, api: httpx.Client,
                                              body: bytes) -> None:
    resp = api.put(configs_path(api_node, "emqx_management"), content=body,
                   headers={"content-type": "application/json"})
    err(resp, 400, 108)


def test_numbers_are_accepted_as_values(api_node: Any, api: httpx.Client) -> None:
    path = configs_path(api_node, "emqx_management")
    try:
        ok(api.put(path, json={"management.max_row_limit": 500}))
        assert ok(api.get(path))[0]["value"] == "500"
    finally:
        ok(api.put(path, json={"management.max_row_limit": "10000"}))


def test_max_row_limit_from_the_configuration(make_node: Any) -> None:
    node = make_node({"management.bind": "127.0.0.1:0", "api.default_app_secret": "s",
                      "management.max_row_limit": "7"})
    with node.api(auth=("admin", "s")) as client:
        assert ok(client.get(configs_path(node, "emqx_management")))[0]["value"] == "7"
        assert client.get("/connections/").json()["meta"]["limit"] == 7


# -- the registry on its own ---------------------------------------------------------------

class Recorder(Plugin):
    """A plugin that attaches a hook when loaded and removes it when unloaded."""

    events: list[tuple[str, int]]

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.callback = lambda *args: None

    async def load(self) -> None:
        if self.settings["demo.fail"]:
            raise RuntimeError("refusing to load")
        self.context.broker.hooks.add(HookPoint.CLIENT_CONNECTED, self.callback)
        Recorder.events.append(("load", self.settings["demo.level"]))

    async def unload(self) -> None:
        self.context.broker.hooks.remove(HookPoint.CLIENT_CONNECTED, self.callback)
        Recorder.events.append(("unload", self.settings["demo.level"]))


def level(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 9:
        raise ValueError("must be 0..9")
    return number


def flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError("true or false")
    return value == "true"


SCHEMA = (ConfigKey("demo.level", "1", "a level", level),
          ConfigKey("demo.fail", "false", "fail to load", flag, required=False))


def make_registry(tmp_path: Path) -> tuple[PluginRegistry, Broker, list[tuple[str, str]]]:
    Recorder.events = []
    broker = Broker()
    registry = PluginRegistry(PluginContext(broker, "n@h", tmp_path), version="v9.9.9")
    registry.implement("emqx_plugin_template", Recorder, SCHEMA)
    changes: list[tuple[str, str]] = []
    registry.watch(lambda name, what: changes.append((name, what)))
    return registry, broker, changes


def test_registry_load_unload_reload(tmp_path: Path) -> None:
    registry, broker, changes = make_registry(tmp_path)
    name = "emqx_plugin_template"

    async def scenario() -> None:
        assert not broker.hooks.has(HookPoint.CLIENT_CONNECTED)
        await registry.load(name)
        assert broker.hooks.has(HookPoint.CLIENT_CONNECTED)
        assert fields.plugin(registry.get(name)) == {
            "name": name, "version": "v9.9.9", "description": "EMQ X Plugin Template",
            "active": True, "type": "feature"}
        with pytest.raises(PluginError) as info:
            await registry.load(name)
        assert info.value.reason == "already_started"
        await registry.reload(name)
        assert Recorder.events == [("load", 1), ("unload", 1), ("load", 1)]
        await registry.unload(name)
        assert not broker.hooks.has(HookPoint.CLIENT_CONNECTED)
        with pytest.raises(PluginError) as info:
            await registry.unload(name)
        assert info.value.reason == "not_started"
        await registry.reload(name)  # an inactive plugin is loaded by reload (EMQ X)
        assert registry.active_names() == [name]
        await registry.stop()
        assert registry.active_names() == []
        assert not broker.hooks.has(HookPoint.CLIENT_CONNECTED)

    asyncio.run(scenario())
    assert changes == [(name, "loaded"), (name, "loaded"), (name, "unloaded"), (name, "loaded")]


def test_registry_refusals(tmp_path: Path) -> None:
    registry, _, _ = make_registry(tmp_path)

    async def reason(call: Any) -> str:
        with pytest.raises(PluginError) as info:
            await call
        return info.value.reason

    async def scenario() -> None:
        assert await reason(registry.load("emqx_nope")) == "not_found"
        assert await reason(registry.unload("emqx_nope")) == "not_found"
        assert await reason(registry.reload("emqx_nope")) == "not_found"
        assert await reason(registry.load("emqx_retainer")) == "not_implemented"
        assert await reason(registry.reload("emqx_retainer")) == "not_implemented"
        assert await reason(registry.unload("emqx_retainer")) == "not_started"
        assert not registry.get("emqx_retainer").active

    asyncio.run(scenario())


def test_registry_config_reloads_an_active_plugin(tmp_path: Path) -> None:
    registry, _, changes = make_registry(tmp_path)
    name = "emqx_plugin_template"

    async def scenario() -> None:
        await registry.configure(name, {"demo.level": "3"})  # inactive: stored only
        assert Recorder.events == []
        await registry.load(name)
        await registry.configure(name, {"demo.level": 5})
        assert Recorder.events == [("load", 3), ("unload", 3), ("load", 5)]
        assert registry.config_items(name) == [
            {"key": "demo.level", "value": "5", "desc": "a level", "required": True},
            {"key": "demo.fail", "value": "false", "desc": "fail to load", "required": False}]
        for bad, why in (({"demo.level": "12"}, "bad_value"), ({"demo.lvl": "1"}, "unknown_key"),
                         ({"demo.level": "2", "x": "1"}, "unknown_key")):
            with pytest.raises(PluginError) as info:
                await registry.configure(name, bad)
            assert info.value.reason == why
        assert registry.config_items(name)[0]["value"] == "5"  # all or nothing
        # A config the plugin cannot load with is rolled back; the plugin stays up.
        with pytest.raises(PluginError) as info:
            await registry.configure(name, {"demo.fail": "true"})
        assert info.value.reason == "load_failed"
        assert registry.get(name).active
        assert registry.config_items(name)[1]["value"] == "false"

    asyncio.run(scenario())
    assert (name, "configured") in changes


def test_failed_load_leaves_the_plugin_inactive(tmp_path: Path) -> None:
    registry, broker, _ = make_registry(tmp_path)
    name = "emqx_plugin_template"

    async def scenario() -> None:
        await registry.configure(name, {"demo.fail": "true"})
        with pytest.raises(PluginError) as info:
            await registry.load(name)
        assert info.value.reason == "load_failed"
        assert "refusing to load" in info.value.detail
        assert not registry.get(name).active
        await registry.start([name, "emqx_retainer"])  # logged, not raised
        assert registry.active_names() == []

    asyncio.run(scenario())
    assert not broker.hooks.has(HookPoint.CLIENT_CONNECTED)


def test_catalogue_is_the_seed_with_types() -> None:
    assert [p.name for p in SEED_PLUGINS] == [name for name, _ in SEED_LIST]
    auth = {p.name for p in SEED_PLUGINS if p.type == "auth"}
    assert auth == {n for n, _ in SEED_LIST if n.startswith("emqx_auth_")}
    assert {p.name for p in SEED_PLUGINS if p.type == "protocol"} == {
        "emqx_coap", "emqx_lwm2m", "emqx_sn", "emqx_stomp"}
