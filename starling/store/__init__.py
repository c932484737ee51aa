"""Persistence: the store interface, SQLite (default) and memory backends."""

from __future__ import annotations

from .base import MemoryStore, Operation, Store, StoreError
from .records import MessageRecord, SessionMessageRecord, SessionRecord, SubscriptionRecord
from .sqlite import SCHEMA_VERSION, SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "MessageRecord",
    "Operation",
    "SQLiteStore",
    "SessionMessageRecord",
    "SessionRecord",
    "Store",
    "StoreError",
    "SubscriptionRecord",
]
