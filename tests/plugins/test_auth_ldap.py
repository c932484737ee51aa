"""emqx_auth_ldap against a real OpenLDAP `slapd` started on a free port with a
throwaway config (tests/helpers/slapd.py) and the schema of
docs/ldap/emqx.schema: paho clients let in ({SHA}, {SSHA}, {MD5}, plain
passwords), refused (wrong password, disabled), ignored (unknown), made
superuser (bypassing ACL), allowed and denied by the mqtt*Topic attributes;
the first of two servers down (failover);
the plugin configured by an EMQ X conf file and loaded by `plugins.loaded`;
slapd stopped and started again: on_error, the alarm raised and cleared, the
connections made again (docs/auth-backends.md#ldap)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.api import ok
from helpers.clients import PahoClient, uid, wait_until
from helpers.slapd import ROOT_DN, ROOT_PASSWORD, SUFFIX, Slapd
from paho.mqtt.client import MQTTv5
from test_auth_clientid_username import BAD_PASSWORD, OK, connect

pytestmark = pytest.mark.needs_server

PLUGIN = "emqx_auth_ldap"
ALARM = "emqx_auth_ldap_down"
SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "ldap" / "emqx.schema"
DEVICES = f"ou=device,{SUFFIX}"
API_SETTINGS = {"management.bind": "127.0.0.1:0", "api.default_app_id": "admin",
                "api.default_app_secret": "test-secret"}


def sha(password: str, scheme: str = "SHA", salt: bytes = b"") -> str:
    name = {"SHA": "sha1", "SSHA": "sha1", "MD5": "md5", "SSHA256": "sha256"}[scheme]
    digest = hashlib.new(name, password.encode() + salt).digest()
    return "{" + scheme + "}" + base64.b64encode(digest + salt).decode()


def entry(user: str, password: str | None, *lines: str) -> str:
    rdn = user.replace("\\", "\\\\").replace(",", "\\,")
    text = (f"dn: uid={rdn},{DEVICES}\nobjectClass: top\nobjectClass: mqttUser\n"
            f"objectClass: mqttDevice\nobjectClass: mqttSecurity\nuid: {user}\n")
    if password is not None:
        text += f"userPassword: {password}\n"
    return text + "".join(line + "\n" for line in lines) + "\n"


TREE = f"""dn: {SUFFIX}
objectClass: top
objectClass: dcObject
objectClass: organization
dc: emqx
o: emqx

dn: {DEVICES}
objectClass: top
objectClass: organizationalUnit
ou: device

""" + "".join([
    entry("u-sha", sha("pw-sha"), "isEnabled: TRUE"),
    entry("u-ssha", sha("pw-ssha", "SSHA", b"salt1234")),
    entry("u-ssha256", sha("pw-256", "SSHA256", b"NaCl")),
    entry("u-md5", sha("pw-md5", "MD5")),
    entry("u-plain", "pw-plain"),
    entry("u-off", sha("pw-off"), "isEnabled: FALSE"),
    entry("u-root", sha("pw-root"), "isSuperuser: TRUE"),
    entry("u-nopass", None),
    entry("u-acl", sha("pw-acl"), "mqttPublishTopic: acl/pub/+",
          "mqttSubscriptionTopic: acl/sub/#", "mqttPubSubTopic: acl/both",
          "mqttSubscriptionTopic: acl/%u-literal"),
    entry("u-watch", sha("pw-watch"), "mqttSubscriptionTopic: acl/#"),
    entry("u,odd*(name)", sha("pw-odd")),
])


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("slapd"), [SCHEMA]).start()
    try:
        server.add(TREE)
        yield server
    finally:
        server.stop()


def conf_text(slapd: Slapd, **extra: str) -> str:
    # 127.0.0.2 refuses (slapd listens on 127.0.0.1 only): the plugin goes on to the next.
    values = {"auth.ldap.servers": "127.0.0.2,127.0.0.1", "auth.ldap.port": str(slapd.port),
              "auth.ldap.pool": "4", "auth.ldap.bind_dn": ROOT_DN,
              "auth.ldap.bind_password": ROOT_PASSWORD, "auth.ldap.timeout": "5s",
              "auth.ldap.device_dn": DEVICES, "auth.ldap.match_objectclass": "mqttUser",
              "auth.ldap.username.attributetype": "uid",
              "auth.ldap.password.attributetype": "userPassword", "auth.ldap.ssl": "false",
              **extra}
    return "".join(f"{key} = {value}\n" for key, value in values.items())


@pytest.fixture
def node(make_node: Any, slapd: Slapd, tmp_path: Path) -> Any:
    """A node whose ACL file denies everything the LDAP entries do not allow, with
    emqx_auth_ldap configured by an EMQ X conf file and loaded at start."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "emqx_auth_ldap.conf").write_text(conf_text(slapd))
    acl = tmp_path / "acl.conf"
    acl.write_text("{deny, all}.\n")
    return make_node({**API_SETTINGS, "plugins.etc_dir": str(etc),
                      "plugins.loaded": "emqx_management,emqx_auth_ldap",
                      "acl_file": str(acl), "mqtt.allow_anonymous": "true"})


