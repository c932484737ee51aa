"""The plugin framework: what a plugin is (`Plugin`, `PluginContext`, `ConfigKey`,
`PluginInfo`), the registry that loads and unloads them (`PluginRegistry`, the
seed's catalogue), config values, the store tables plugins keep, the persisted
active set and configs, entry-point discovery, and what several plugins share
(background tasks, the HTTP sink of web hooks and rule resources, the node's
process metrics)."""

from __future__ import annotations

from . import node_metrics
from .background import (
    cancel,
    positive_duration,
)
from .conffile import (
    ConfFileError,
    parse_conf,
    read_conf,
)
from .config_values import (
    parse_choice,
    parse_nonnegative_duration,
    parse_nonnegative_int,
    parse_port,
    parse_positive_int,
    parse_switch,
    parse_timeout,
)
from .discovery import (
    discover_plugins,
)
from .http_sink import (
    HttpSink,
    SinkStats,
    check_url,
)
from .persistence import (
    PluginPersistence,
    plugin_names,
)
from .plugin import (
    ALREADY_STARTED,
    BAD_VALUE,
    IN_USE,
    LOAD_FAILED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    NOT_STARTED,
    PLUGIN_TYPES,
    UNKNOWN_KEY,
    ConfigKey,
    Plugin,
    PluginContext,
    PluginError,
    PluginFactory,
    PluginInfo,
    Watcher,
    parse_str,
)
from .registry import (
    SEED_PLUGINS,
    PluginEntry,
    PluginRegistry,
)
from .storage import (
    PluginStore,
    Table,
)

__all__ = [
    "ALREADY_STARTED",
    "BAD_VALUE",
    "IN_USE",
    "LOAD_FAILED",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "NOT_STARTED",
    "PLUGIN_TYPES",
    "SEED_PLUGINS",
    "UNKNOWN_KEY",
    "ConfFileError",
    "ConfigKey",
    "HttpSink",
    "Plugin",
    "PluginContext",
    "PluginEntry",
    "PluginError",
    "PluginFactory",
    "PluginInfo",
    "PluginPersistence",
    "PluginRegistry",
    "PluginStore",
    "SinkStats",
    "Table",
    "Watcher",
    "cancel",
    "check_url",
    "discover_plugins",
    "node_metrics",
    "parse_choice",
    "parse_conf",
    "parse_nonnegative_duration",
    "parse_nonnegative_int",
    "parse_port",
    "parse_positive_int",
    "parse_str",
    "parse_switch",
    "parse_timeout",
    "plugin_names",
    "positive_duration",
    "read_conf",
]
