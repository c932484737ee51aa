"""Gauges of the broker's current state, under the seed's stat names.

`*/count` is read live from the structures that hold the state; `*/max` is
the high-water mark since start, raised whenever the stats are sampled
(every second by the broker's housekeeping, and on every read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broker import Broker

STAT_NAMES: tuple[str, ...] = (
    "connections",
    "sessions",
    "sessions/persistent",
    "topics",
    "routes",
    "subscribers",
    "subscriptions",
    "subscriptions/shared",
    "suboptions",
    "retained",
)


class Stats:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._max: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)

    def current(self) -> dict[str, int]:
        b = self._broker
        routes = b.router.route_count + b.shared_router.route_count
        subscriptions = b.router.subscription_count
        return {
            "connections": len(b.channels),
            "sessions": len(b.sessions),
            "sessions/persistent": sum(1 for s in b.sessions.values() if s.persistent),
            "topics": routes,
            "routes": routes,
            "subscribers": subscriptions,
            "subscriptions": subscriptions,
            "subscriptions/shared": sum(len(g.members) for g in b.shared_groups.values()),
            "suboptions": subscriptions,
            "retained": len(b.retained),
        }

    def sample(self) -> dict[str, int]:
        """Every stat as `<name>/count` and `<name>/max` (the REST and $SYS form)."""
        out: dict[str, int] = {}
        highs = self._max
        for name, value in self.current().items():
            if value > highs[name]:
                highs[name] = value
            out[f"{name}/count"] = value
            out[f"{name}/max"] = highs[name]
        return out
