"""Tables of JSON rows for plugins, kept in memory and written through to the
node's store.

A plugin asks its context for a table by name (``context.store.table("auth_clientid")``)
and reads and changes it like a small dict; every change is handed to the node's
journal (the store's ``kv`` table, one row per key, the value as JSON text), so
the rows survive a restart.  The mirror lives in the `PluginStore`, not in the
plugin object, so a plugin that is unloaded and loaded again finds its rows,
also with ``store.backend = "memory"`` where nothing reaches a disk.

The registry's own record of which plugins are loaded and how they are
configured (table ``plugins``) is kept the same way by the node.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

Load = Callable[[str], Mapping[str, str]]
Save = Callable[[str, str, str], None]
Delete = Callable[[str, str], None]


class Table:
    """One named table: key (a string) → a JSON value."""

    __slots__ = ("_delete", "_rows", "_save", "_watchers", "name")

    def __init__(self, name: str, rows: dict[str, Any], save: Save | None,
                 delete: Delete | None) -> None:
        self.name = name
        self._rows = rows
        self._save = save
        self._delete = delete
        self._watchers: list[Callable[[str, Any], None]] = []

    def watch(self, callback: Callable[[str, Any], None] | None) -> None:
        """Call ``callback(key, value or None)`` when another node of the cluster
        changes a row (`apply_row`); None: stop (all watchers)."""
        if callback is None:
            self._watchers.clear()
        else:
            self._watchers.append(callback)

    def apply_row(self, key: str, text: str | None) -> None:
        """A row changed on another node of the cluster: memory only, then the
        watchers are told."""
        value: Any = None
        if text is None:
            if self._rows.pop(key, None) is None:
                return
        else:
            try:
                value = self._rows[key] = json.loads(text)
            except ValueError:
                log.error("store table %s: replicated row %r is not JSON; ignored",
                          self.name, key)
                return
        for callback in list(self._watchers):
            try:
                callback(key, value)
            except Exception:
                log.exception("store table %s: watcher of %r failed", self.name, key)

    def get(self, key: str) -> Any:
        return self._rows.get(key)

    def put(self, key: str, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self._rows[key] = json.loads(text)  # what a restart will read back
        if self._save is not None:
            self._save(self.name, key, text)

    def delete(self, key: str) -> bool:
        """Remove a row; False if there was none."""
        if self._rows.pop(key, None) is None:
            return False
        if self._delete is not None:
            self._delete(self.name, key)
        return True

    def keys(self) -> list[str]:
        return list(self._rows)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._rows.items())

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._rows))

    def __len__(self) -> int:
        return len(self._rows)


class PluginStore:
    """Every plugin table of a node.  Without `load`/`save`/`delete` (a registry
    made outside a node, as in tests) the tables live in memory only."""

    def __init__(self, load: Load | None = None, save: Save | None = None,
                 delete: Delete | None = None) -> None:
        self._load = load
        self._save = save
        self._delete = delete
        self._tables: dict[str, Table] = {}

    def apply_row(self, table: str, key: str, text: str | None) -> None:
        """A row of `table` changed on another node of the cluster (the table is
        opened now, so the change is in memory whatever the store has committed)."""
        self.table(table).apply_row(key, text)

    def table(self, name: str) -> Table:
        """The table `name`, read from the node's store the first time it is asked for
        (so only after the store is open: when plugins load, not when they are listed)."""
        table = self._tables.get(name)
        if table is None:
            rows: dict[str, Any] = {}
            for key, text in (self._load(name) if self._load is not None else {}).items():
                try:
                    rows[key] = json.loads(text)
                except ValueError:
                    log.error("store table %s: row %r is not JSON; ignored", name, key)
            table = self._tables[name] = Table(name, rows, self._save, self._delete)
        return table
