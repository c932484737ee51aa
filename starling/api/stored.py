"""Management tables kept in the store: rows by key, loaded at start and
written through on every change (apps, dashboard users)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar, Generic, TypeVar

Row = TypeVar("Row")


class StoredTable(Generic[Row]):
    """A dict of dataclass rows mirrored to the store's key-value table `TABLE`."""

    TABLE: ClassVar[str]

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._save: Callable[[str, str, str], None] | None = None
        self._delete: Callable[[str, str], None] | None = None

    def _row(self, data: dict[str, Any]) -> Row:
        """A row from its stored JSON object."""
        raise NotImplementedError

    def attach(self, stored: dict[str, str], save: Callable[[str, str, str], None],
               delete: Callable[[str, str], None]) -> None:
        """Load the rows the store holds; from now on write changes back."""
        for key, text in stored.items():
            self._rows[key] = self._row(json.loads(text))
        self._save = save
        self._delete = delete

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> Row | None:
        return self._rows.get(key)

    def all(self) -> list[Row]:
        return list(self._rows.values())

    def apply_row(self, key: str, text: str | None) -> None:
        """A row changed on another node of the cluster (None: deleted): memory only,
        the cluster keeps this node's store copy."""
        if text is None:
            self._rows.pop(key, None)
        else:
            self._rows[key] = self._row(json.loads(text))
        self._row_changed(key)

    def _row_changed(self, key: str) -> None:
        """A subclass's caches of `key` are stale."""

    def _write(self, key: str, row: Row) -> None:
        self._rows[key] = row
        if self._save is not None:
            self._save(self.TABLE, key, json.dumps(asdict(row)))  # type: ignore[call-overload]

    def _remove(self, key: str) -> bool:
        found = self._rows.pop(key, None) is not None
        if found and self._delete is not None:
            self._delete(self.TABLE, key)
        return found
