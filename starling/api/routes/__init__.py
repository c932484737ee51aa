"""Route modules, one per resource; `build_table()` registers them in the
order of the seed document's route listing."""

from __future__ import annotations

from ..routing import RouteTable
from . import (
    acl,
    alarms,
    apps,
    auth_clientid,
    auth_username,
    banned,
    brokers,
    configs,
    connections,
    listeners,
    lua_hook,
    metrics,
    nodes,
    plugins,
    pubsub,
    recon,
    reloader,
    routes,
    rules,
    sessions,
    stats,
    subscriptions,
    trace,
    users,
)

MODULES = (auth_clientid, auth_username, users, alarms, apps, banned, brokers, configs,
           connections, listeners, metrics, nodes, plugins, pubsub, routes, sessions, stats,
           subscriptions, acl, rules, trace)
#: Routes of feature plugins (docs/feature-plugins.md), answered while the plugin is loaded.
FEATURE_MODULES = (recon, reloader, lua_hook)


def build_table() -> RouteTable:
    table = RouteTable()
    for module in (*MODULES, *FEATURE_MODULES):
        module.register(table)
    return table
