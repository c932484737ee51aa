"""SQLiteStore: every operation round-trips through apply() and the loaders, a
batch is one transaction, bodies shared by sessions are kept until the last
holder lets go, and the open-time checks refuse what is not a current Starling
store (naming the file) instead of starting empty."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from starling.store import (
    SCHEMA_VERSION,
    MessageRecord,
    Operation,
    SessionMessageRecord,
    SessionRecord,
    SQLiteStore,
    StoreError,
    SubscriptionRecord,
)
from starling.store import sqlite as sqlite_module

APPLICATION_ID = sqlite_module.APPLICATION_ID


def record(mid: int, topic: str = "t", payload: bytes = b"p", qos: int = 1,
           retain: bool = False, **kw: object) -> MessageRecord:
    fields: dict[str, object] = dict(properties=b"\x00", sender="pub", username=None,
                                     timestamp=1700000000.5, expires_at=None)
    fields.update(kw)
    return MessageRecord(mid, topic, payload, qos, retain, **fields)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "d" / "starling.db"


@pytest.fixture
def store(path: Path):
    s = SQLiteStore(path)
    s.open()
    yield s
    s.close()


def reopen(store: SQLiteStore) -> SQLiteStore:
    store.close()
    fresh = SQLiteStore(store.path)
    fresh.open()
    return fresh


def pragma(path: Path, name: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        db.close()


# -- a fresh file ------------------------------------------------------------------
def test_fresh_store_is_marked_versioned_and_in_wal_mode(store: SQLiteStore, path: Path) -> None:
    assert path.exists()
    assert store.load_sessions() == []
    assert store.load_retained() == []
    assert store.load_kv("apps") == {}
    assert store.max_message_id() == 0
    assert pragma(path, "application_id") == APPLICATION_ID
    assert pragma(path, "user_version") == SCHEMA_VERSION
    mode = store.db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


@pytest.mark.parametrize(("sync", "level"), [("normal", 1), ("full", 2)])
def test_store_sync_sets_synchronous(path: Path, sync: str, level: int) -> None:
    s = SQLiteStore(path, sync)
    s.open()
    try:
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        s.close()


# -- round trips ---------------------------------------------------------------------
def test_kv_round_trip(store: SQLiteStore) -> None:
    store.apply([("kv_put", "apps", "a", '{"x": 1}'), ("kv_put", "apps", "b", "2"),
                 ("kv_put", "banned", "a", "other table")])
    store.apply([("kv_put", "apps", "a", '{"x": 3}'), ("kv_delete", "apps", "b")])
    store = reopen(store)
    assert store.load_kv("apps") == {"a": '{"x": 3}'}
    assert store.load_kv("banned") == {"a": "other table"}
    assert store.load_kv("nothing") == {}
    store.close()


def test_retained_round_trip_replace_and_delete(store: SQLiteStore) -> None:
    props = bytes([5, 0x03, 0x00, 0x02]) + b"ct"  # content type "ct"
    first = record(1, "a/b", b"old", qos=1, retain=True)
    second = record(2, "a/b", b"\x00\xffbinary", qos=2, retain=True, properties=props,
                    username="u", expires_at=1800000000.25)
    other = record(3, "a/c", b"c", qos=0, retain=True)
    store.apply([("retained_put", first), ("retained_put", other)])
    store.apply([("retained_put", second)])
    store = reopen(store)
    got = {m.topic: m for m in store.load_retained()}
    assert got == {"a/b": second, "a/c": other}
    assert store.max_message_id() == 3
    store.apply([("retained_delete", "a/b")])
    store = reopen(store)
    assert [m.topic for m in store.load_retained()] == ["a/c"]
    store.close()


def test_session_round_trip(store: SQLiteStore) -> None:
    """Session row, subscriptions with their options, queued / in-flight /
    released messages in seq order, awaiting-PUBREL ids."""
    m1, m2, m3 = record(11, "x/1", b"one"), record(12, "x/2", b"two", qos=2), record(
        13, "x/3", b"three", qos=2, expires_at=1900000000.0)
    store.apply([
        ("session_put", "c1", "user", 7200.0, 1700000000.0, None),
        ("subscription_put", "c1", SubscriptionRecord("x/#", 2, True, True, 2)),
        ("subscription_put", "c1", SubscriptionRecord("y", 1)),
        ("message_put", m3), ("message_put", m1), ("message_put", m2),
        # written out of seq order on purpose: load returns seq order
        ("session_message_put", "c1", 13, 13, 2, False, None, False),
        ("session_message_put", "c1", 11, 11, 1, True, 5, False),
        ("session_message_put", "c1", 12, 12, 2, False, 6, True),
        ("awaiting_put", "c1", 7), ("awaiting_put", "c1", 9), ("awaiting_put", "c1", 7),
    ])
    store = reopen(store)
    (s,) = store.load_sessions()
    assert (s.client_id, s.username, s.expiry_interval, s.created_at, s.disconnected_at) == (
        "c1", "user", 7200.0, 1700000000.0, None)
    assert sorted(s.subscriptions, key=lambda r: r.topic_filter) == [
        SubscriptionRecord("x/#", 2, True, True, 2), SubscriptionRecord("y", 1, False, False, 0)]
    assert s.messages == [
        SessionMessageRecord(m1, 11, 1, True, 5, False),
        SessionMessageRecord(m2, 12, 2, False, 6, True),
        SessionMessageRecord(m3, 13, 2, False, None, False),
    ]
    assert sorted(s.awaiting_rel) == [7, 9]
    assert store.max_message_id() == 13

    # state changes: disconnected, a subscription gone, one message acked, one moved
    store.apply([
        ("session_put", "c1", "user", 60.0, 1700000000.0, 1700000100.5),
        ("subscription_delete", "c1", "y"),
        ("session_message_delete", "c1", 11), ("message_delete", 11),
        ("session_message_put", "c1", 13, 13, 2, False, 8, False),
        ("awaiting_delete", "c1", 7),
    ])
    store = reopen(store)
    (s,) = store.load_sessions()
    assert (s.expiry_interval, s.disconnected_at) == (60.0, 1700000100.5)
    assert [r.topic_filter for r in s.subscriptions] == ["x/#"]
    assert [(h.message.id, h.packet_id, h.released) for h in s.messages] == [
        (12, 6, True), (13, 8, False)]
    assert s.awaiting_rel == [9]
    store.close()


def test_shared_body_outlives_one_holder(store: SQLiteStore) -> None:
    """A body held by two sessions survives the deletion of one of them; deleting
    the last holder's session removes the orphaned body from disk."""
    m = record(21, "s", b"shared")
    only_a = record(22, "s", b"only a")
    store.apply([
        ("session_put", "a", None, 100.0, 1.0, None), ("session_put", "b", None, 100.0, 1.0, None),
        ("message_put", m), ("message_put", only_a),
        ("session_message_put", "a", 21, 21, 1, False, None, False),
        ("session_message_put", "a", 22, 22, 1, False, None, False),
        ("session_message_put", "b", 21, 21, 1, False, None, False),
        ("awaiting_put", "a", 3),
        ("subscription_put", "a", SubscriptionRecord("s", 1)),
    ])
    store.apply([("session_delete", "a")])
    store = reopen(store)
    sessions = {s.client_id: s for s in store.load_sessions()}
    assert list(sessions) == ["b"]
    assert [h.message for h in sessions["b"].messages] == [m]
    rows = store.db.execute("SELECT id FROM messages ORDER BY id").fetchall()
    assert rows == [(21,)]
    for table in ("subscriptions", "awaiting_rel"):
        assert store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    store.apply([("session_delete", "b")])
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM session_messages").fetchone()[0] == 0
    store.close()


