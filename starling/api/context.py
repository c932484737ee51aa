"""What the API needs from the node, handed over by `starling.node`.

Route modules read live state through the management facade (`mgmt`) and,
for what it does not cover (publishing, ACL, configs), the broker facade;
they never reach into sessions, channels or sockets themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starling.broker import Broker
from starling.mgmt import ListenerInfo, Management

from .throttle import LoginThrottle

if TYPE_CHECKING:
    from .apps import AppRegistry


@dataclass(slots=True)
class ApiContext:
    broker: Broker
    apps: AppRegistry
    node_name: str
    version: str
    #: The management facade: every view, on this node or another.
    mgmt: Management
    #: Extra services later issues plug in (plugins, rules, banned, alarms...).
    services: dict[str, Any] = field(default_factory=dict)
    #: Default `_limit` of paginated lists (emqx_management's management.max_row_limit).
    max_row_limit: int = 10000
    #: Slows password guessing on every listener of this API (api/throttle.py).
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)


__all__ = ["ApiContext", "ListenerInfo"]
