"""/auth_clientid: emqx_auth_clientid's entries (shape in `auth_tables`)."""

from __future__ import annotations

from starling.plugins import CLIENTID_SPEC

from ..routing import RouteTable
from .auth_tables import register_auth_table


def register(table: RouteTable) -> None:
    register_auth_table(table, CLIENTID_SPEC)