def test_message_put_twice_keeps_one_body(store: SQLiteStore) -> None:
    m = record(31)
    store.apply([("message_put", m), ("message_put", m)])
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


@pytest.mark.parametrize("fields", [
    {},                                                  # the common body: literals in SQL
    {"username": "alice"},
    {"retain": True},
    {"properties": b"\x03\x00\x04text"},                 # content type
    {"expires_at": 1900000000.25, "username": "bob"},
    {"properties": b"", "sender": "s"},
], ids=["plain", "username", "retain", "properties", "expiry", "empty-properties"])
def test_every_body_shape_round_trips(store: SQLiteStore, fields: dict[str, object]) -> None:
    """Bodies are written by different statements depending on their shape (the
    usual one with its empty properties and NULLs as literals): each stores the
    same row and loads back the same record."""
    m = record(41, "s/1", b"\x00body\xff", **fields)
    store.apply([("message_put", m), ("session_put", "c", None, 60.0, 1.0, None),
                 ("session_message_put", "c", 41, 41, 1, 1, 3, 0)])
    row = store.db.execute("SELECT * FROM messages").fetchone()
    assert row == sqlite_module._message_row(m)
    store = reopen(store)
    (s,) = store.load_sessions()
    assert s.messages == [SessionMessageRecord(m, 41, 1, True, 3, False)]
    store.close()


