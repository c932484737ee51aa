"""Configuration: value parsing, TOML flattening, precedence, and the reference doc."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from starling.config import (
    SETTINGS,
    Config,
    ConfigError,
    Setting,
    parse_bool,
    parse_duration,
    parse_size,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
DASH = "\N{EN DASH}"  # between the ends of a range in the docs


# -- value kinds -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("2h", 7200.0), ("300s", 300.0), ("500ms", 0.5), ("5m", 300.0), ("1d", 86400.0),
    ("1w", 604800.0), ("30", 30.0), ("1.5", 1.5), (".5s", 0.5), (" 30s ", 30.0), ("2H", 7200.0),
    ("10 s", 10.0), ("0", 0.0), (0, 0.0), (45, 45.0), (2.5, 2.5),
])
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1s", "s", "1 2s", "1e3", "1h30m", True])
def test_parse_duration_rejects(text: Any) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "size"), [
    ("1MB", 1 << 20), ("64KB", 64 * 1024), ("1024", 1024), ("1k", 1024), ("1m", 1 << 20),
    ("1GB", 1 << 30), ("2g", 2 << 30), ("10b", 10), ("2 mb", 2 << 20), (" 1kb ", 1024),
    (512, 512), (0, 0),
])
def test_parse_size(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "1.5MB", "1TB", "-1", "1 M B", True, 1.5])
def test_parse_size_rejects(text: Any) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("on", True), ("yes", True), ("1", True), ("TRUE", True), (" On ", True),
    ("false", False), ("off", False), ("no", False), ("0", False), ("False", False),
    (True, True), (False, False),
])
def test_parse_bool(text: Any, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "maybe", "2", "enabled", None])
def test_parse_bool_rejects(text: Any) -> None:
    with pytest.raises(ConfigError):
        parse_bool(text)


# -- Config ------------------------------------------------------------------------------

def test_defaults() -> None:
    config = Config()
    for setting in SETTINGS:
        assert config[setting.key] == setting.default
    # Per-listener pattern keys (listeners.<kind>.*.<field>) are defaults, not values.
    assert dict(config.items()).keys() == {s.key for s in SETTINGS if "*" not in s.key}


def test_settings_table_is_well_formed() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    kinds = {"str", "int", "float", "bool", "duration", "size", "bind", "rate"}
    for s in SETTINGS:
        assert s.kind in kinds, s.key
        assert s.doc, s.key
        assert Config({s.key: s.default})[s.key] == s.default  # each default round-trips


def test_values_are_converted_by_kind() -> None:
    config = Config({
        "session.expiry_interval": "2h",
        "mqtt.max_packet_size": "64KB",
        "mqtt.allow_anonymous": "off",
        "session.max_inflight": "64",
        "mqtt.keepalive_multiplier": "2",
        "node.name": 42,
        "listeners.tcp.default.bind": " 127.0.0.1:0 ",
        "listeners.tcp.internal.bind": "false",
    })
    assert config["session.expiry_interval"] == 7200.0
    assert config["mqtt.max_packet_size"] == 65536
    assert config["mqtt.allow_anonymous"] is False
    assert config["session.max_inflight"] == 64
    assert config["mqtt.keepalive_multiplier"] == 2.0
    assert config["node.name"] == "42"
    assert config["listeners.tcp.default.bind"] == "127.0.0.1:0"
    assert config["listeners.tcp.internal.bind"] == "off"


@pytest.mark.parametrize("value", ["off", "OFF", "false", "disabled", "", "  "])
def test_bind_off(value: str) -> None:
    assert Config({"management.bind": value})["management.bind"] == "off"


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("session.max_inflght")):
        Config({"session.max_inflght": 1})
    config = Config()
    with pytest.raises(ConfigError, match="nope"):
        config.set("nope", 1)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(("key", "value"), [
    ("session.max_inflight", "many"),
    ("session.max_inflight", "1.5"),
    ("mqtt.keepalive_multiplier", "fast"),
    ("session.expiry_interval", "forever"),
    ("mqtt.max_packet_size", "big"),
    ("mqtt.allow_anonymous", "perhaps"),
])
def test_bad_value_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        Config({key: value})


# -- loading: TOML, extra, --set -----------------------------------------------------------

TOML = """
broker.sys_interval = "30s"

