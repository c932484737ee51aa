"""/configs: the settings that can change while the node runs (facts §5.8).

``GET /configs/`` → ``[{node, config: [item]}]``; ``GET /nodes/:node/configs/`` →
``[item]``; an item is ``{key, value, datatpye, app}`` (``datatpye`` is how EMQ X
spells it).  ``PUT /configs/:app`` and ``PUT /nodes/:node/configs/:app`` take
``{"key": ..., "value": ...}`` and apply the change at once, without a restart.

Keys are Starling's own configuration keys (docs/configuration.md), all owned
by the app ``emqx`` (the application that owns them in EMQ X); values are
strings in the configuration file's syntax (``"2h"``, ``"1MB"``, ``"true"``),
JSON numbers and booleans are accepted too.  As in EMQ X, a runtime change is
not written back: it lasts until the node restarts.

Errors: missing ``key``/``value`` → code 107, HTTP 400; a value of the wrong
kind or out of range → code 108, HTTP 400; a key that does not exist or cannot
change at runtime → code 102, HTTP 400 (the key comes in the body, so it is a bad
parameter, not a missing resource); an unknown app in the path → code 102, HTTP 404.

When a change takes effect is listed per key in `RUNTIME_KEYS` and in
docs/configuration.md ("Changing settings at runtime").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starling.config import SETTINGS, Config, ConfigError

from ..errors import ApiError, Code, bad_type, missing
from ..request import ApiRequest
from ..routing import RouteTable

APP = "emqx"

#: EMQ X (cuttlefish) datatype names for Starling's value kinds.
DATATYPES = {"int": "integer", "float": "float", "bool": "flag", "duration": "duration",
             "size": "bytesize", "str": "string", "bind": "ip"}


@dataclass(frozen=True, slots=True)
class RuntimeKey:
    """A setting that can change at runtime.  Its values are checked as at start
    (`starling.config.check_value`: the kind, range and choices of `SETTINGS`)."""

    key: str
    applies: str  #: when a change takes effect (documentation)


#: The runtime-changeable settings, in the order they are listed.
RUNTIME_KEYS: tuple[RuntimeKey, ...] = (
    RuntimeKey("mqtt.max_packet_size", "new connections"),
    RuntimeKey("mqtt.max_clientid_len", "the next CONNECT"),
    RuntimeKey("mqtt.max_topic_levels", "at once"),
    RuntimeKey("mqtt.allow_anonymous", "the next CONNECT"),
    RuntimeKey("mqtt.keepalive_multiplier", "at once (next keepalive check)"),
    RuntimeKey("mqtt.idle_timeout", "new connections"),
    RuntimeKey("mqtt.retain_available", "at once"),
    RuntimeKey("session.expiry_interval", "MQTT 3.x clients connecting afterwards"),
    RuntimeKey("session.max_inflight", "every session, at once"),
    RuntimeKey("session.max_mqueue_len", "every session, at once"),
    RuntimeKey("session.max_mqueue_bytes", "every session, at once"),
    RuntimeKey("session.mqueue_store_qos0", "every session, at once"),
    RuntimeKey("session.max_awaiting_rel", "every session, at once"),
    RuntimeKey("session.await_rel_timeout", "every session, at once"),
    RuntimeKey("session.retry_interval", "new connections"),
    RuntimeKey("broker.sys_interval", "at once ($SYS timers restart)"),
    RuntimeKey("broker.sys_heartbeat", "at once ($SYS timers restart)"),
    RuntimeKey("broker.presence_qos", "at once"),
)

_KIND = {s.key: s.kind for s in SETTINGS}
_RUNTIME = {k.key: k for k in RUNTIME_KEYS}

_DURATION_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SIZE_UNITS = (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10))


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit, size in _DURATION_UNITS:
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    millis = seconds * 1000
    if math.isclose(millis, round(millis)):
        return f"{round(millis)}ms"
    return f"{seconds}s"


def format_size(size: int) -> str:
    for unit, factor in _SIZE_UNITS:
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def format_value(kind: str, value: Any) -> str:
    """A value as it would be written in the configuration file."""
    if kind == "duration":
        return format_duration(value)
    if kind == "size":
        return format_size(value)
    if kind == "bool":
        return "true" if value else "false"
    return str(value)


class RuntimeConfig:
    """The node's live `Config` plus what to do after a change (`apply`, which
    rebuilds the broker's options).  Put in ``ApiContext.services["configs"]``."""

    def __init__(self, config: Config, apply: Callable[[], None]) -> None:
        self.config = config
        self.apply = apply

    def items(self) -> list[dict[str, str]]:
        out = []
        for spec in RUNTIME_KEYS:
            kind = _KIND[spec.key]
            out.append({"key": spec.key, "value": format_value(kind, self.config[spec.key]),
                        "datatpye": DATATYPES.get(kind, "string"), "app": APP})
        return out

    def update(self, app: str, key: str, value: Any) -> None:
        if app != APP:
            raise ApiError(Code.UNKNOWN_ERROR, f"unknown app {app!r}: config keys belong to "
                           f"{APP!r}", 404)
        spec = _RUNTIME.get(key)
        if spec is None:
            if key in _KIND:
                raise ApiError(Code.UNKNOWN_ERROR, f"{key!r} cannot be changed at runtime; "
                               "set it in the configuration and restart", 400)
            raise ApiError(Code.UNKNOWN_ERROR, f"unknown config key {key!r}", 400)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            text = str(value)
        else:
            raise bad_type("'value' must be a string")
        previous = self.config[key]
        try:
            self.config.set(key, text)
        except ConfigError as exc:
            raise bad_type(f"bad value for {exc}") from None
        try:
            self.apply()
        except Exception:
            self.config.set(key, previous)
            self.apply()
            raise


def runtime_config(req: ApiRequest) -> RuntimeConfig:
    service = req.ctx.services.get("configs")
    if not isinstance(service, RuntimeConfig):
        raise ApiError(Code.UNKNOWN_ERROR, "runtime configuration is not available", 404)
    return service


BODY = {
    "key": ("string", True, "configuration key, e.g. session.max_inflight"),
    "value": ("string", True, "new value, in the configuration file's syntax"),
}


def register(table: RouteTable) -> None:
    @table.route("get_all_configs", "GET", "/configs/", "Get all configs")
    async def get_all(req: ApiRequest) -> Any:
        return [{"node": req.ctx.node_name, "config": runtime_config(req).items()}]

    @table.route("get_all_configs", "GET", "/nodes/:node/configs/",
                 "Get all configs of a node")
    async def get_node(req: ApiRequest) -> Any:
        return runtime_config(req).items()

    async def update(req: ApiRequest) -> Any:
        key = req.arg("key")
        value = req.arg("value")
        absent = [n for n, v in (("key", key), ("value", value)) if v is None or v == ""]
        if absent:
            raise missing(*absent)
        if not isinstance(key, str):
            raise bad_type("'key' must be a string")
        runtime_config(req).update(req.params["app"], key, value)
        return None

    table.route("update_config", "PUT", "/configs/:app",
                "Update config of an application in the cluster", body=BODY)(update)
    table.route("update_node_config", "PUT", "/nodes/:node/configs/:app",
                "Update config of an application on a node", body=BODY)(update)
