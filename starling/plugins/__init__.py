"""Plugins: the registry of every plugin EMQ X v3 lists, and their implementations.

Plugins talk to the core only through the broker facade and its hooks bus
(`starling.broker`), never its submodules.
"""

from __future__ import annotations

from .acl_file import AclFile, AclFileError, AclStatus
from .auth_clientid import CLIENTID_SPEC, ClientIdAuthPlugin
from .auth_table import TableAuthPlugin, TableSpec
from .auth_username import USERNAME_SPEC, UsernameAuthPlugin
from .conffile import ConfFileError, read_conf
from .dashboard import DashboardPlugin
from .discovery import discover_plugins
from .management import ManagementPlugin
from .persistence import PluginPersistence, plugin_names
from .psk_file import PskFilePlugin
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
from .storage import PluginStore
from .template import TemplatePlugin

__all__ = [
    "CLIENTID_SPEC",
    "PLUGIN_TYPES",
    "SEED_PLUGINS",
    "USERNAME_SPEC",
    "AclFile",
    "AclFileError",
    "AclStatus",
    "ClientIdAuthPlugin",
    "ConfFileError",
    "ConfigKey",
    "DashboardPlugin",
    "ManagementPlugin",
    "Plugin",
    "PluginContext",
    "PluginEntry",
    "PluginError",
    "PluginFactory",
    "PluginInfo",
    "PluginPersistence",
    "PluginRegistry",
    "PluginStore",
    "PskFilePlugin",
    "TableAuthPlugin",
    "TableSpec",
    "TemplatePlugin",
    "UsernameAuthPlugin",
    "discover_plugins",
    "plugin_names",
    "read_conf",
]