_CLIENTS = st.sampled_from(["a", "b"])
_IDS = st.integers(1, 4)
_SINGLE_IDS = st.integers(5, 6)  # messages stored as single rows (and then maybe shared)
_OPS = st.one_of(
    st.builds(lambda i: ("message_put", record(i, f"t/{i}", b"p%d" % i)), _IDS),
    st.builds(lambda i: ("message_delete", i), _IDS),
    st.builds(lambda c, i, pid, rel: ("session_message_put", c, i, i, 1, False, pid, rel),
              _CLIENTS, _IDS, st.none() | st.integers(1, 9), st.booleans()),
    st.builds(lambda c, i: ("session_message_delete", c, i), _CLIENTS, _IDS),
    st.builds(lambda c: ("session_put", c, None, 60.0, 1.0, None), _CLIENTS),
    st.builds(lambda c: ("session_delete", c), _CLIENTS),
    st.builds(lambda c, pid: ("awaiting_put", c, pid), _CLIENTS, st.integers(1, 3)),
    st.builds(lambda c, i, pid, user: ("single_put", c, 1, 0, pid, 0,
                                       record(i, f"t/{i}", b"s%d" % i, username=user)),
              _CLIENTS, _SINGLE_IDS, st.none() | st.integers(1, 9), st.none() | st.just("u")),
    st.builds(lambda i, pid, rel: ("single_update", i, pid, rel),
              _SINGLE_IDS, st.integers(1, 9), st.integers(0, 1)),
    st.builds(lambda i: ("single_delete", i), _SINGLE_IDS),
    st.builds(lambda i: ("single_share", i), _SINGLE_IDS),
)


def as_the_journal_writes(ops: list[Operation]) -> list[Operation]:
    """Keep the single-row operations the journal can emit: `single_put` of a
    message no session holds, and the others on a single row that exists."""
    live: set[int] = set()  # message ids with a single row
    used: set[int] = set()  # ... or shared since: never single again in one example
    kept: list[Operation] = []
    for op in ops:
        name = op[0]
        if name == "single_put":
            message_id = op[6].id
            if message_id in live or message_id in used:
                continue
            live.add(message_id)
        elif name.startswith("single_"):
            if op[1] not in live:
                continue
            if name != "single_update":
                live.discard(op[1])
            if name == "single_share":
                used.add(op[1])
        kept.append(op)
    return kept


def _tables(s: SQLiteStore) -> dict[str, list[tuple[object, ...]]]:
    return {t: s.db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in _TABLES}


_TABLES = ("sessions", "messages", "session_messages", "single_messages", "awaiting_rel")


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_OPS, max_size=30).map(as_the_journal_writes), cut=st.integers(0, 30))
@example(ops=[("single_put", "a", 1, 0, None, 0, record(5)), ("single_delete", 5),
              ("single_put", "a", 1, 0, None, 0, record(5)), ("single_delete", 5)], cut=1)
