"""emqx_auth_clientid and emqx_auth_username against live nodes: real paho
clients with right, wrong and unknown credentials, per plugin and hash type;
`mqtt.allow_anonymous = false`; unload removes the check and load restores it;
a hash-type change through `plugin_configs` applies without a restart; entries,
the loaded set and plugin configs survive a restart; the auth metrics move; the
REST routes' shapes and errors (facts §10, docs/auth.md)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers.clients import MQTTv311, PahoClient, uid, wait_until
from helpers.packets import RawClient
from paho.mqtt import client as paho
from paho.mqtt.client import MQTTv5
from paho.mqtt.enums import CallbackAPIVersion

#: paho reports a 3.1.1 CONNACK code as the MQTT 5.0 reason code it stands for.
OK = 0
BAD_PASSWORD = 0x86  # CONNACK 4 under 3.1.1
NOT_AUTHORIZED = 0x87  # CONNACK 5 under 3.1.1


@dataclass(frozen=True)
class Kind:
    """One of the two plugins, as a test sees it."""

    plugin: str
    field: str  # "clientid" | "username"
    metrics: str
    existed: str
    not_existed: str
    hash_key: str

    @property
    def path(self) -> str:
        return f"/auth_{self.field}"

    def item(self, key: str) -> str:
        return f"{self.path}/{quote(key, safe='')}"

    def connect(self, node: Any, key: str, password: str | None,
                protocol: int = MQTTv311) -> int:
        """Connect a paho client identified by `key` (its client id, or its user name
        with a fresh client id); the CONNACK code (paho's 5.0 form)."""
        if self.field == "clientid":
            return connect(node, key, "someone" if password is not None else None, password,
                           protocol)
        return connect(node, uid("c"), key, password, protocol)


CLIENTID = Kind("emqx_auth_clientid", "clientid", "auth/clientid", "exitsted", "noexitsted",
                "auth.client.password_hash")
USERNAME = Kind("emqx_auth_username", "username", "auth/username", "existed", "noexisted",
                "auth.user.password_hash")
KINDS = [pytest.param(CLIENTID, id="clientid"), pytest.param(USERNAME, id="username")]


def connect(node: Any, client_id: str, username: str | None, password: str | None,
            protocol: int = MQTTv311) -> int:
    if protocol == MQTTv5:
        return connect_v5(node, client_id, username, password)
    client = PahoClient(node.host, node.port, client_id=client_id, protocol=protocol)
    if username is not None or password is not None:
        client.client.username_pw_set(username, password)
    try:
        return client.connect(expect_rc=None)[0]
    finally:
        client.close()


def connect_v5(node: Any, client_id: str, username: str | None, password: str | None,
               timeout: float = 5.0) -> int:
    """A paho MQTT 5.0 client (PahoClient speaks 3.x): the CONNACK reason code."""
    done = threading.Event()
    codes: list[int] = []

    def on_connect(client: Any, userdata: Any, flags: Any, reason_code: Any,
                   properties: Any) -> None:
        codes.append(int(reason_code.value))
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTv5)
    client.reconnect_delay_set(min_delay=60, max_delay=60)
    client.on_connect = on_connect
    if username is not None or password is not None:
        client.username_pw_set(username, password)
    client.connect(node.host, node.port)
    client.loop_start()
    try:
        assert done.wait(timeout), f"{client_id}: no CONNACK within {timeout}s"
        return codes[0]
    finally:
        client.disconnect()
        client.loop_stop()
        with contextlib.suppress(Exception):
            client._reset_sockets()  # as PahoClient.close: no ResourceWarning later


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == 0, body
    return body.get("data")


