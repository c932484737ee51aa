"""Plugins: the registry of every plugin EMQ X v3 lists, and their implementations.

Plugins talk to the core only through the broker facade and its hooks bus
(`starling.broker`), never its submodules.
"""

from __future__ import annotations

from .management import ManagementPlugin
from .registry import (
    PLUGIN_TYPES,
    SEED_PLUGINS,
    ConfigKey,
    Plugin,
    PluginContext,
    PluginEntry,
    PluginError,
    PluginFactory,
    PluginInfo,
    PluginRegistry,
)

__all__ = [
    "PLUGIN_TYPES",
    "SEED_PLUGINS",
    "ConfigKey",
    "ManagementPlugin",
    "Plugin",
    "PluginContext",
    "PluginEntry",
    "PluginError",
    "PluginFactory",
    "PluginInfo",
    "PluginRegistry",
]
