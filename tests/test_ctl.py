"""`starling ctl` against a running node: the real command line over real HTTP,
with real MQTT clients where what it does is observable."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.clients import Clients, PahoClient, uid, wait_until

from starling import ctl

API_SETTINGS = {
    "management.bind": "127.0.0.1:0",
    "api.default_app_id": "admin",
    "api.default_app_secret": "test-secret",
}


@pytest.fixture(scope="module")
def api_node(api_node: Any) -> Iterator[Any]:  # wraps tests/conftest.py's
    yield api_node
    api_node.stop()


@pytest.fixture
def make_node(make_node: Any) -> Iterator[Any]:
    made: list[Any] = []

    def factory(*args: Any, **kwargs: Any) -> Any:
        node = make_node(*args, **kwargs)
        made.append(node)
        return node

    yield factory
    for node in made:
        node.stop()


def base_url(node: Any) -> str:
    host, port = node.listeners["http:management"]
    return f"http://{host}:{port}"


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real entry point, as an operator types it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    return subprocess.run([sys.executable, "-m", "starling", "ctl", *args],
                          capture_output=True, text=True, timeout=30,
                          env={**clean, **(env or {})}, cwd=cwd)


class Result:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err

    def json(self) -> Any:
        return json.loads(self.out)


def ctl_in(node: Any, *args: str) -> Result:
    """`ctl.main` in this process (faster), still over HTTP to the node."""
    out, err = io.StringIO(), io.StringIO()
    status = ctl.main(["--url", base_url(node), "--app-id", "admin", "--secret", "test-secret",
                       *args], stdout=out, stderr=err)
    return Result(status, out.getvalue(), err.getvalue())


# -- where and as whom -------------------------------------------------------------------

def test_status_through_the_real_entry_point(api_node: Any) -> None:
    done = run("--url", base_url(api_node), "status")
    assert done.returncode == 0, done.stderr
    assert f"Node {api_node.name} is started" in done.stdout
    assert "is running" in done.stdout
    done = run("--url", base_url(api_node), "status", "--json")
    assert json.loads(done.stdout) == {"node": api_node.name, "status": "started",
                                       "running": True}


def test_status_of_a_node_that_is_not_there() -> None:
    done = run("--url", "http://127.0.0.1:9", "status")
    assert done.returncode == 1
    assert "not running" in done.stderr and "127.0.0.1:9" in done.stderr


def test_credentials_from_the_environment(api_node: Any) -> None:
    env = {"STARLING_API_URL": base_url(api_node) + "/api/v3", "STARLING_APP_ID": "admin",
           "STARLING_APP_SECRET": "test-secret"}
    done = run("broker", env=env)
    assert done.returncode == 0, done.stderr
    assert api_node.name in done.stdout and "uptime" in done.stdout


def test_wrong_secret_is_refused_with_a_hint(api_node: Any, tmp_path: Path) -> None:
    done = run("--url", base_url(api_node), "--secret", "wrong", "--data-dir", str(tmp_path),
               "clients", "list")
    assert done.returncode == 1
    assert "refused app id 'admin'" in done.stderr and "--secret" in done.stderr
    assert "Traceback" not in done.stderr


def test_generated_secret_is_read_from_the_data_dir(make_node: Any) -> None:
    """A node with a generated secret: `--data-dir` is all ctl needs besides the URL."""
    node = make_node({"management.bind": "127.0.0.1:0"})
    assert (node.data_dir / "api_secret").exists()
    done = run("--url", base_url(node), "--data-dir", str(node.data_dir), "cluster")
    assert done.returncode == 0, done.stderr
    assert node.name in done.stdout


def test_url_and_credentials_from_the_config_file(api_node: Any, tmp_path: Path) -> None:
    _host, port = api_node.listeners["http:management"]
    conf = tmp_path / "starling.toml"
    conf.write_text(f'[management]\nbind = "0.0.0.0:{port}"\n'
                    '[api]\ndefault_app_id = "admin"\ndefault_app_secret = "test-secret"\n')
    done = run("--config", str(conf), "listeners")
    assert done.returncode == 0, done.stderr
    assert "http:management" in done.stdout and "mqtt:tcp" in done.stdout


@pytest.mark.parametrize(("bind", "url"), [
    ("0.0.0.0:8080", "http://127.0.0.1:8080"),
    ("8080", "http://127.0.0.1:8080"),
    ("10.1.2.3:18080", "http://10.1.2.3:18080"),
    ("[::]:8080", "http://[::1]:8080"),
    ("[::1]:8081", "http://[::1]:8081"),
])
def test_url_from_management_bind(bind: str, url: str) -> None:
    args = ctl.parser().parse_args(["--set", f"management.bind={bind}", "status"])
    base, app_id, _ = ctl.resolve_target(args, environ={})
    assert (base, app_id) == (url, "admin")


@pytest.mark.parametrize(("bind", "why"), [("off", "off"), ("127.0.0.1:0", "port")])
def test_unusable_management_bind_says_why(bind: str, why: str) -> None:
    args = ctl.parser().parse_args(["--set", f"management.bind={bind}", "status"])
    with pytest.raises(ctl.CtlError, match=why):
        ctl.resolve_target(args, environ={})


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "http://127.0.0.1:8080/",
                                 "http://127.0.0.1:8080/api/v3", "http://127.0.0.1:8080/api/v3/"])
def test_url_forms(url: str) -> None:
    assert ctl.normalize_url(url) == "http://127.0.0.1:8080"


def test_flags_beat_environment_beat_config(tmp_path: Path) -> None:
    (tmp_path / "api_secret").write_text("from-file\n")
    env = {"STARLING_APP_SECRET": "from-env", "STARLING_API_URL": "h:1"}
    args = ctl.parser().parse_args(["--data-dir", str(tmp_path), "status"])
    assert ctl.resolve_target(args, env) == ("http://h:1", "admin", "from-env")
    assert ctl.resolve_target(args, {}) == ("http://127.0.0.1:8080", "admin", "from-file")
    args = ctl.parser().parse_args(["status", "--secret", "flag", "--url", "x:2",
                                    "--app-id", "ops"])
    assert ctl.resolve_target(args, env) == ("http://x:2", "ops", "flag")


def test_usage_errors_exit_2() -> None:
    assert run("clients", "explode").returncode == 2
    assert run().returncode == 2
    done = run("--help")
    assert done.returncode == 0 and "mgmt" in done.stdout and "plugins" in done.stdout


def test_ctl_is_listed_in_starling_help() -> None:
    done = subprocess.run([sys.executable, "-m", "starling", "--help"], capture_output=True,
                          text=True, timeout=30)
    assert "ctl" in done.stdout


# -- clients, sessions, routes, subscriptions -------------------------------------------

def test_clients_list_show_and_kick_disconnects(api_node: Any, clients: Clients) -> None:
    client_id = uid("ctl")
    client = clients(api_node, client_id)
    listed = ctl_in(api_node, "clients", "list")
    assert listed.status == 0, listed.err
    assert listed.out.splitlines()[0].split()[:2] == ["client_id", "username"]
    assert any(line.startswith(client_id) for line in listed.out.splitlines())
    rows = ctl_in(api_node, "--json", "clients").json()
    assert client_id in {r["client_id"] for r in rows}
    shown = ctl_in(api_node, "clients", "show", client_id, "--json").json()
    assert shown["client_id"] == client_id and shown["proto_ver"] == 4
    text = ctl_in(api_node, "clients", "show", client_id).out
    assert "client_id" in text and client_id in text and "connected_at" in text

    done = run("--url", base_url(api_node), "--secret", "test-secret", "clients", "kick",
               client_id)
    assert done.returncode == 0, done.stderr
    assert f"kicked {client_id}" in done.stdout
    client.wait_disconnected()
    wait_until(lambda: client_id not in {r["client_id"] for r in
                                         ctl_in(api_node, "--json", "clients").json()})


def test_kick_or_show_unknown_client_fails(api_node: Any) -> None:
    kicked = ctl_in(api_node, "clients", "kick", "no-such-client")
    assert kicked.status == 1 and "not_found" in kicked.err and "code 112" in kicked.err
    shown = ctl_in(api_node, "clients", "show", "no-such-client")
    assert shown.status == 1 and "not connected" in shown.err


def test_sessions_routes_subscriptions(api_node: Any, clients: Clients) -> None:
    client_id, topic = uid("sess"), f"{uid('ctl')}/a b/+"
    client = clients(api_node, client_id, clean_session=False)
    client.subscribe(topic, 1)
    sessions = ctl_in(api_node, "sessions", "--json").json()
    assert client_id in {s["client_id"] for s in sessions}
    shown = ctl_in(api_node, "sessions", "show", client_id, "--json").json()
    assert shown["subscriptions_count"] == 1 and shown["clean_start"] is False
    table = ctl_in(api_node, "sessions").out
    assert "inflight" in table and "0/32" in table

    routes = ctl_in(api_node, "routes", "--json").json()
    assert {"topic": topic, "node": api_node.name} in routes
    shown_route = ctl_in(api_node, "routes", "show", topic)
    assert shown_route.status == 0 and topic in shown_route.out
    missing = ctl_in(api_node, "routes", "show", "no/such/route")
    assert missing.status == 1 and "no route" in missing.err

    subs = ctl_in(api_node, "subscriptions", "show", client_id, "--json").json()
    assert subs == [{"node": api_node.name, "client_id": client_id, "topic": topic, "qos": 1}]
    assert topic in ctl_in(api_node, "subscriptions", "list").out


# -- plugins, listeners, broker, cluster -------------------------------------------------

def test_plugins(api_node: Any) -> None:
    plugins = ctl_in(api_node, "plugins", "list", "--json").json()
    assert len(plugins) == 25
    table = ctl_in(api_node, "plugins").out
    line = next(x for x in table.splitlines() if x.startswith("emqx_management "))
    assert " true " in line and "feature" in line

    started = ctl_in(api_node, "plugins", "load", "emqx_management")
    assert started.status == 1 and "already_started" in started.err
    stuck = ctl_in(api_node, "plugins", "unload", "emqx_management")
    assert stuck.status == 1 and "in_use" in stuck.err
    reloaded = ctl_in(api_node, "plugins", "reload", "emqx_management")
    assert reloaded.status == 0, reloaded.err
    assert "reloaded successfully" in reloaded.out
    unknown = ctl_in(api_node, "plugins", "unload", "emqx_nope")
    assert unknown.status == 1 and "not_found" in unknown.err
    node = ctl_in(api_node, "--node", "other@host", "plugins")
    assert node.status == 1 and "other@host" in node.err


def test_listeners_broker_cluster(api_node: Any) -> None:
    listeners = ctl_in(api_node, "listeners", "--json").json()
    protocols = {lst["protocol"] for entry in listeners for lst in entry["listeners"]}
    assert {"mqtt:tcp", "http:management"} <= protocols
    broker = ctl_in(api_node, "broker").out
    assert "sysdescr" in broker and api_node.name in broker
    stats = ctl_in(api_node, "broker", "stats").out
    assert "connections/count" in stats
    metrics = ctl_in(api_node, "broker", "metrics", "--json").json()
    assert "packets/connect" in metrics[0]["metrics"]
    cluster = ctl_in(api_node, "cluster", "status")
    assert cluster.status == 0 and api_node.name in cluster.out and "Running" in cluster.out


# -- banned, mgmt, admins ----------------------------------------------------------------

def test_banned_add_list_del(api_node: Any, clients: Clients) -> None:
    client_id = uid("banme")
    client = clients(api_node, client_id)
    added = ctl_in(api_node, "banned", "add", "client_id", client_id, "--reason", "test",
                   "--duration", "600")
    assert added.status == 0, added.err
    client.wait_disconnected()  # a ban on a connected client disconnects it
    rows = ctl_in(api_node, "banned", "--json").json()
    row = next(r for r in rows if r["who"] == client_id)
    assert row["as"] == "client_id" and row["reason"] == "test"
    assert isinstance(row["until"], (int, float))
    refused = PahoClient(api_node.host, api_node.port, client_id=client_id)
    try:
        # CONNACK 5, which paho 2 reports as reason code 0x87 (135)
        assert refused.connect(expect_rc=None)[0] in (5, 135)
    finally:
        refused.close()
    removed = ctl_in(api_node, "banned", "del", "clientid", client_id)
    assert removed.status == 0, removed.err
    assert client_id not in {r["who"] for r in ctl_in(api_node, "banned", "--json").json()}
    clients(api_node, client_id)  # welcome again
    bad = ctl_in(api_node, "banned", "add", "nickname", "x")
    assert bad.status == 2 and "client_id" in bad.err


def test_mgmt_apps_lifecycle(api_node: Any) -> None:
    app_id = uid("app")
    inserted = ctl_in(api_node, "mgmt", "insert", app_id, "Ops tools")
    assert inserted.status == 0, inserted.err
    secret = inserted.out.strip().removeprefix("AppSecret: ")
    assert secret and " " not in secret

    def as_app(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        status = ctl.main(["--url", base_url(api_node), "--app-id", app_id,
                           f"--secret={secret}", *args], stdout=out, stderr=err)
        return Result(status, out.getvalue(), err.getvalue())

    assert as_app("status").status == 0
    assert as_app("clients").status == 0  # the new credentials work
    listed = ctl_in(api_node, "mgmt", "list", "--json").json()
    assert {"app_id": app_id, "name": "Ops tools", "desc": "Application user", "status": True,
            "expired": None} in listed
    looked = ctl_in(api_node, "mgmt", "lookup", app_id, "--json").json()
    assert looked["secret"] == secret

    assert ctl_in(api_node, "mgmt", "update", app_id, "disable").status == 0
    refused = as_app("clients")
    assert refused.status == 1 and "refused" in refused.err
    looked = ctl_in(api_node, "mgmt", "lookup", app_id, "--json").json()
    assert looked["status"] is False and looked["name"] == "Ops tools"  # name kept
    assert ctl_in(api_node, "mgmt", "update", app_id, "enable", "--desc", "x").status == 0
    assert as_app("clients").status == 0

    assert ctl_in(api_node, "mgmt", "delete", app_id).status == 0
    assert as_app("clients").status == 1
    gone = ctl_in(api_node, "mgmt", "lookup", app_id)
    assert gone.status == 1 and "not found" in gone.err


def test_admins_add_list_del(api_node: Any) -> None:
    """Dashboard users; tests/api/test_dashboard.py covers them fully."""
    name = uid("bob")
    done = run("--url", base_url(api_node), "--secret", "test-secret", "admins", "add",
               name, "pw", "ops")
    assert done.returncode == 0, done.stderr
    assert {"username": name, "tags": "ops"} in ctl_in(api_node, "admins", "--json").json()
    assert ctl_in(api_node, "admins", "add", uid("keeper"), "pw").status == 0  # not the last
    assert ctl_in(api_node, "admins", "del", name).status == 0
    gone = ctl_in(api_node, "admins", "del", name)
    assert gone.status == 1 and "Username Not Found" in gone.err


# -- output ------------------------------------------------------------------------------

def test_table_rendering() -> None:
    out = io.StringIO()
    ctl.table([{"a": "x", "b": True}, {"a": "longer", "b": {"k": 1}}],
              [ctl.col("a"), ctl.col("bee", "b")], out)
    assert out.getvalue().splitlines() == ["a       bee", "x       true", "longer  k=1"]
    out = io.StringIO()
    ctl.table([], [ctl.col("a")], out)
    assert out.getvalue() == "a\n(none)\n"


def test_broken_pipe_is_quiet(api_node: Any) -> None:
    cmd = (f"{sys.executable} -m starling ctl --url {base_url(api_node)} --secret test-secret "
           "plugins | head -1")
    done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("name")
    assert "Traceback" not in done.stderr


def test_configs_list_and_set(api_node: Any) -> None:
    def current() -> dict[str, str]:
        return {i["key"]: i["value"] for i in ctl_in(api_node, "configs", "--json").json()}

    assert current()["session.max_inflight"] == "32"
    assert "session.max_inflight" in ctl_in(api_node, "configs").out
    try:
        done = ctl_in(api_node, "configs", "set", "session.max_inflight", "8")
        assert done.status == 0, done.err
        assert done.out.strip() == "session.max_inflight = 8"
        assert current()["session.max_inflight"] == "8"
    finally:
        assert ctl_in(api_node, "configs", "set", "session.max_inflight", "32").status == 0
    bad = ctl_in(api_node, "configs", "set", "session.max_inflight", "lots")
    assert bad.status == 1 and "code 108" in bad.err
    unknown = ctl_in(api_node, "configs", "set", "node.name", "x")
    assert unknown.status == 1 and "restart" in unknown.err


def test_generated_secrets_can_follow_an_option() -> None:
    """App secrets and dashboard passwords never start with "-": `--secret <it>`
    on a command line is never taken for an option (1 in 64 random tokens would be)."""
    from starling.api.apps import generate_secret
    from starling.api.users import generate_password

    assert not any(generate_secret().startswith("-") for _ in range(3000))
    assert not any(generate_password().startswith("-") for _ in range(3000))