def err(resp: httpx.Response, status: int, code: int, message: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    return str(body["message"])


def plugin_call(api: httpx.Client, node: Any, plugin: str, verb: str) -> httpx.Response:
    return api.put(f"/nodes/{node.name}/plugins/{plugin}/{verb}")


def active(api: httpx.Client, plugin: str) -> bool:
    return {p["name"]: p["active"] for p in ok(api.get("/plugins/"))[0]["plugins"]}[plugin]


def metrics(api: httpx.Client, node: Any) -> dict[str, int]:
    return ok(api.get(f"/nodes/{node.name}/metrics/"))  # type: ignore[no-any-return]


def configs_path(node: Any, plugin: str) -> str:
    return f"/nodes/{node.name}/plugin_configs/{plugin}"


@pytest.fixture(scope="module")
def node(api_node: Any) -> Iterator[Any]:
    """A node with the API on; the auth plugins start unloaded (not in the seed set)."""
    yield api_node
    api_node.stop()


@pytest.fixture
def api(node: Any) -> Iterator[httpx.Client]:
    with node.api() as client:
        yield client


@pytest.fixture
def loaded(request: pytest.FixtureRequest, node: Any, api: httpx.Client) -> Iterator[Kind]:
    """The test's plugin loaded (with the default hash), unloaded afterwards."""
    kind: Kind = request.param
    ok(plugin_call(api, node, kind.plugin, "load"))
    yield kind
    api.put(configs_path(node, kind.plugin), json={kind.hash_key: "sha256"})
    if active(api, kind.plugin):
        ok(plugin_call(api, node, kind.plugin, "unload"))


def add(api: httpx.Client, kind: Kind, key: str, password: str) -> None:
    ok(api.post(kind.path, json={kind.field: key, "password": password}))


# -- the chain -----------------------------------------------------------------------------

@pytest.mark.parametrize("loaded", KINDS, indirect=True)
def test_right_wrong_unknown_and_metrics(node: Any, api: httpx.Client, loaded: Kind) -> None:
    kind = loaded
    key = uid("k")
    add(api, kind, key, "s3cret")
    before = metrics(api, node)
    assert kind.connect(node, key, "s3cret") == OK
    assert kind.connect(node, key, "wrong") == BAD_PASSWORD
    assert kind.connect(node, key, None) == BAD_PASSWORD  # a known key needs its password
    # unknown: ignored, and allow_anonymous (default true) lets it in
    assert kind.connect(node, uid("unknown"), "whatever") == OK
    # MQTT 5.0: 0x86
    assert kind.connect(node, key, "wrong", protocol=MQTTv5) == BAD_PASSWORD
    assert kind.connect(node, key, "s3cret", protocol=MQTTv5) == OK
    after = metrics(api, node)
    assert after[f"{kind.metrics}/success"] - before[f"{kind.metrics}/success"] == 2
    assert after[f"{kind.metrics}/failure"] - before[f"{kind.metrics}/failure"] == 3
    assert after[f"{kind.metrics}/ignore"] - before[f"{kind.metrics}/ignore"] >= 1
    assert after["packets/connack/auth_error"] - before["packets/connack/auth_error"] == 3


@pytest.mark.parametrize("loaded", [pytest.param(CLIENTID, id="clientid")], indirect=True)
def test_wrong_password_is_connack_4_on_the_wire(node: Any, api: httpx.Client,
                                                loaded: Kind) -> None:
    key = uid("raw")
    add(api, loaded, key, "pw")
    with RawClient(node.host, node.port) as c:
        c.connect(key, expect_rc=4, username="u", password="nope")
        c.expect_closed()
    with RawClient(node.host, node.port) as c:
        c.connect(key, expect_rc=0, username="u", password="pw")


@pytest.mark.parametrize("loaded", KINDS, indirect=True)
def test_unload_removes_the_check_and_load_restores_it(node: Any, api: httpx.Client,
                                                       loaded: Kind) -> None:
    kind = loaded
    key = uid("k")
    add(api, kind, key, "right")
    assert kind.connect(node, key, "wrong") == BAD_PASSWORD
    ok(plugin_call(api, node, kind.plugin, "unload"))
    assert not active(api, kind.plugin)
    before = metrics(api, node)
    assert kind.connect(node, key, "wrong") == OK  # nobody checks it any more
    after = metrics(api, node)
    for outcome in ("success", "failure", "ignore"):  # the hook is gone, not just quiet
        assert after[f"{kind.metrics}/{outcome}"] == before[f"{kind.metrics}/{outcome}"]
    # its routes answer 404 while it is unloaded, but stay listed
    err(api.get(kind.path), 404, 404)
    err(api.post(kind.path, json={kind.field: uid("x"), "password": "p"}), 404, 404)
    err(api.get(kind.item(key)), 404, 404)
    listed = {(r["method"], r["path"]) for r in ok(api.get("/"))}
    assert ("GET", kind.path) in listed
    ok(plugin_call(api, node, kind.plugin, "load"))
    assert kind.connect(node, key, "wrong") == BAD_PASSWORD  # entries kept
    assert kind.connect(node, key, "right") == OK


def test_both_plugins_in_one_chain(node: Any, api: httpx.Client) -> None:
    """A client id entry decides for a client whose user name is unknown, and the other
    way round; a refusal by either stops the chain."""
    for kind in (CLIENTID, USERNAME):
        ok(plugin_call(api, node, kind.plugin, "load"))
    try:
        cid, user = uid("cid"), uid("user")
        add(api, CLIENTID, cid, "cpw")
        add(api, USERNAME, user, "upw")
        assert connect(node, cid, uid("nobody"), "cpw") == OK
        assert connect(node, uid("c"), user, "upw") == OK
        # both know the client: the first loaded (emqx_auth_clientid) decides
        assert connect(node, cid, user, "cpw") == OK
        assert connect(node, cid, uid("nobody"), "upw") == BAD_PASSWORD
        assert connect(node, uid("c"), user, "cpw") == BAD_PASSWORD
    finally:
        for kind in (CLIENTID, USERNAME):
            ok(plugin_call(api, node, kind.plugin, "unload"))


# -- hash types ----------------------------------------------------------------------------

HASHES = [
    ("plain", lambda h, pw: h == pw),
    ("md5", lambda h, pw: len(h) == 32),
    ("sha", lambda h, pw: len(h) == 40),
    ("sha256", lambda h, pw: len(h) == 64),
    ("sha512", lambda h, pw: len(h) == 128),
    ("pbkdf2", lambda h, pw: len(h) == 40),  # pbkdf2,sha256,1000,20
    ("pbkdf2,sha512,50,32", lambda h, pw: len(h) == 64),
    ("bcrypt,4", lambda h, pw: h.startswith("$2b$04$")),
]


@pytest.mark.parametrize("loaded", KINDS, indirect=True)
def test_every_hash_type_applied_without_restart(node: Any, api: httpx.Client,
                                                  loaded: Kind) -> None:
    """PUT plugin_configs changes the hash of new entries at once (the plugin is
    reloaded, not the node); every entry keeps working with the hash it was made with."""
    kind = loaded
    made: list[tuple[str, str]] = []
    for hash_type, looks_right in HASHES:
        ok(api.put(configs_path(node, kind.plugin), json={kind.hash_key: hash_type}))
        items = {i["key"]: i["value"] for i in ok(api.get(configs_path(node, kind.plugin)))}
        assert items[kind.hash_key] == hash_type
        key, password = uid(hash_type.split(",")[0]), f"pw-{hash_type}-é"
        add(api, kind, key, password)
        stored = ok(api.get(kind.item(key)))
        assert stored[kind.field] == key
        assert looks_right(stored["password"], password), (hash_type, stored)
        assert all(c in "0123456789abcdef" for c in stored["password"]) or \
            hash_type in ("plain", "bcrypt,4")
        made.append((key, password))
    assert active(api, kind.plugin)
    for key, password in made:
        assert kind.connect(node, key, password) == OK, key
        assert kind.connect(node, key, password + "x") == BAD_PASSWORD, key


@pytest.mark.parametrize("value", ["sha1", "pbkdf2,sha256", "bcrypt,99", "md5,1", ""])
def test_bad_hash_type_is_refused(node: Any, api: httpx.Client, value: str) -> None:
    path = configs_path(node, CLIENTID.plugin)
    err(api.put(path, json={CLIENTID.hash_key: value}), 400, 108)
    items = {i["key"]: i["value"] for i in ok(api.get(path))}
    assert items[CLIENTID.hash_key] == "sha256"


def test_sha256_entry_is_salt_then_hex_of_sha256(node: Any, api: httpx.Client) -> None:
    """The lookup shows hex(sha256(salt ‖ password)) without the (random, 4-byte)
    salt, as EMQ X: two entries with the same password differ, neither is the bare
    sha256 of the password.  (tests/plugins/test_passwords.py checks the digests.)"""
    ok(plugin_call(api, node, CLIENTID.plugin, "load"))
    try:
        a, b = uid("a"), uid("b")
        add(api, CLIENTID, a, "same")
        add(api, CLIENTID, b, "same")
        ha = ok(api.get(CLIENTID.item(a)))["password"]
        hb = ok(api.get(CLIENTID.item(b)))["password"]
        assert len(ha) == len(hb) == 64 and ha != hb
        assert ha != hashlib.sha256(b"same").hexdigest()  # salted
    finally:
        ok(plugin_call(api, node, CLIENTID.plugin, "unload"))


# -- REST ----------------------------------------------------------------------------------

@pytest.mark.parametrize("loaded", KINDS, indirect=True)
def test_rest_shapes_and_errors(node: Any, api: httpx.Client, loaded: Kind) -> None:
    kind = loaded
    key = uid("rest") + "/with space"
    add(api, kind, key, "p1")
    assert key in ok(api.get(kind.path))
    assert set(ok(api.get(kind.item(key)))) == {kind.field, "password"}
    # duplicate, missing, wrong types
    err(api.post(kind.path, json={kind.field: key, "password": "x"}), 409, 102, kind.existed)
    err(api.post(kind.path, json={kind.field: uid("m")}), 400, 107)
    err(api.post(kind.path, json={"password": "x"}), 400, 107)
    err(api.post(kind.path, json={kind.field: "", "password": "x"}), 400, 107)
    err(api.post(kind.path, json={kind.field: uid("m"), "password": ""}), 400, 107)
    err(api.post(kind.path, json={kind.field: 5, "password": "x"}), 400, 108)
    err(api.post(kind.path, json={kind.field: uid("m"), "password": ["x"]}), 400, 108)
    # lookup of an unknown key
    err(api.get(kind.item(uid("none"))), 404, 404)
    # update
    err(api.put(kind.item(uid("none")), json={"password": "x"}), 404, 102, kind.not_existed)
    err(api.put(kind.item(key), json={}), 400, 107)
    old_hash = ok(api.get(kind.item(key)))["password"]
    assert ok(api.put(kind.item(key), json={"password": "p2"})) is None
    assert ok(api.get(kind.item(key)))["password"] != old_hash
    assert kind.connect(node, key, "p1") == BAD_PASSWORD
    assert kind.connect(node, key, "p2") == OK
    # delete, also of an unknown key
    assert api.delete(kind.item(key)).json() == {"code": 0}
    assert api.delete(kind.item(key)).json() == {"code": 0}
    assert key not in ok(api.get(kind.path))
    assert kind.connect(node, key, "p1") == OK  # unknown again: anonymous


def test_routes_are_listed_first_in_seed_order(api: httpx.Client) -> None:
    names = [r["name"] for r in ok(api.get("/"))][:10]
    assert names == ["list_clientid", "lookup_clientid", "add_clientid", "update_clientid",
                     "delete_clientid", "list_username", "lookup_username", "add_username",
                     "update_username", "delete_username"]


# -- allow_anonymous = false ------------------------------------------------------------

API = {"management.bind": "127.0.0.1:0", "api.default_app_id": "admin",
       "api.default_app_secret": "test-secret"}


def test_allow_anonymous_false(make_node: Any) -> None:
    node = make_node({**API, "mqtt.allow_anonymous": "false",
                      "plugins.loaded": "emqx_management,emqx_auth_username"})
    with node.api() as api:
        assert active(api, USERNAME.plugin)  # from plugins.loaded
        add(api, USERNAME, "alice", "pw")
        assert USERNAME.connect(node, "alice", "pw") == OK
        assert USERNAME.connect(node, "alice", "bad") == BAD_PASSWORD
        assert USERNAME.connect(node, "mallory", "pw") == NOT_AUTHORIZED  # all ignored
        assert connect(node, uid("c"), None, None) == NOT_AUTHORIZED  # no user name
        assert USERNAME.connect(node, "mallory", "pw", protocol=MQTTv5) == NOT_AUTHORIZED
        with RawClient(node.host, node.port) as c:
            c.connect(uid("raw"), expect_rc=5, username="mallory", password="pw")
        # without the plugin nobody gets in
        ok(plugin_call(api, node, USERNAME.plugin, "unload"))
        assert USERNAME.connect(node, "alice", "pw") == NOT_AUTHORIZED


# -- restart -------------------------------------------------------------------------------

def test_entries_loaded_set_and_configs_survive_a_restart(make_node: Any,
                                                          tmp_path: Path) -> None:
    data = tmp_path / "restart"
    node = make_node(API, data_dir=data)
    with node.api() as api:
        for kind in (CLIENTID, USERNAME):
            ok(plugin_call(api, node, kind.plugin, "load"))
        ok(api.put(configs_path(node, USERNAME.plugin), json={USERNAME.hash_key: "md5"}))
        add(api, CLIENTID, "dev-1", "cpw")
        add(api, USERNAME, "bob", "upw")
        md5_hash = ok(api.get(USERNAME.item("bob")))["password"]
        assert len(md5_hash) == 32
        ok(plugin_call(api, node, CLIENTID.plugin, "unload"))
        ok(plugin_call(api, node, "emqx_dashboard", "unload"))  # in plugins.loaded
    node.stop()

    node = make_node(API, data_dir=data)
    with node.api() as api:
        assert active(api, USERNAME.plugin)
        assert not active(api, CLIENTID.plugin)
        assert not active(api, "emqx_dashboard")
        assert active(api, "emqx_management")
        items = {i["key"]: i["value"] for i in ok(api.get(configs_path(node, USERNAME.plugin)))}
        assert items[USERNAME.hash_key] == "md5"
        assert ok(api.get(USERNAME.path)) == ["bob"]
        assert ok(api.get(USERNAME.item("bob")))["password"] == md5_hash
        assert USERNAME.connect(node, "bob", "upw") == OK
        assert USERNAME.connect(node, "bob", "nope") == BAD_PASSWORD
        # emqx_auth_clientid stayed unloaded: nobody checks dev-1 ...
        assert CLIENTID.connect(node, "dev-1", "nope") == OK
        # ... but its entries were kept
        ok(plugin_call(api, node, CLIENTID.plugin, "load"))
        assert ok(api.get(CLIENTID.path)) == ["dev-1"]
        assert CLIENTID.connect(node, "dev-1", "nope") == BAD_PASSWORD
        assert CLIENTID.connect(node, "dev-1", "cpw") == OK
        # back to what plugins.loaded says: no stored "active" any more for it
        ok(plugin_call(api, node, USERNAME.plugin, "unload"))
    node.stop()

    node = make_node(API, data_dir=data)
    with node.api() as api:
        assert active(api, CLIENTID.plugin)
        assert not active(api, USERNAME.plugin)


def test_emqx_conf_file_and_preloaded_entries(make_node: Any, tmp_path: Path) -> None:
    """EMQ X's own etc/plugins/emqx_auth_clientid.conf, unchanged (comments, keys
    Starling does not use), from plugins.etc_dir: hash type and preloaded entries."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "emqx_auth_clientid.conf").write_text(
        "##--------------------------------------------------------------------\n"
        "## ClientId Authentication Plugin\n"
        "##--------------------------------------------------------------------\n\n"
        "## Examples\n"
        "auth.client.1.clientid = id\n"
        "auth.client.1.password = passwd\n"
        "auth.client.2.clientid = dev:devid\n"
        "auth.client.2.password = \"passwd2\"\n\n"
        "## Password hash.\n"
        "##\n"
        "## Value: plain | md5 | sha | sha256\n"
        "auth.client.password_hash = plain\n"
        "auth.client.some_future_key = 1\n")
    node = make_node({**API, "plugins.etc_dir": str(etc),
                      "plugins.loaded": "emqx_management,emqx_auth_clientid"})
    with node.api() as api:
        assert sorted(ok(api.get(CLIENTID.path))) == ["dev:devid", "id"]
        assert ok(api.get(CLIENTID.item("id")))["password"] == "passwd"  # plain
        items = {i["key"]: i["value"] for i in ok(api.get(configs_path(node, CLIENTID.plugin)))}
        assert items["auth.client.password_hash"] == "plain"
        assert items["auth.client.2.clientid"] == "dev:devid"
        assert CLIENTID.connect(node, "id", "passwd") == OK
        assert CLIENTID.connect(node, "dev:devid", "passwd2") == OK
        assert CLIENTID.connect(node, "id", "passwd2") == BAD_PASSWORD
        # a preloaded entry changed through the API is not overwritten at the next load
        ok(api.put(CLIENTID.item("id"), json={"password": "new"}))
        ok(plugin_call(api, node, CLIENTID.plugin, "reload"))
        assert CLIENTID.connect(node, "id", "new") == OK
        # and a new preloaded entry through plugin_configs is added at once
        ok(api.put(configs_path(node, CLIENTID.plugin),
                   json={"auth.client.7.clientid": "seven", "auth.client.7.password": "7"}))
        wait_until(lambda: "seven" in ok(api.get(CLIENTID.path)), message="seven added")
        assert CLIENTID.connect(node, "seven", "7") == OK
    assert node.wait_log(r"keys Starling does not use: auth\.client\.some_future_key")


def test_bad_conf_file_value_stops_the_node(make_node: Any, tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "emqx_auth_username.conf").write_text("auth.user.password_hash = rot13\n")
    with pytest.raises(RuntimeError) as info:
        make_node({**API, "plugins.etc_dir": str(etc)})
    assert "rot13" in str(info.value)