def client_of(node: Any, user: str, password: str) -> PahoClient:
    client = PahoClient(node.host, node.port, client_id=uid("c"))
    client.client.username_pw_set(user, password)
    client.connect()
    return client


def test_passwords_disabled_unknown(node: Any) -> None:
    for user, password in (("u-sha", "pw-sha"), ("u-ssha", "pw-ssha"),
                           ("u-ssha256", "pw-256"), ("u-md5", "pw-md5"),
                           ("u-plain", "pw-plain"), ("u,odd*(name)", "pw-odd")):
        assert connect(node, uid("c"), user, password) == OK, user
        assert connect(node, uid("c"), user, password + "x") == BAD_PASSWORD, user
    assert connect(node, uid("c"), "u-sha", "pw-sha", protocol=MQTTv5) == OK
    assert connect(node, uid("c"), "u-sha", None) == BAD_PASSWORD
    assert connect(node, uid("c"), "u-off", "pw-off") == BAD_PASSWORD  # isEnabled: FALSE
    # unknown, or an entry without a password: ignored (allow_anonymous lets them in)
    assert connect(node, uid("c"), "nobody", "x") == OK
    assert connect(node, uid("c"), "u-nopass", "x") == OK
    # a user name that would change the DN if it were not escaped
    assert connect(node, uid("c"), "u-sha,ou=device", "pw-sha") == OK  # no such entry


def test_acl_allowed_denied_and_superuser(node: Any) -> None:
    watcher = client_of(node, "u-watch", "pw-watch")
    user = client_of(node, "u-acl", "pw-acl")
    root = client_of(node, "u-root", "pw-root")
    try:
        assert watcher.subscribe("acl/#", qos=1) == [1]
        assert watcher.subscribe("other/#", qos=1) == [0x80]
        assert user.subscribe("acl/sub/x/y", qos=1) == [1]
        assert user.subscribe("acl/both", qos=1) == [1]
        assert user.subscribe("acl/pub/1", qos=1) == [0x80]
        user.publish("acl/pub/1", b"allowed", qos=1)
        user.publish("acl/sub/1", b"denied", qos=1)
        user.publish("acl/both", b"both", qos=1)
        root.publish("acl/anything/at/all", b"root", qos=1)  # superuser: no ACL
        assert root.subscribe("#", qos=1) == [1]
        got = watcher.get_many(3)
        assert sorted((m.topic, m.payload) for m in got) == [
            ("acl/anything/at/all", b"root"), ("acl/both", b"both"), ("acl/pub/1", b"allowed")]
        assert watcher.drain() == []
    finally:
        for client in (watcher, user, root):
            client.close()


def alarms(api: httpx.Client, node: Any) -> list[str]:
    return [a["id"] for a in ok(api.get(f"/alarms/present/{node.name}"))]


def test_server_down_on_error_alarm_and_reconnect(node: Any, api: httpx.Client,
                                                 slapd: Slapd) -> None:
    assert connect(node, uid("c"), "u-sha", "pw-sha") == OK  # pooled connections made
    slapd.stop()
    try:
        # ignore (default): the chain goes on, allow_anonymous lets the client in
        assert connect(node, uid("c"), "u-sha", "wrong") == OK
        wait_until(lambda: ALARM in alarms(api, node))
        ok(api.put(f"/nodes/{node.name}/plugin_configs/{PLUGIN}",
                   json={"auth.ldap.on_error": "deny"}))
        assert connect(node, uid("c"), "u-sha", "pw-sha") == BAD_PASSWORD
        wait_until(lambda: ALARM in alarms(api, node))
    finally:
        slapd.start()
    wait_until(lambda: ALARM not in alarms(api, node), timeout=30, message="alarm cleared")
    assert connect(node, uid("c"), "u-sha", "pw-sha") == OK
    assert connect(node, uid("c"), "u-sha", "wrong") == BAD_PASSWORD
    ok(api.put(f"/nodes/{node.name}/plugins/{PLUGIN}/unload"))
    assert connect(node, uid("c"), "u-sha", "wrong") == OK
    assert not [line for line in node.log_lines if ROOT_PASSWORD in line]


def test_metrics(node: Any, api: httpx.Client) -> None:
    before = ok(api.get(f"/nodes/{node.name}/metrics/"))
    assert connect(node, uid("c"), "u-md5", "pw-md5") == OK
    assert connect(node, uid("c"), "u-md5", "nope") == BAD_PASSWORD
    assert connect(node, uid("c"), "nobody", "nope") == OK
    after = ok(api.get(f"/nodes/{node.name}/metrics/"))
    for name in ("success", "failure", "ignore"):
        assert after[f"auth/ldap/{name}"] - before[f"auth/ldap/{name}"] == 1, name


def test_kept_connections_survive_a_server_restart(node: Any, api: httpx.Client,
                                                   slapd: Slapd) -> None:
    assert connect(node, uid("c"), "u-sha", "pw-sha") == OK  # a connection is kept
    slapd.stop()
    slapd.start()
    # The kept connection is dead; the plugin binds a new one instead of answering
    # "server down" (which would have let a wrong password in, as ignore).
    assert connect(node, uid("c"), "u-sha", "wrong") == BAD_PASSWORD
    assert connect(node, uid("c"), "u-sha", "pw-sha") == OK
    assert ALARM not in alarms(api, node)
