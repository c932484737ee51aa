"""MemoryStore (`store.backend = "memory"`): accepts every operation, keeps
nothing, and tells the journal there is nothing to wait for."""

from __future__ import annotations

from starling.store import MemoryStore, MessageRecord, Store, SubscriptionRecord


def test_memory_store_keeps_nothing() -> None:
    store = MemoryStore()
    assert isinstance(store, Store)
    assert store.durable is False
    store.open()
    m = MessageRecord(1, "t", b"p", 1, True, b"\x00", "c", None, 1.0, None)
    store.apply([
        ("kv_put", "apps", "a", "{}"), ("retained_put", m), ("message_put", m),
        ("session_put", "c", None, 60.0, 1.0, None),
        ("subscription_put", "c", SubscriptionRecord("t", 1)),
        ("session_message_put", "c", 1, 1, 1, False, None, False), ("awaiting_put", "c", 1),
    ])
    assert store.load_kv("apps") == {}
    assert store.load_retained() == []
    assert store.load_sessions() == []
    assert store.max_message_id() == 0
    store.close()
    store.open()  # reopening is harmless and still empty
    assert store.load_sessions() == []
