"""/configs: registered by its own work item; nothing routed yet."""

from __future__ import annotations

from ..routing import RouteTable


def register(table: RouteTable) -> None:
    return None