def test_one_batch_writes_what_the_operations_one_by_one_do(tmp_path: Path,
                                                            ops: list[Operation],
                                                            cut: int) -> None:
    """apply() writes the per-message rows by their net effect, grouped: whatever the
    interleaving, a batch leaves the tables as applying its operations singly does
    (a single row written and deleted in one batch is not written at all; one
    shared in the batch that wrote it becomes a body and a holding in Python).  The
    operations go in two batches, so the second finds rows of the first on disk."""
    batched, single = SQLiteStore(tmp_path / "b.db"), SQLiteStore(tmp_path / "s.db")
    for s in (batched, single):
        s.open()  # the files outlive one example: start from empty tables
        for table in _TABLES:
            s.db.execute(f"DELETE FROM {table}")
    try:
        batched.apply(ops[:cut])
        batched.apply(ops[cut:])
        for op in ops:
            single.apply([op])
        assert _tables(batched) == _tables(single)
    finally:
        batched.close()
        single.close()


@pytest.mark.parametrize("fields", [
    {},                                                  # the common body: literals in SQL
    {"username": "alice"},
    {"retain": True},
    {"properties": b"\x03\x00\x04text", "expires_at": 1900000000.25},
], ids=["plain", "username", "retain", "properties-expiry"])
def test_single_message_round_trips_in_one_row(store: SQLiteStore,
                                               fields: dict[str, object]) -> None:
    """A message held by one session: one row with its body, and no shared body or
    holding; it loads back as the same record, in flight or queued, marked single."""
    m = record(51, "s/1", b"\x00body\xff", **fields)
    queued = record(52, "s/2", b"queued")
    store.apply([("session_put", "c", None, 60.0, 1.0, None),
                 ("single_put", "c", 1, 1, 7, 0, m), ("single_put", "c", 1, 0, None, 0, queued)])
    assert store.db.execute("SELECT count(*) FROM single_messages").fetchone()[0] == 2
    for table in ("messages", "session_messages"):
        assert store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    store.apply([("single_update", 51, 7, 1)])  # PUBREC: released
    assert store.max_message_id() == 52
    store = reopen(store)
    (s,) = store.load_sessions()
    assert s.messages == [SessionMessageRecord(m, 51, 1, True, 7, True, single=True),
                          SessionMessageRecord(queued, 52, 1, False, None, False, single=True)]
    store.apply([("single_delete", 51), ("single_delete", 52)])
    assert store.db.execute("SELECT count(*) FROM single_messages").fetchone()[0] == 0
    store.close()


def test_single_rows_of_no_session_are_swept_at_start(store: SQLiteStore) -> None:
    """A single row whose session is gone (a leftover the journal should never
    make) is deleted when the sessions are loaded, not kept on disk forever."""
    store.apply([("session_put", "kept", None, 60.0, 1.0, None),
                 ("single_put", "kept", 1, 0, None, 0, record(71)),
                 ("single_put", "gone", 1, 0, None, 0, record(72))])
    store = reopen(store)
    (s,) = store.load_sessions()
    assert s.client_id == "kept" and [m.message.id for m in s.messages] == [71]
    rows = store.db.execute("SELECT msg_id FROM single_messages").fetchall()
    assert rows == [(71,)]
    store.close()


@pytest.mark.parametrize("same_batch", [True, False], ids=["same-batch", "on-disk"])
def test_second_holder_shares_a_single_message(store: SQLiteStore, same_batch: bool) -> None:
    """A second session holds a message stored as a single row (in the batch that
    wrote it, as in a fan-out, or later): both hold it after a restart, the body is
    kept until its last holder lets go."""
    m = record(61, "s", b"both")
    first: list[Operation] = [("session_put", "a", None, 60.0, 1.0, None),
                              ("session_put", "b", None, 60.0, 1.0, None),
                              ("single_put", "a", 1, 0, 3, 0, m), ("single_update", 61, 4, 0)]
    second: list[Operation] = [("single_share", 61),
                               ("session_message_put", "b", 61, 61, 1, 0, None, 0)]
    if same_batch:
        store.apply(first + second)
    else:
        store.apply(first)
        store.apply(second)
    store = reopen(store)
    held = {s.client_id: s.messages for s in store.load_sessions()}
    assert held == {"a": [SessionMessageRecord(m, 61, 1, False, 4, False)],
                    "b": [SessionMessageRecord(m, 61, 1, False, None, False)]}
    assert store.db.execute("SELECT count(*) FROM single_messages").fetchone()[0] == 0
    store.apply([("session_message_delete", "a", 61)])
    store = reopen(store)
    held = {s.client_id: s.messages for s in store.load_sessions()}
    assert held == {"a": [], "b": [SessionMessageRecord(m, 61, 1, False, None, False)]}
    store.apply([("session_message_delete", "b", 61), ("message_delete", 61)])
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    store.close()


