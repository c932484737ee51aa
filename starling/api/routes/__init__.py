"""Route modules, one per resource; `build_table()` registers them in the
order of the seed document's route listing, with the routes of plugins that
hold their own (`PluginRoutes`, which the node passes in): the auth tables
first, as the seed lists them, the others (the ACL file, recon, reloader,
lua_hook) after the core's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..routing import RouteTable
from . import (
    alarms,
    apps,
    banned,
    brokers,
    configs,
    connections,
    listeners,
    metrics,
    nodes,
    plugins,
    pubsub,
    routes,
    rules,
    sessions,
    stats,
    subscriptions,
    trace,
    users,
)

MODULES = (users, alarms, apps, banned, brokers, configs, connections, listeners, metrics,
           nodes, plugins, pubsub, routes, sessions, stats, subscriptions, rules, trace)

#: What registers a plugin's routes in the table (`register(table)` of its routes module).
Registrar = Callable[[RouteTable], None]


@dataclass(frozen=True, slots=True)
class PluginRoutes:
    """The routes plugins hold: `first` are listed before the core's, `last` after."""

    first: tuple[Registrar, ...] = ()
    last: tuple[Registrar, ...] = ()


#: No plugin routes: the core's only.
NO_PLUGIN_ROUTES = PluginRoutes()


def build_table(plugin_routes: PluginRoutes = NO_PLUGIN_ROUTES) -> RouteTable:
    table = RouteTable()
    for register in (*plugin_routes.first, *(m.register for m in MODULES),
                     *plugin_routes.last):
        register(table)
    return table
