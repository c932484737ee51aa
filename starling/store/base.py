"""The store interface.

Writes are *operations* — tuples ``(name, *args)`` — applied in batches by
`apply()`, one transaction per batch.  The broker's journal collects them on
the event loop and hands whole batches to the store (in a worker thread for
SQLite), which is how many messages share one commit.

Operation names and arguments:

    ("kv_put", table, key, json_text)          ("kv_delete", table, key)
    ("retained_put", MessageRecord)            ("retained_delete", topic)
    ("session_put", client_id, username, expiry_interval, created_at, disconnected_at
                    [, peercert])
    ("session_delete", client_id)              (drops its subscriptions and messages too)
    ("subscription_put", client_id, SubscriptionRecord)
    ("subscription_delete", client_id, topic_filter)
    ("single_put", client_id, qos, retain, packet_id, released, MessageRecord)
                                               (a message held by one session: one row)
    ("single_update", message_id, packet_id, released)
    ("single_delete", message_id)
    ("single_share", message_id)               (a second session holds it: the single
                                                row becomes a body and a holding)
    ("message_put", MessageRecord)             (a message body shared by sessions)
    ("message_delete", message_id)
    ("session_message_put", client_id, message_id, seq, qos, retain, packet_id, released)
    ("session_message_delete", client_id, message_id)
    ("awaiting_put", client_id, packet_id)     ("awaiting_delete", client_id, packet_id)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .records import MessageRecord, SessionRecord

Operation = tuple[Any, ...]


class StoreError(Exception):
    """The store cannot be used (corrupt, from a newer version, unreadable)."""


class Store(ABC):
    #: False for the memory store: nothing survives, so nothing needs waiting for.
    durable: bool = True
    #: True when a commit is quick enough to run on the event loop (no fsync).
    cheap_commit: bool = False

    @abstractmethod
    def open(self) -> None:
        """Open or create; raise StoreError with the file's name if unusable."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def apply(self, operations: Sequence[Operation]) -> None:
        """Apply a batch of operations atomically (one transaction)."""

    @abstractmethod
    def load_kv(self, table: str) -> dict[str, str]: ...

    @abstractmethod
    def load_retained(self) -> list[MessageRecord]: ...

    @abstractmethod
    def load_sessions(self) -> list[SessionRecord]: ...

    def max_message_id(self) -> int:
        return 0


class MemoryStore(Store):
    """`store.backend = "memory"`: keeps nothing; a throwaway node."""

    durable = False

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def apply(self, operations: Sequence[Operation]) -> None:
        return None

    def load_kv(self, table: str) -> dict[str, str]:
        return {}

    def load_retained(self) -> list[MessageRecord]:
        return []

    def load_sessions(self) -> list[SessionRecord]:
        return []