def test_both_forms_load_in_sequence_order(store: SQLiteStore) -> None:
    """A session's messages come back in the order it got them, whichever form
    each is stored in (seq is the message id, which grows)."""
    store.apply([("session_put", "c", None, 60.0, 1.0, None), ("session_put", "d", None, 60.0, 1.0, None),
                 ("single_put", "c", 1, 0, None, 0, record(71)),
                 ("message_put", record(72)),
                 ("session_message_put", "c", 72, 72, 1, 0, None, 0),
                 ("session_message_put", "d", 72, 72, 1, 0, None, 0),
                 ("single_put", "c", 1, 0, None, 0, record(73))])
    store = reopen(store)
    held = {s.client_id: [h.message.id for h in s.messages] for s in store.load_sessions()}
    assert held == {"c": [71, 72, 73], "d": [72]}
    store.close()


def test_rows_of_unknown_sessions_are_not_loaded(store: SQLiteStore) -> None:
    """Subscriptions/messages/awaiting ids whose session row is gone (or a held
    message whose body is gone) are ignored on load, not attached to anything."""
    store.apply([
        ("subscription_put", "ghost", SubscriptionRecord("t", 1)),
        ("message_put", record(41)),
        ("session_message_put", "ghost", 41, 41, 1, False, None, False),
        ("awaiting_put", "ghost", 1),
        ("session_put", "real", None, 10.0, 1.0, 2.0),
        ("session_message_put", "real", 999, 999, 1, False, None, False),
    ])
    (s,) = store.load_sessions()
    assert (s.client_id, s.subscriptions, s.messages, s.awaiting_rel) == ("real", [], [], [])


def test_a_batch_is_one_transaction(store: SQLiteStore) -> None:
    """A failing operation rolls back the whole batch; the store stays usable."""
    store.apply([("kv_put", "t", "before", "1")])
    with pytest.raises(KeyError):
        store.apply([("kv_put", "t", "lost", "1"), ("retained_put", record(1, retain=True)),
                     ("no_such_operation",)])
    assert store.load_kv("t") == {"before": "1"}
    assert store.load_retained() == []
    store.apply([("kv_put", "t", "after", "1")])
    store = reopen(store)
    assert store.load_kv("t") == {"before": "1", "after": "1"}
    store.close()


def test_committed_batch_is_visible_to_another_connection(store: SQLiteStore,
                                                          path: Path) -> None:
    """apply() returns only after COMMIT: a second reader (another process after a
    crash, say) sees the batch without this connection closing."""
    store.apply([("session_put", "c", None, 5.0, 1.0, None)])
    other = sqlite3.connect(path)
    try:
        assert other.execute("SELECT client_id FROM sessions").fetchall() == [("c",)]
    finally:
        other.close()


def test_max_message_id_spans_messages_and_retained(store: SQLiteStore) -> None:
    store.apply([("retained_put", record(70, retain=True)), ("message_put", record(50))])
    assert store.max_message_id() == 70
    store.apply([("message_put", record(90))])
    assert store.max_message_id() == 90


# -- refusing what is not a current Starling store ----------------------------------
def test_garbage_file_is_refused_naming_it(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, just some bytes\n" * 200)
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(path).open()
    assert path.read_bytes().startswith(b"this is not a database")  # left alone


def test_newer_schema_version_is_refused(path: Path) -> None:
    s = SQLiteStore(path)
    s.open()
    s.apply([("kv_put", "apps", "a", "{}")])
    s.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(StoreError, match=r"(?s)" + str(path) + r".*999"):
        SQLiteStore(path).open()
    assert pragma(path, "user_version") == 999  # not "migrated" down


def test_foreign_sqlite_database_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO customers VALUES (1, 'x')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"(?s)" + str(path) + r".*not a Starling store"):
        SQLiteStore(path).open()
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM customers").fetchall() == [("x",)]
    assert db.execute("PRAGMA application_id").fetchone()[0] == 0
    db.close()


