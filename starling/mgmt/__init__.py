"""The management facade (EMQ X's emqx_mgmt): every view and action the REST API
and the dashboard need, as named queries that run on a node from JSON
parameters, with pagination pushed down to the broker and a node dimension the
cluster plugs into (`RemoteNodes`).  The only place that knows EMQ X's field
names (`fields`).  docs/architecture.md, "The management facade".
"""

from __future__ import annotations

from . import clients, fields, forward, node_views, plugin_views, system
from .facade import Management
from .fields import ListenerInfo, Row
from .local import ListenerControl, LocalNode
from .names import NAME_STYLES, NameStyle, metric_name, name_style, stat_name
from .nodes import NodeAnswer, NodeUnavailable, RemoteNodes, UnknownNode
from .paging import Page, PageSpec
from .query import JSON, QUERIES, Params, Query, QueryError

__all__ = [
    "JSON",
    "NAME_STYLES",
    "QUERIES",
    "ListenerControl",
    "ListenerInfo",
    "LocalNode",
    "Management",
    "NameStyle",
    "NodeAnswer",
    "NodeUnavailable",
    "Page",
    "PageSpec",
    "Params",
    "Query",
    "QueryError",
    "RemoteNodes",
    "Row",
    "UnknownNode",
    "clients",
    "fields",
    "forward",
    "metric_name",
    "name_style",
    "node_views",
    "plugin_views",
    "stat_name",
    "system",
]
