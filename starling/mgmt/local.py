"""This node, as the queries see it: the broker's read side and the node's parts the
management views need (listeners, the plugin registry).

`LocalNode.execute` is the entry point a cluster transport calls when another
node asks this one something.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starling.broker import Broker, BrokerQueries
from starling.plugins import PluginRegistry

from .fields import ListenerInfo
from .query import JSON, QUERIES, QueryError


class ListenerControl(Protocol):
    """Stops and starts MQTT listeners at runtime (the node implements it)."""

    def listener_known(self, name: str) -> bool: ...
    def listener_running(self, name: str) -> bool: ...
    async def start_listener(self, name: str) -> None: ...
    async def stop_listener(self, name: str) -> None: ...


#: Runs a whole API request that another node forwarded here (set by the API layer):
#: (method, path segments under /api/v3, query string, body) → {"status", "body"}.
Forwarder = Callable[[str, list[str], dict[str, str], JSON], Awaitable[JSON]]


@dataclass(slots=True)
class LocalNode:
    name: str
    version: str
    broker: Broker
    #: Live listener descriptions (MQTT and HTTP), read on each request.
    listeners: Callable[[], list[ListenerInfo]] = lambda: []
    listener_control: ListenerControl | None = None
    plugins: PluginRegistry | None = None
    forwarder: Forwarder | None = None
    reads: BrokerQueries = field(init=False)

    def __post_init__(self) -> None:
        self.reads = BrokerQueries(self.broker)

    async def execute(self, query: str, params: Mapping[str, Any]) -> JSON:
        """Run the named query here with JSON `params`; its JSON result.  Raises
        `QueryError` for an unknown query or bad parameters, as for any refusal."""
        found = QUERIES.get(query)
        if found is None:
            raise QueryError("unknown_query", query)
        return await found.execute(self, params)

    def plugin_registry(self) -> PluginRegistry:
        if self.plugins is None:
            raise QueryError("no_registry", "the plugin registry is not available")
        return self.plugins