[node]
name = "n1@host"

[session]
max_inflight = 64
expiry_interval = "2h"

[listeners.tcp.default]
bind = "127.0.0.1:0"
max_connections = 10

[mqtt]
max_packet_size = "64KB"
allow_anonymous = false
keepalive_multiplier = 2.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "starling.toml"
    path.write_text(text, "utf-8")
    return path


def test_toml_nested_tables_are_flattened(tmp_path: Path) -> None:
    config = Config.load(write(tmp_path, TOML))
    assert config["broker.sys_interval"] == 30.0
    assert config["node.name"] == "n1@host"
    assert config["session.max_inflight"] == 64
    assert config["session.expiry_interval"] == 7200.0
    assert config["listeners.tcp.default.bind"] == "127.0.0.1:0"
    assert config["listeners.tcp.default.max_connections"] == 10
    assert config["mqtt.max_packet_size"] == 65536
    assert config["mqtt.allow_anonymous"] is False
    assert config["mqtt.keepalive_multiplier"] == 2.5
    assert config["session.max_mqueue_len"] == 1000  # untouched keys keep their default


def test_toml_dotted_keys_and_tables_are_the_same(tmp_path: Path) -> None:
    dotted = Config.load(write(tmp_path, 'session.max_inflight = 7\n'
                                          'listeners.tcp.internal.bind = "off"\n'))
    nested = Config.load(write(tmp_path, '[session]\nmax_inflight = 7\n'
                                          '[listeners.tcp.internal]\nbind = "off"\n'))
    assert dict(dotted.items()) == dict(nested.items())
    assert nested["session.max_inflight"] == 7


@pytest.mark.parametrize("text", [
    "[session]\nmax_inflght = 64\n",
    "[nope]\nx = 1\n",
    "node = 1\n",
    "[listeners.tcp.default]\nbnd = \"1883\"\n",
])
def test_toml_unknown_key_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="unknown configuration key"):
        Config.load(write(tmp_path, text))


