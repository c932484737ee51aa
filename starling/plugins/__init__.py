"""Plugins (EMQ X v3's): the framework here, the rest in their own packages.

`starling.plugins` is the plugin framework (`plugins/framework`): what the
broker's extensions build on: the rule engine, gateways, the cluster, and the
plugins below.  `starling.plugins.auth` is the authentication and ACL chain
(one password module, each backend); every other plugin is a module or package
of its own (`starling.plugins.recon`, ...), with its REST routes when it has
some.  Plugins reach the core only through the broker facade and its hooks."""

from __future__ import annotations

from .framework.background import (
    cancel,
    positive_duration,
)
from .framework.conffile import (
    ConfFileError,
    parse_conf,
    read_conf,
)
from .framework.config_values import (
    parse_choice,
    parse_nonnegative_duration,
    parse_nonnegative_int,
    parse_port,
    parse_positive_int,
    parse_switch,
    parse_timeout,
)
from .framework.discovery import (
    discover_plugins,
)
from .framework.http_sink import (
    HttpSink,
    SinkStats,
    check_url,
)
from .framework.node_metrics import NodeReading, loop_lag, read_node
from .framework.persistence import (
    PluginPersistence,
    plugin_names,
)
from .framework.plugin import (
    PLUGIN_TYPES,
    ConfigKey,
    Plugin,
    PluginContext,
    PluginInfo,
    PluginListener,
)
from .framework.registry import (
    SEED_PLUGINS,
    PluginEntry,
    PluginError,
    PluginFactory,
    PluginRegistry,
    PluginUnavailable,
)
from .framework.storage import (
    PluginStore,
    Table,
)

__all__ = [
    "PLUGIN_TYPES",
    "SEED_PLUGINS",
    "ConfFileError",
    "ConfigKey",
    "HttpSink",
    "NodeReading",
    "Plugin",
    "PluginContext",
    "PluginEntry",
    "PluginError",
    "PluginFactory",
    "PluginInfo",
    "PluginListener",
    "PluginPersistence",
    "PluginRegistry",
    "PluginStore",
    "PluginUnavailable",
    "SinkStats",
    "Table",
    "cancel",
    "check_url",
    "discover_plugins",
    "loop_lag",
    "parse_choice",
    "parse_conf",
    "parse_nonnegative_duration",
    "parse_nonnegative_int",
    "parse_port",
    "parse_positive_int",
    "parse_switch",
    "parse_timeout",
    "plugin_names",
    "positive_duration",
    "read_conf",
    "read_node",
]