def test_other_application_id_is_refused(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id = 1234")
    db.execute("CREATE TABLE kv (x)")
    db.close()
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(path).open()


def test_starling_id_without_version_but_with_tables_is_refused(path: Path) -> None:
    """Marked as ours but user_version 0 while tables exist: not migrated over."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("CREATE TABLE kv (something_else TEXT)")
    db.close()
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(path).open()


def scribble(data: bytearray, page: int, page_size: int) -> None:
    start = (page - 1) * page_size
    for i in range(start + 8, start + page_size):
        data[i] = (i * 131 + 7) & 0xFF


def quick_check(path: Path) -> list[str] | None:
    """PRAGMA quick_check's rows; None when it cannot even run."""
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError:
        return None
    finally:
        db.close()


def filled_store(path: Path) -> int:
    """A checkpointed store with some data; returns its page size."""
    s = SQLiteStore(path)
    s.open()
    s.apply([("session_put", f"c{i}", None, 100.0, 1.0, None) for i in range(300)])
    s.apply([("kv_put", "apps", f"a{i}", "x" * 200) for i in range(300)])
    s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = int(s.db.execute("PRAGMA page_size").fetchone()[0])
    s.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return page_size


@pytest.mark.parametrize("damage", ["schema-readable", "check-reports-rows"])
def test_corrupt_pages_are_refused_at_open(path: Path, damage: str) -> None:
    """A damaged file whose page 1 (header: Starling application id and version,
    schema) is intact must stop the node at open with a StoreError naming the file,
    not pass the checks and fail later with a bare sqlite3 error while loading.

    "check-reports-rows": one damaged page such that PRAGMA quick_check still runs
    and answers with a list of problems instead of "ok"."""
    page_size = filled_store(path)
    original = path.read_bytes()
    if damage == "schema-readable":
        db = sqlite3.connect(path)
        roots = [r[0] for r in db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name IN ('kv', 'sessions')")]
        db.close()
        data = bytearray(original)
        for root in roots:
            scribble(data, root, page_size)
        path.write_bytes(bytes(data))
    else:
        for page in range(2, len(original) // page_size + 1):
            data = bytearray(original)
            scribble(data, page, page_size)
            path.write_bytes(bytes(data))
            rows = quick_check(path)
            if rows is not None and rows != ["ok"]:
                break
        else:
            pytest.fail("no single damaged page makes quick_check report problems")
    fresh = SQLiteStore(path)
    try:
        with pytest.raises(StoreError, match=str(path)):
            fresh.open()
            fresh.load_sessions()
            fresh.load_kv("apps")
    finally:
        fresh.close()


# -- migrations ---------------------------------------------------------------------------
def test_migration_to_a_new_version_keeps_data(path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    s = SQLiteStore(path)
    s.open()
    s.apply([("kv_put", "apps", "a", "{}"), ("session_put", "c", None, 9.0, 1.0, None)])
    s.close()
    migrations = dict(sqlite_module.MIGRATIONS)
    migrations[SCHEMA_VERSION + 1] = """
        ALTER TABLE sessions ADD COLUMN note TEXT;
        CREATE TABLE extra (k TEXT PRIMARY KEY);
    """
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", migrations)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    s = SQLiteStore(path)
    s.open()
    try:
        assert pragma(path, "user_version") == SCHEMA_VERSION + 1
        assert pragma(path, "application_id") == APPLICATION_ID
        assert s.load_kv("apps") == {"a": "{}"}
        assert [r.client_id for r in s.load_sessions()] == ["c"]
        s.db.execute("INSERT INTO extra VALUES ('x')")
    finally:
        s.close()
    # and the old code now refuses the upgraded file instead of misreading it
    monkeypatch.undo()
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(path).open()


def test_failing_migration_is_rolled_back(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = SQLiteStore(path)
    s.open()
    s.apply([("kv_put", "apps", "a", "{}")])
    s.close()
    migrations = dict(sqlite_module.MIGRATIONS)
    migrations[SCHEMA_VERSION + 1] = """
        CREATE TABLE half_done (k TEXT);
        ALTER TABLE no_such_table ADD COLUMN x TEXT;
    """
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", migrations)
    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=str(path)):
        SQLiteStore(path).open()
    monkeypatch.undo()
    assert pragma(path, "user_version") == SCHEMA_VERSION
    s = SQLiteStore(path)
    s.open()
    try:
        assert s.load_kv("apps") == {"a": "{}"}
        tables = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master")}
        assert "half_done" not in tables
    finally:
        s.close()


def test_every_version_has_a_migration() -> None:
    assert sorted(sqlite_module.MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def test_sessions_record_defaults_are_independent() -> None:
    a, b = SessionRecord("a", None, 1.0, 0.0, None), SessionRecord("b", None, 1.0, 0.0, None)
    a.subscriptions.append(SubscriptionRecord("t", 0))
    assert b.subscriptions == []


# -- a store written by schema 2 ------------------------------------------------------------
#: Written by Starling at b21a493 (schema 2, before single rows): a real node, sessions
#: old-a (subscribed to old/# at QoS 1: "in-flight" sent and not acknowledged, then
#: three "single-N" queued, "shared" and the retained "kept" queued) and old-b
#: (old/shared at QoS 2: "shared" queued), and the retained old/retained.
STORE_V2 = Path(__file__).parent / "data" / "store-v2.db"


def test_store_of_schema_2_opens_with_everything_in_it(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(STORE_V2.read_bytes())
    assert pragma(path, "user_version") == 2
    s = SQLiteStore(path)
    s.open()
    try:
        assert pragma(path, "user_version") == SCHEMA_VERSION == 3
        assert s.max_message_id() == 118
        (kept,) = s.load_retained()
        assert (kept.topic, kept.payload, kept.id) == ("old/retained", b"kept", 118)
        sessions = {r.client_id: r for r in s.load_sessions()}
        assert sorted(sessions) == ["old-a", "old-b"]
        a = sessions["old-a"]
        assert [(sub.topic_filter, sub.qos) for sub in a.subscriptions] == [("old/#", 1)]
        assert [(h.message.topic, h.message.payload, h.qos, h.packet_id, h.single)
                for h in a.messages] == [
            ("old/inflight", b"in-flight", 1, 1, False),
            ("old/single", b"single-1", 1, None, False),
            ("old/single", b"single-2", 1, None, False),
            ("old/single", b"single-3", 1, None, False),
            ("old/shared", b"shared", 1, None, False),
            ("old/retained", b"kept", 1, None, False)]
        assert [(h.message.payload, h.qos) for h in sessions["old-b"].messages] == [
            (b"shared", 2)]
        # the old rows go on working, beside new single rows
        s.apply([("session_message_delete", "old-a", 114), ("message_delete", 114),
                 ("single_put", "old-a", 1, 0, None, 0, record(119, "old/new", b"new"))])
    finally:
        s.close()
    s = SQLiteStore(path)
    s.open()
    try:
        (a,) = [r for r in s.load_sessions() if r.client_id == "old-a"]
        assert [h.message.id for h in a.messages] == [113, 115, 116, 117, 118, 119]
        assert s.max_message_id() == 119
    finally:
        s.close()


def test_many_single_rows_in_one_batch(store: SQLiteStore) -> None:
    """A batch of 100 single rows (written several per statement: 64 + 32 + 4),
    of both shapes, then 99 of them deleted in one batch: every row as written,
    the one left still there."""
    ops: list[Operation] = [("session_put", "c", None, 60.0, 1.0, None)]
    for i in range(1, 101):
        fields: dict[str, object] = {"username": "u"} if i % 3 == 0 else {}
        ops.append(("single_put", "c", 1, 0, i, 0, record(i, f"t/{i}", b"p%d" % i, **fields)))
    store.apply(ops)
    store = reopen(store)
    (s,) = store.load_sessions()
    assert [(h.message.id, h.message.payload, h.message.username, h.packet_id)
            for h in s.messages] == [
        (i, b"p%d" % i, "u" if i % 3 == 0 else None, i) for i in range(1, 101)]
    store.apply([("single_delete", i) for i in range(1, 101) if i != 50])
    store = reopen(store)
    (s,) = store.load_sessions()
    assert [h.message.id for h in s.messages] == [50]
    store.close()
