"""What the API needs from the node, handed over by `starling.node`.

Route modules read live state through this object and the broker facade;
they never reach into sessions, channels or sockets themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starling.broker import Broker

if TYPE_CHECKING:
    from .apps import AppRegistry


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    protocol: str  #: "mqtt:tcp", "http:management", ...
    name: str  #: "mqtt:tcp:default"
    host: str
    port: int
    acceptors: int
    max_conns: int
    current_conns: int
    shutdown_count: dict[str, int]
    running: bool = True
    path: str = ""  #: the WebSocket endpoint's HTTP path (mqtt:ws / mqtt:wss only)


@dataclass(slots=True)
class ApiContext:
    broker: Broker
    apps: AppRegistry
    node_name: str
    version: str
    #: Live listener descriptions (MQTT and HTTP), read on each request.
    listeners: Callable[[], list[ListenerInfo]] = lambda: []
    #: Extra services later issues plug in (plugins, rules, banned, alarms...).
    services: dict[str, Any] = field(default_factory=dict)
    #: Default `_limit` of paginated lists (emqx_management's management.max_row_limit).
    max_row_limit: int = 10000