def test_toml_bad_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("session.expiry_interval")):
        Config.load(write(tmp_path, '[session]\nexpiry_interval = "soon"\n'))


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[session\nmax_inflight = \n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        Config.load(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(tmp_path / "absent.toml")


def test_precedence_defaults_toml_extra_set(tmp_path: Path) -> None:
    path = write(tmp_path, "[session]\nmax_inflight = 64\nmax_mqueue_len = 5\n"
                           "[node]\nname = \"from-toml\"\ndata_dir = \"toml-dir\"\n")
    config = Config.load(
        path,
        sets=["session.max_inflight=10", "node.name = from-set ", "session.max_inflight=11"],
        extra={"node.name": "from-extra", "node.data_dir": "extra-dir",
               "session.max_inflight": 99},
    )
    assert config["session.max_inflight"] == 11  # --set beats extra beats TOML; last --set wins
    assert config["node.name"] == "from-set"
    assert config["node.data_dir"] == "extra-dir"  # extra beats TOML
    assert config["session.max_mqueue_len"] == 5  # TOML beats the default
    assert config["session.await_rel_timeout"] == 300.0  # the default


def test_set_without_file() -> None:
    config = Config.load(sets=["mqtt.max_packet_size=1MB", "node.name=a=b"])
    assert config["mqtt.max_packet_size"] == 1 << 20
    assert config["node.name"] == "a=b"  # only the first '=' separates


@pytest.mark.parametrize("item", ["session.max_inflight", "", "novalue"])
def test_set_requires_key_value(item: str) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        Config.load(sets=[item])


def test_set_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown configuration key"):
        Config.load(sets=["sesion.max_inflight=1"])


# -- docs/configuration.md ---------------------------------------------------------------

def doc_text() -> str:
    assert DOC.is_file(), f"{DOC} is missing: every configuration key must be documented"
    return DOC.read_text("utf-8")


def documented_rows() -> dict[str, str]:
    """`key` -> default cell, from the `| `key` | `default` | kind | meaning |` table."""
    rows: dict[str, str] = {}
    for line in doc_text().splitlines():
        match = re.match(r"^\|\s*`([a-z0-9_.]+)`\s*\|\s*`([^`]*)`\s*\|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize("key", [s.key for s in SETTINGS])
def test_every_key_is_documented(key: str) -> None:
    text = doc_text()
    assert re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", text), \
        f"{key} is not documented in docs/configuration.md"


def test_documented_keys_exist() -> None:
    """No row documents a key that is not (or no longer) a setting."""
    known = {s.key for s in SETTINGS}
    rows = documented_rows()
    assert rows, "no key table found in docs/configuration.md"
    assert set(rows) - known == set()


def test_documented_defaults_match() -> None:
    by_key = {s.key: s for s in SETTINGS}
    for key, cell in documented_rows().items():
        if key not in by_key:
            continue
        text = cell[1:-1] if cell.startswith('"') and cell.endswith('"') else cell
        assert Config({key: text})[key] == by_key[key].default, \
            f"{key}: documented default {cell} is not {by_key[key].default!r}"


# -- every key's values, documented as checked -----------------------------------------------

def allowed(setting: Setting) -> str:
    """The `values` cell of docs/configuration.md for a setting (made from its checks)."""
    if setting.choices:
        return ", ".join(f"`{c}`" if c else '`""`' for c in setting.choices)
    fixed = {"bool": "`true`, `false`", "str": "text", "rate": "`COUNT,PERIOD`",
             "bind": f"`HOST:PORT`, `PORT`, `off`; port 0{DASH}65535"}
    if setting.kind in fixed:
        return fixed[setting.kind]
    unit = {"duration": " s", "size": " bytes"}.get(setting.kind, "")

    def num(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else str(value)

    assert setting.low is not None, f"{setting.key}: a number without a range"
    if setting.open_low:
        text = f"> {num(setting.low)}"
        return text + (f", ≤ {num(setting.high)}{unit}" if setting.high is not None
                       else unit)
    if setting.high is None:
        return f"≥ {num(setting.low)}{unit}"
    return f"{num(setting.low)}{DASH}{num(setting.high)}{unit}"


def documented_values() -> dict[str, str]:
    """key -> the `values` cell, for every key of every row (a row may list several)."""
    cells: dict[str, str] = {}
    for line in doc_text().splitlines():
        if not line.startswith("| `"):
            continue
        columns = [c.strip() for c in line.strip().strip("|").split("|")]
        keys = re.findall(r"`([a-z0-9_.*]+)`", columns[0])
        values = columns[3] if len(columns) == 5 else columns[2] if len(columns) == 4 else None
        if values is None:
            continue
        for key in keys:
            cells[key] = values
    return cells


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.key for s in SETTINGS])
def test_every_key_documents_the_values_it_takes(setting: Setting) -> None:
    """docs/configuration.md's `values` column is what `check_value` enforces."""
    assert documented_values().get(setting.key) == allowed(setting), setting.key


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.low is not None],
                         ids=lambda s: s.key)
def test_range_limits_are_enforced(setting: Setting) -> None:
    key = setting.key.replace("*", "x")
    below = setting.low if setting.open_low else setting.low - 1
    with pytest.raises(ConfigError, match=re.escape(key)):
        Config({key: below})
    if setting.high is not None:
        with pytest.raises(ConfigError, match=re.escape(key)):
            Config({key: setting.high + 1})
