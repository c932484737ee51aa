"""Plugins: the registry of every plugin EMQ X v3 lists, and their implementations.

Plugins talk to the core only through the broker facade and its hooks bus
(`starling.broker`), never its submodules.
"""

from __future__ import annotations

from .acl_file import AclFile, AclFileError, AclStatus
from .auth_backend import BackendAuthPlugin
from .auth_clientid import CLIENTID_SPEC, ClientIdAuthPlugin
from .auth_http import HttpAuthPlugin
from .auth_jwt import JwtAuthPlugin
from .auth_ldap import LdapAuthPlugin
from .auth_mongo import MongoAuthPlugin
from .auth_mysql import MysqlAuthPlugin
from .auth_pgsql import PgsqlAuthPlugin
from .auth_redis import RedisAuthPlugin
from .auth_table import TableAuthPlugin, TableSpec
from .auth_username import USERNAME_SPEC, UsernameAuthPlugin
from .conffile import ConfFileError, read_conf
from .dashboard import DashboardPlugin
from .delayed_publish import DelayedPublishPlugin
from .discovery import discover_plugins
from .http_sink import HttpSink, SinkStats
from .lua_hook import LuaHookPlugin
from .management import ManagementPlugin
from .persistence import PluginPersistence, plugin_names
from .psk_file import PskFilePlugin
from .recon import ReconPlugin
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
    PluginUnavailable,
)
from .reloader import ReloaderPlugin
from .retainer import RetainerPlugin
from .statsd import StatsdPlugin
from .storage import PluginStore
from .template import TemplatePlugin
from .web_hook import WebHookPlugin

__all__ = [
    "CLIENTID_SPEC",
    "PLUGIN_TYPES",
    "SEED_PLUGINS",
    "USERNAME_SPEC",
    "AclFile",
    "AclFileError",
    "AclStatus",
    "BackendAuthPlugin",
    "ClientIdAuthPlugin",
    "ConfFileError",
    "ConfigKey",
    "DashboardPlugin",
    "DelayedPublishPlugin",
    "HttpAuthPlugin",
    "HttpSink",
    "JwtAuthPlugin",
    "LdapAuthPlugin",
    "LuaHookPlugin",
    "ManagementPlugin",
    "MongoAuthPlugin",
    "MysqlAuthPlugin",
    "PgsqlAuthPlugin",
    "Plugin",
    "PluginContext",
    "PluginEntry",
    "PluginError",
    "PluginFactory",
    "PluginInfo",
    "PluginPersistence",
    "PluginRegistry",
    "PluginStore",
    "PluginUnavailable",
    "PskFilePlugin",
    "ReconPlugin",
    "RedisAuthPlugin",
    "ReloaderPlugin",
    "RetainerPlugin",
    "SinkStats",
    "StatsdPlugin",
    "TableAuthPlugin",
    "TableSpec",
    "TemplatePlugin",
    "UsernameAuthPlugin",
    "WebHookPlugin",
    "discover_plugins",
    "plugin_names",
    "read_conf",
]
