"""The EMQ X v3 management REST API (`/api/v3/`), served in the broker's loop."""

from __future__ import annotations

from .app import ManagementApp, RouteDispatcher
from .apps import App, AppRegistry
from .context import ApiContext, ListenerInfo
from .dashboard import Dashboard
from .errors import ApiError, Code, bad_type, missing, not_found
from .prometheus import prometheus_routes
from .request import ApiRequest
from .routes import PluginRoutes, build_table
from .routes.configs import RuntimeConfig
from .routes.plugins import loaded_instance
from .routes.plugins import registry as plugin_registry
from .routing import Route, RouteTable
from .server import HttpLimits, HttpListener
from .users import DashboardUser, UserRegistry

__all__ = [
    "ApiContext",
    "ApiError",
    "ApiRequest",
    "App",
    "AppRegistry",
    "Code",
    "Dashboard",
    "DashboardUser",
    "HttpLimits",
    "HttpListener",
    "ListenerInfo",
    "ManagementApp",
    "PluginRoutes",
    "Route",
    "RouteDispatcher",
    "RouteTable",
    "RuntimeConfig",
    "UserRegistry",
    "bad_type",
    "build_table",
    "loaded_instance",
    "missing",
    "not_found",
    "plugin_registry",
    "prometheus_routes",
]
