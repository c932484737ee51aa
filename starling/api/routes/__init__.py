"""Route modules, one per resource; `build_table()` registers them in the
order of the seed document's route listing."""

from __future__ import annotations

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
    sessions,
    stats,
    subscriptions,
)

MODULES = (alarms, apps, banned, brokers, configs, connections, listeners, metrics, nodes,
           plugins, pubsub, routes, sessions, stats, subscriptions)


def build_table() -> RouteTable:
    table = RouteTable()
    for module in MODULES:
        module.register(table)
    return table
