"""A start that cannot succeed says why in one line, names the key or listener and
the value, shows no Python exception text or traceback, and leaves nothing
behind (no generated secret, no file telling `ctl` about a node that is not
there).  Configuration is checked the same way from every source: `--set`, the
TOML file, and `PUT /configs` at runtime."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.api import err, ok

PYTHON_TEXT = ("Traceback", "invalid literal", "Errno", "could not convert", "ValueError",
               "object has no attribute")


def last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert lines, "the node said nothing"
    for marker in PYTHON_TEXT:
        assert marker not in stderr, stderr
    return lines[-1]


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("log.level", "chatty", "log.level: 'chatty' is not one of debug, info, warning, error"),
    ("listeners.tcp.default.bind", "999999",
     "listeners.tcp.default.bind: port 999999 is not in 0-65535"),
    ("listeners.tcp.default.bind", "127.0.0.1:99999",
     "listeners.tcp.default.bind: port 99999 is not in 0-65535"),
    ("listeners.tcp.default.bind", "no-such-host.invalid:1883",
     "listeners.tcp.default.bind: host 'no-such-host.invalid' is neither an IP address nor "
     "a name that resolves"),
    ("management.bind", "::1:8080",
     "management.bind: write an IPv6 address in brackets, e.g. [::1]:1883, got '::1:8080'"),
    ("mqtt.max_packet_size", "0", "mqtt.max_packet_size: must be 1 to 268435456, got 0"),
    ("session.max_inflight", "-5", "session.max_inflight: must be 0 to 65535, got -5"),
    ("session.max_inflight", "abc", "session.max_inflight: expected an integer, got 'abc'"),
    ("mqtt.keepalive_multiplier", "nan", "mqtt.keepalive_multiplier: expected a number, "
     "got 'nan'"),
    ("store.backend", "postgres",
     "store.backend: 'postgres' is not one of sqlite, memory"),
    ("zone.external.acl_deny_action", "explode",
     "zone.external.acl_deny_action: 'explode' is not one of ignore, disconnect"),
    ("zone.lan.max_inflight", "70000", "zone.lan.max_inflight: must be 0 to 65535, got 70000"),
    ("listeners.tcp.lan.max_connections", "0",
     "listeners.tcp.lan.max_connections: must be at least 1, got 0"),
    ("broker.presence_qos", "3", "broker.presence_qos: must be 0 to 2, got 3"),
    ("listeners.tcp.default.transport", "fast",
     "listeners.tcp.default.transport: 'fast' is not one of auto, lean, loop"),
])
def test_a_bad_set_value_names_the_key_and_value(start_fails: Any, tmp_path: Path,
                                                  setting: str, value: str,
                                                  message: str) -> None:
    done = start_fails(settings={setting: value})
    assert done.returncode == 2
    assert last_line(done.stderr) == f"starling: configuration error: {message}"
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # refused before anything was made


@pytest.mark.parametrize(("toml", "message"), [
    ("[session]\nmax_inflight = true\n", "session.max_inflight: expected an integer, got True"),
    ("[session]\nmax_inflight = 1.5\n", "session.max_inflight: expected an integer, got 1.5"),
    ("[listeners.tcp.default]\nbind = 70000\n",
     "listeners.tcp.default.bind: port 70000 is not in 0-65535"),
    ('[log]\nlevel = "chatty"\n', "log.level: 'chatty' is not one of debug, info, warning, "
     "error"),
    ("[node]\nname = [1, 2]\n", "node.name: expected a string, got [1, 2]"),
])
def test_a_bad_toml_value_names_the_key_and_value(start_fails: Any, tmp_path: Path,
                                                   toml: str, message: str) -> None:
    conf = tmp_path / "starling.toml"
    conf.write_text(toml)
    done = start_fails("--config", str(conf))
    assert done.returncode == 2
    assert last_line(done.stderr) == f"starling: configuration error: {message}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(("setting", "listener"), [
    ("listeners.tcp.default.bind", "mqtt:tcp:default"),
    ("management.bind", "http:management"),
    ("dashboard.bind", "http:dashboard"),
])
def test_a_port_in_use_names_the_listener_and_leaves_nothing_behind(
        start_fails: Any, tmp_path: Path, busy_port: int, setting: str, listener: str) -> None:
    settings = {"management.bind": "127.0.0.1:0", "dashboard.bind": "127.0.0.1:0",
                setting: f"127.0.0.1:{busy_port}"}
    done = start_fails(settings=settings)
    assert done.returncode == 1
    line = last_line(done.stderr)
    assert line.endswith(f"listener {listener}: cannot bind 127.0.0.1:{busy_port}: "
                         "address already in use"), line
    data = tmp_path / "data"
    # No secret or password was generated (or logged) for a node that did not start,
    # and nothing tells `starling ctl` about it.
    left = {p.name for p in data.iterdir()}
    assert not left & {"api_secret", "dashboard_password", "management.json"}, left
    assert "created" not in done.stderr
    assert "node started" not in done.stderr


def test_then_the_same_node_starts_once_the_port_is_free(make_node: Any,
                                                        tmp_path: Path) -> None:
    """The failed start above left the directory usable: a start there works, and only
    then are the secret and the password made."""
    data = tmp_path / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"cannot bind 127.0.0.1:{port}"):
            make_node({"management.bind": f"127.0.0.1:{port}"}, data_dir=data)
    assert not (data / "api_secret").exists()
    node = make_node({"management.bind": "127.0.0.1:0"}, data_dir=data)
    secret = (data / "api_secret").read_text().strip()
    with node.api(auth=("admin", secret)) as api:
        ok(api.get("/brokers/"))


def test_a_missing_plugin_etc_dir_is_named(start_fails: Any, tmp_path: Path) -> None:
    done = start_fails(settings={"plugins.etc_dir": str(tmp_path / "nowhere")})
    assert done.returncode == 2
    assert last_line(done.stderr).endswith(
        f"configuration error: plugins.etc_dir: {tmp_path / 'nowhere'} is not a directory "
        "(set it to the directory of the plugins' .conf files, or leave it empty)")


def test_a_plugin_whose_package_is_missing_is_one_line(make_node: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """emqx_lua_hook without lupa: the node starts without it and says, in one line
    without a traceback, what to install."""
    shim = tmp_path / "no-lupa"
    shim.mkdir()
    (shim / "lupa.py").write_text("raise ImportError('lupa is not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]))
    node = make_node({"plugins.loaded": "emqx_lua_hook,emqx_retainer"})
    line = node.wait_log("emqx_lua_hook")
    assert line.endswith("[WARNING] starling.plugins.registry: plugin emqx_lua_hook cannot "
                         "load: emqx_lua_hook needs the lupa package: pip install "
                         "'starling-mqtt[lua]'"), line
    assert not any("Traceback" in line for line in node.log_lines)


def test_a_plugin_file_that_is_missing_is_one_line(make_node: Any, tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "emqx_psk_file.conf").write_text(f"psk.file.path = {tmp_path / 'psk.txt'}\n")
    node = make_node({"plugins.loaded": "emqx_psk_file", "plugins.etc_dir": str(etc)})
    line = node.wait_log("emqx_psk_file cannot load")
    assert line.endswith(f"plugin emqx_psk_file cannot load: {tmp_path / 'psk.txt'}: "
                         "No such file or directory"), line
    assert not any("Traceback" in line for line in node.log_lines)


# -- the same checks at runtime ----------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "message"), [
    ("session.max_inflight", "-5", "bad value for session.max_inflight: must be 0 to 65535, "
     "got -5"),
    ("mqtt.max_packet_size", "0", "bad value for mqtt.max_packet_size: must be 1 to "
     "268435456, got 0"),
    ("session.max_inflight", "abc", "bad value for session.max_inflight: expected an "
     "integer, got 'abc'"),
])
def test_put_configs_refuses_what_start_refuses(api: Any, start_fails: Any, key: str,
                                                value: str, message: str) -> None:
    assert err(api.put("/configs/emqx", json={"key": key, "value": value}), 400, 108)[
        "message"] == message
    done = start_fails(settings={key: value})
    assert last_line(done.stderr) == (
        f"starling: configuration error: {message.removeprefix('bad value for ')}")


def test_plugin_configs_are_checked_the_same_way(api: Any, start_fails: Any,
                                                 tmp_path: Path) -> None:
    """A plugin key's value is refused with the same words through PUT plugin_configs
    and in an EMQ X conf file read at start; ports as the node's own keys word them."""
    message = "auth.redis.server: port 99999 is not in 1-65535"
    assert err(api.put("/nodes/starling@127.0.0.1/plugin_configs/emqx_auth_redis",
                       json={"auth.redis.server": "127.0.0.1:99999"}), 400, 108)[
        "message"] == message
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "emqx_auth_redis.conf").write_text("auth.redis.server = 127.0.0.1:99999\n")
    done = start_fails(settings={"plugins.etc_dir": str(etc)})
    assert done.returncode == 2
    assert last_line(done.stderr).endswith(f"emqx_auth_redis.conf: {message}")
