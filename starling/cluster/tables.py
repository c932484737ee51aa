"""The node's key-value tables that every node of the cluster shares: management
apps, dashboard users and their sign-in tokens, banned clients, emqx_auth_clientid / emqx_auth_username
entries, rules and resources, delayed messages.

Each table keeps living where it lives on a lone node (an object in memory, rows
in the node's store); this module adds one `Replica` over the ``tables``
bucket, keyed ``<table>/<key>``.  A change made on this node goes to the store
and to the bucket; a change made on another node goes to the store (the node's
local copy, which is what a restart reads first) and to the table's object
through the applier registered for it.  Which plugins are loaded is not shared:
that is each node's own state, as in EMQ X.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from .connection import NatsConnection
from .replica import Replica

log = logging.getLogger(__name__)

#: Store tables every node shares (the rest, e.g. `plugins`, stay per node).
SHARED = frozenset({"apps", "users", "dashboard_tokens", "banned", "auth_clientid",
                    "auth_username", "rules", "resources", "delayed_publish"})

Applier = Callable[[str, str | None], None]


class SharedTables:
    def __init__(self, conn: NatsConnection, bucket: str, origin: str,
                 save: Callable[[str, str, str], None], delete: Callable[[str, str], None],
                 load: Callable[[str], Mapping[str, str]]) -> None:
        self._save = save
        self._delete = delete
        self._load = load
        self._appliers: dict[str, Applier] = {}
        self._fallback: Callable[[str, str, str | None], None] | None = None
        self.replica = Replica(conn, bucket, origin, self._apply, self._local)

    def register(self, table: str, applier: Applier) -> None:
        """Who takes `table`'s rows changed on other nodes."""
        self._appliers[table] = applier

    def register_rest(self, applier: Callable[[str, str, str | None], None]) -> None:
        """Who takes the rows of shared tables without their own applier (plugin tables)."""
        self._fallback = applier

    # -- this node's changes -------------------------------------------------------------
    def put(self, table: str, key: str, text: str) -> None:
        if table in SHARED:
            self.replica.put(f"{table}/{key}", text.encode())

    def delete(self, table: str, key: str) -> None:
        if table in SHARED:
            self.replica.delete(f"{table}/{key}")

    # -- the others' -----------------------------------------------------------------------
    def _apply(self, full_key: str, payload: bytes | None) -> None:
        table, sep, key = full_key.partition("/")
        if not sep or table not in SHARED:
            return
        text = payload.decode() if payload is not None else None
        if text is None:
            self._delete(table, key)
        else:
            self._save(table, key, text)
        applier = self._appliers.get(table)
        try:
            if applier is not None:
                applier(key, text)
            elif self._fallback is not None:
                self._fallback(table, key, text)
        except Exception:
            log.exception("cluster: applying a change of %s/%s failed", table, key)

    def _local(self) -> dict[str, bytes]:
        rows: dict[str, bytes] = {}
        for table in SHARED:
            for key, text in self._load(table).items():
                rows[f"{table}/{key}"] = text.encode()
        return rows
