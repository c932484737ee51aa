"""emqx_auth_mongo.  No MongoDB server can be installed on the test machines
(Debian bookworm has none, and the PyPI / npm packages that provide one download
mongod at install or run time), so what is tested is what runs for real without
one: the EMQ X config keys through the REST API, the selectors and ACL documents
as the plugin turns them into queries and decisions, the options pymongo's real
client is built with, and a node whose MongoDB is unreachable (a closed port):
requests answered by ``on_error``, the alarm raised, and cleared on unload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from db_auth_support import (
    NODE,
    NOT_AUTHORIZED,
    OK,
    alarms,
    configure,
    connect_rc,
    connected,
    metrics,
    node_settings,
    suback,
    unload,
    wait_alarm,
)
from helpers.api import err, ok
from helpers.servers import free_port

from starling.plugins.auth.mongo import (
    MongoAuthPlugin,
    acl_answer,
    parse_selector,
    selector_filter,
)

PLUGIN = "emqx_auth_mongo"
ALARM = "emqx_auth_mongo_server_down"


@pytest.fixture
def node(make_node: Any, tmp_path: Path) -> Any:
    return make_node(node_settings(tmp_path))


# -- config, as EMQ X's etc/plugins/emqx_auth_mongo.conf ---------------------------------------

def test_defaults_are_emqx_defaults(node: Any) -> None:
    with node.api() as api:
        items = {i["key"]: i["value"] for i in ok(api.get(f"/nodes/{NODE}/plugin_configs/{PLUGIN}"))}
    assert items["auth.mongo.server"] == "127.0.0.1:27017"
    assert items["auth.mongo.type"] == "single"
    assert items["auth.mongo.pool"] == "8"
    assert items["auth.mongo.database"] == "mqtt"
    assert items["auth.mongo.auth_query.collection"] == "mqtt_user"
    assert items["auth.mongo.auth_query.password_field"] == "password"
    assert items["auth.mongo.auth_query.password_hash"] == "sha256"
    assert items["auth.mongo.auth_query.selector"] == "username=%u"
    assert items["auth.mongo.super_query"] == "on"
    assert items["auth.mongo.super_query.super_field"] == "is_superuser"
    assert items["auth.mongo.acl_query.collection"] == "mqtt_acl"
    assert items["auth.mongo.query_timeout"] == "5s"


def test_emqx_conf_lines_are_accepted(node: Any) -> None:
    """The keys of EMQ X's file, commented examples included."""
    with node.api() as api:
        ok(api.put(f"/nodes/{NODE}/plugin_configs/{PLUGIN}", json={
            "auth.mongo.topology.pool_size": "1", "auth.mongo.topology.max_overflow": "0",
            "auth.mongo.topology.connect_timeout_ms": "20000",
            "auth.mongo.acl_query.selector.1": "username=%u,clientid=%c",
            "auth.mongo.acl_query.selector.2": "username=$all",
            "auth.mongo.auth_query.password_field": "password,salt",
            "auth.mongo.auth_query.password_hash": "salt,sha256",
            "auth.mongo.w_mode": "safe", "auth.mongo.r_mode": "slave_ok",
            "auth.mongo.type": "rs", "auth.mongo.rs_set_name": "rs0",
            "auth.mongo.server": "10.0.0.1:27017,10.0.0.2:27018"}))


@pytest.mark.parametrize(("key", "value"), [
    ("auth.mongo.auth_query.selector", "username"),
    ("auth.mongo.type", "cluster"),
    ("auth.mongo.auth_query.password_field", "a,b,c"),
    ("auth.mongo.auth_query.password_hash", "sha3"),
    ("auth.mongo.server", "host:notaport"),
    ("auth.mongo.on_error", "maybe"),
    ("auth.mongo.query_timeout", "0s"),
])
def test_bad_values_are_refused(node: Any, key: str, value: str) -> None:
    with node.api() as api:
        body = err(api.put(f"/nodes/{NODE}/plugin_configs/{PLUGIN}", json={key: value}), 400)
    assert key in body["message"]


# -- selectors and ACL documents ---------------------------------------------------------------

