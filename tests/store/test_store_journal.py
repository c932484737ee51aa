"""The journal over a real SQLiteStore: group commit, the durable-mode promise
that an after_commit callback (which releases a PUBACK/PUBREC) runs only once
the operations recorded before it are on disk, relaxed mode, and what a failed
commit does."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from starling.broker import Journal
from starling.store import MemoryStore, Operation, SQLiteStore


class CountingStore(SQLiteStore):
    """Counts batches; fails the first `fail` of them (as a full disk would)."""

    def __init__(self, path: Path, fail: int = 0) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.fail = fail

    def apply(self, operations: Sequence[Operation]) -> None:
        if self.fail:
            self.fail -= 1
            # like SQLITE_FULL half way through: nothing of the batch is kept
            super().apply([*operations, ("no_such_operation",)])
        super().apply(operations)
        self.batches.append(len(operations))


def on_disk(path: Path) -> set[str]:
    """Keys of the kv table as another connection (a restarted node) sees them."""
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute("SELECT key FROM kv")}
    finally:
        db.close()


def test_durable_callbacks_run_after_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "starling.db"
    store = CountingStore(path)
    store.open()
    seen: list[tuple[str, bool]] = []

    async def main() -> None:
        journal = Journal(store, "durable")
        journal.start()
        for i in range(200):
            journal.kv_put("t", f"k{i}", "v")
            journal.after_commit(lambda i=i: seen.append((f"k{i}", f"k{i}" in on_disk(path))))
            if i % 20 == 0:
                await asyncio.sleep(0)  # let some batches start while others collect
        await journal.close()

    asyncio.run(main())
    store.close()
    assert len(seen) == 200
    assert all(found for _, found in seen), [k for k, found in seen if not found][:5]
    assert sum(store.batches) == 200
    assert len(store.batches) < 200 / 5, store.batches  # group commit, not one per op


def test_after_commit_with_nothing_pending_runs_at_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "starling.db")
    store.open()
    ran: list[int] = []

    async def main() -> None:
        journal = Journal(store, "durable")
        journal.start()
        journal.after_commit(lambda: ran.append(1))
        assert ran == [1]
        await journal.close()

    asyncio.run(main())
    store.close()


def test_relaxed_mode_commits_on_the_interval_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "starling.db"
    store = CountingStore(path)
    store.open()

    async def main() -> None:
        journal = Journal(store, "relaxed", interval=0.05)
        journal.start()
        ran: list[int] = []
        journal.kv_put("t", "first", "v")
        journal.after_commit(lambda: ran.append(1))
        assert ran == [1]  # relaxed: nobody waits for the commit
        assert on_disk(path) == set()  # not yet: it waits for the interval
        deadline = asyncio.get_running_loop().time() + 5
        while "first" not in on_disk(path):
            assert asyncio.get_running_loop().time() < deadline, "never committed"
            await asyncio.sleep(0.01)
        journal.kv_put("t", "last", "v")
        await journal.close()  # a clean stop commits what is pending

    asyncio.run(main())
    store.close()
    assert on_disk(path) == {"first", "last"}


def test_memory_store_journal_is_disabled() -> None:
    async def main() -> None:
        journal = Journal(MemoryStore(), "durable")
        journal.start()
        assert not journal.enabled and not journal.durable
        ran: list[int] = []
        journal.after_commit(lambda: ran.append(1))
        assert ran == [1]
        await journal.close()

    asyncio.run(main())


def test_failed_commit_keeps_acknowledgements_back_and_retries(tmp_path: Path) -> None:
    """A batch that fails to commit (disk full, database locked) is not on disk, so
    the acknowledgements waiting for it must stay held; the batch is retried and
    its operations are not lost."""
    path = tmp_path / "starling.db"
    store = CountingStore(path, fail=2)
    store.open()
    released: list[bool] = []

    async def main() -> None:
        journal = Journal(store, "durable")
        journal.start()
        journal.kv_put("t", "acked", "v")
        journal.after_commit(lambda: released.append("acked" in on_disk(path)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not released and journal.failures < 2:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        journal.kv_put("t", "later", "v")
        journal.after_commit(lambda: released.append("later" in on_disk(path)))
        while len(released) < 2:
            assert loop.time() < deadline, (journal.failures, released)
            await asyncio.sleep(0.01)
        await journal.close()

    asyncio.run(main())
    store.close()
    assert released == [True, True]  # released only once their batch was on disk
    assert on_disk(path) == {"acked", "later"}
