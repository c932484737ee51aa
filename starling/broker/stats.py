"""Gauges of the broker's current state, under the seed's stat names.

`*/count` is read live from the structures that hold the state; `*/max` is
the high-water mark since start, raised whenever the stats are sampled
(every second by the broker's housekeeping, and on every read).

Plugins add gauges of their own while they are loaded (`add_gauge`, e.g.
emqx_delayed_publish's ``delayed``); they appear after the core's.
"""

from __future__ import annotations

from collections.abc import Callable

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
    def __init__(self, core: Callable[[], dict[str, int]]) -> None:
        #: Reads the core's gauges (`STAT_NAMES`) from the broker's state.
        self._core = core
        self._max: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self._gauges: dict[str, Callable[[], int]] = {}

    def add_gauge(self, name: str, read: Callable[[], int]) -> None:
        """Report `read()` as `<name>/count` (and its high-water mark as `<name>/max`)."""
        if name in STAT_NAMES:
            raise ValueError(f"{name} is a core stat")
        self._gauges[name] = read
        self._max.setdefault(name, 0)

    def remove_gauge(self, name: str) -> None:
        self._gauges.pop(name, None)

    def current(self) -> dict[str, int]:
        return self._core() | {name: read() for name, read in self._gauges.items()}

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
