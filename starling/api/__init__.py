"""The EMQ X v3 management REST API (`/api/v3/`), served in the broker's loop."""

from __future__ import annotations

from .app import ManagementApp, RouteDispatcher
from .apps import App, AppRegistry
from .context import ApiContext, ListenerInfo
from .dashboard import Dashboard
from .prometheus import prometheus_routes
from .routes import build_table
from .routing import Route, RouteTable
from .server import HttpListener
from .users import DashboardUser, UserRegistry

__all__ = [
    "ApiContext",
    "App",
    "AppRegistry",
    "Dashboard",
    "DashboardUser",
    "HttpListener",
    "ListenerInfo",
    "ManagementApp",
    "Route",
    "RouteDispatcher",
    "RouteTable",
    "UserRegistry",
    "build_table",
    "prometheus_routes",
]
