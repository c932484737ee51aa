"""/auth_username: emqx_auth_username's entries (shape in `auth_tables`)."""

from __future__ import annotations

from starling.plugins import USERNAME_SPEC

from ..routing import RouteTable
from .auth_tables import register_auth_table


def register(table: RouteTable) -> None:
    register_auth_table(table, USERNAME_SPEC)