def test_selectors_become_filters() -> None:
    values = {"u": "alice", "c": "dev-1", "a": "10.0.0.1"}
    assert selector_filter(parse_selector("username=%u"), values) == {"username": "alice"}
    assert selector_filter(parse_selector("username=%u, clientid=%c"), values) == {
        "username": "alice", "clientid": "dev-1"}
    assert selector_filter(parse_selector("username=$all"), values) == {"username": "$all"}
    # client input is a plain string value, never an operator document
    tricky = {"u": '{"$ne": null}', "c": "x"}
    assert selector_filter(parse_selector("username=%u"), tricky) == {
        "username": '{"$ne": null}'}
    # no user name: nothing is looked up (not documents lacking the field)
    assert selector_filter(parse_selector("username=%u"), {"u": None, "c": "x"}) is None


def test_acl_documents_decide_as_emqx() -> None:
    values = {"u": "alice", "c": "dev-1"}
    docs = [{"username": "alice", "publish": ["out/%u/#"], "subscribe": ["in/%c"],
             "pubsub": ["both/#"]}]
    assert acl_answer([], "publish", "x", values) is None  # no document: ignore
    assert acl_answer(docs, "publish", "out/alice/1", values) == "allow"
    assert acl_answer(docs, "subscribe", "out/alice/1", values) == "deny"
    assert acl_answer(docs, "subscribe", "in/dev-1", values) == "allow"
    assert acl_answer(docs, "publish", "both/x", values) == "allow"
    assert acl_answer(docs, "subscribe", "both/x", values) == "allow"
    assert acl_answer(docs, "publish", "other", values) == "deny"
    # the filters of every document found count ($or of the selectors)
    docs.append({"username": "$all", "publish": ["shared/#"]})
    assert acl_answer(docs, "publish", "shared/1", values) == "allow"


def test_real_client_accepts_the_options(tmp_path: Path) -> None:
    """pymongo's real AsyncMongoClient is built from what the settings say."""
    from pymongo import AsyncMongoClient

    settings = {k.key: k.parse(k.default) for k in MongoAuthPlugin.SCHEMA if "$" not in k.key}
    settings |= {"auth.mongo.login": "emqx", "auth.mongo.password": "pw",
                 "auth.mongo.auth_source": "admin", "auth.mongo.r_mode": "slave_ok",
                 "auth.mongo.topology.heartbeat_frequency_ms": 5000,
                 "auth.mongo.topology.pool_size": 1}
    plugin = MongoAuthPlugin.__new__(MongoAuthPlugin)
    plugin.settings = settings
    plugin.timeout = 5.0
    options = plugin.client_options()
    assert options["host"] == ["127.0.0.1:27017"]
    assert options["maxPoolSize"] == 8
    assert options["directConnection"] is True
    assert options["authSource"] == "admin"
    assert options["heartbeatFrequencyMS"] == 5000
    assert "pool_size" not in options
    client: Any = AsyncMongoClient(**options)
    assert client.options.pool_options.max_pool_size == 8
    assert client.options.server_selection_timeout == 5.0


# -- a node whose MongoDB is not there ----------------------------------------------------------

def test_unreachable_server(node: Any) -> None:
    port = free_port()  # nothing listens there
    settings = {"auth.mongo.server": f"127.0.0.1:{port}", "auth.mongo.query_timeout": "1s",
                "auth.mongo.password": "mongo-secret", "auth.mongo.login": "emqx",
                "auth.mongo.on_error": "ignore"}
    configure(node, PLUGIN, settings)
    wait_alarm(node, ALARM)
    desc = alarms(node)[ALARM]
    assert f"127.0.0.1:{port}" in desc and "mongo-secret" not in desc
    before = metrics(node)["auth/mongo/ignore"]
    assert connect_rc(node, "alice", "pw") == OK  # ignored: anonymous let in
    assert metrics(node)["auth/mongo/ignore"] == before + 1
    with connected(node, "alice", "pw") as client:
        assert suback(client, "open/x") == 1  # ACL ignored: the file's rule
    configure(node, PLUGIN, {**settings, "auth.mongo.on_error": "deny"})
    before = metrics(node)["auth/mongo/failure"]
    assert connect_rc(node, "alice", "pw") == NOT_AUTHORIZED
    assert metrics(node)["auth/mongo/failure"] == before + 1
    unload(node, PLUGIN)
    assert ALARM not in alarms(node)
    assert connect_rc(node, "alice", "pw") == OK
