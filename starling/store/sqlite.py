"""The embedded default store: one SQLite file in the node's data dir.

WAL mode: readers never block the writer and a commit is one append to the
log.  `synchronous=NORMAL` (default) makes every committed transaction
survive a crash of the process (kill -9); `synchronous=FULL` also survives
power loss, at the cost of an fsync per commit (`store.sync = "full"`).

Schema versions are numbered; `MIGRATIONS[n]` turns version n-1 into n.  A
file from a newer version, or one that is not a Starling store, stops the
node with a message naming the file instead of starting empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import Operation, Store, StoreError
from .records import (
    MessageRecord,
    SessionMessageRecord,
    SessionRecord,
    SubscriptionRecord,
)

SCHEMA_VERSION = 3
APPLICATION_ID = 0x53544C47  # "STLG": marks the file as a Starling store
NO_PROPERTIES = b"\x00"  # the encoded property block of a message without properties
#: Single rows written (or deleted) by one statement at most.  A batch goes in
#: chunks of this many, then powers of two: few distinct statements, all of
#: them kept prepared in the connection's statement cache.
ROWS_PER_STATEMENT = 64
#: Payloads up to this size are bound as a bytearray copy (see `_insert_single`).
SMALL_PAYLOAD = 16384

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE kv (tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                     PRIMARY KEY (tbl, key));
    CREATE TABLE retained (topic TEXT PRIMARY KEY, id INTEGER, payload BLOB, qos INTEGER,
                           props BLOB, sender TEXT, username TEXT, ts REAL, expires_at REAL);
    CREATE TABLE sessions (client_id TEXT PRIMARY KEY, username TEXT, expiry REAL,
                           created_at REAL, disconnected_at REAL);
    CREATE TABLE subscriptions (client_id TEXT NOT NULL, filter TEXT NOT NULL, qos INTEGER,
                                nl INTEGER, rap INTEGER, rh INTEGER,
                                PRIMARY KEY (client_id, filter));
    CREATE TABLE messages (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB, qos INTEGER,
                           retain INTEGER, props BLOB, sender TEXT, username TEXT, ts REAL,
                           expires_at REAL);
    CREATE TABLE session_messages (client_id TEXT NOT NULL, msg_id INTEGER NOT NULL,
                                   seq INTEGER, qos INTEGER, retain INTEGER,
                                   packet_id INTEGER, released INTEGER,
                                   PRIMARY KEY (client_id, msg_id));
    CREATE TABLE awaiting_rel (client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,
                               PRIMARY KEY (client_id, packet_id));
    """,
    # A session's owner is its user name and, for a client without one, its
    # client certificate (session.strict_resume).
    2: """
    ALTER TABLE sessions ADD COLUMN peercert TEXT;
    """,
    # A message held for exactly one session (the common case: one persistent
    # subscriber) is one row with its body, keyed by the message id alone: one
    # b-tree insert and one delete per message instead of four (a body row, a
    # holding row and its primary-key index entry, each written and deleted).
    # Rows of schema 2 stay where they are: the shared form reads as before.
    3: """
    CREATE TABLE single_messages (msg_id INTEGER PRIMARY KEY, client_id TEXT NOT NULL,
                                  qos INTEGER, retain INTEGER, packet_id INTEGER,
                                  released INTEGER, topic TEXT, payload BLOB,
                                  msg_qos INTEGER, msg_retain INTEGER, props BLOB,
                                  sender TEXT, username TEXT, ts REAL, expires_at REAL);
    """,
}


def _message_row(m: MessageRecord) -> tuple[Any, ...]:
    return (m.id, m.topic, m.payload, m.qos, int(m.retain), m.properties, m.sender,
            m.username, m.timestamp, m.expires_at)


def _chunks(total: int) -> Iterator[tuple[int, int]]:
    """(first, count) of the chunks `total` rows are written in: `ROWS_PER_STATEMENT`
    at a time, then the powers of two of the rest (100 rows: 64, 32, 4)."""
    start = 0
    while start < total:
        left = total - start
        rows = ROWS_PER_STATEMENT if left >= ROWS_PER_STATEMENT else 1 << (left.bit_length() - 1)
        yield start, rows
        start += rows


def _seq(held: SessionMessageRecord) -> int:
    return held.seq


def _message_from(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(row[0], row[1], bytes(row[2]), row[3], bool(row[4]), bytes(row[5]),
                         row[6], row[7], row[8], row[9])


class _Pending:
    """The per-message rows a batch changes, by key, until they are written:
    an operation, or None for a deletion."""

    __slots__ = ("bodies", "held", "replaced", "single")

    def __init__(self) -> None:
        self.single: dict[int, Operation | None] = {}  # message id → single_*, None = delete
        #: Message ids whose `single_put` followed another operation on that row
        #: in this batch: the row may be on disk, so a later delete must run.
        self.replaced: set[int] = set()
        self.held: dict[tuple[str, int], Operation | None] = {}  # (client, message) → row
        self.bodies: dict[int, MessageRecord | None] = {}  # message id → body, None = delete

    def __bool__(self) -> bool:
        return bool(self.single or self.held or self.bodies)

    def share(self, message_id: int) -> bool:
        """Turn a single row written in this batch into a shared body and a holding;
        False if the row is not here (it is on disk)."""
        op = self.single.get(message_id)
        if op is None or op[0] != "single_put":
            return False
        _, client_id, qos, retain, packet_id, released, record = op
        self.bodies[message_id] = record
        self.held[(client_id, message_id)] = ("session_message_put", client_id, message_id,
                                              message_id, qos, retain, packet_id, released)
        if message_id in self.replaced:
            self.single[message_id] = None
        else:
            del self.single[message_id]
        return True


class SQLiteStore(Store):
    durable = True

    def __init__(self, path: Path, sync: str = "normal") -> None:
        self.path = Path(path)
        self.sync = sync
        # WAL with synchronous=NORMAL appends to the log without fsync: a commit
        # takes microseconds, so the journal runs it inline (docs/durability.md).
        self.cheap_commit = sync != "full"
        self._db: sqlite3.Connection | None = None
        #: A failed rollback closed the connection: the next `apply` reopens it.
        self._reopen = False
        #: SQL of the multi-row statements, by (row shape, rows).
        self._statements: dict[tuple[str, int], str] = {}
        self._ops: dict[str, Callable[..., None]] = {
            "kv_put": self._kv_put,
            "kv_delete": self._kv_delete,
            "retained_put": self._retained_put,
            "retained_delete": self._retained_delete,
            "session_put": self._session_put,
            "session_delete": self._session_delete,
            "subscription_put": self._subscription_put,
            "subscription_delete": self._subscription_delete,
            "message_put": self._message_put,
            "message_delete": self._message_delete,
            "session_message_put": self._session_message_put,
            "session_message_delete": self._session_message_delete,
            "awaiting_put": self._awaiting_put,
            "awaiting_delete": self._awaiting_delete,
        }

    # -- lifecycle -------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Inline commits must not stall the event loop on a lock held by some
            # other process: fail fast, and the journal retries the batch.
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                 timeout=0.05 if self.cheap_commit else 5.0)
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from None
        if tables and app_id != APPLICATION_ID:
            db.close()
            raise StoreError(f"{self.path} is not a Starling store (application_id {app_id:#x})")
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(f"{self.path} has schema version {version}, newer than this "
                             f"Starling understands ({SCHEMA_VERSION}); upgrade Starling")
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                db.execute("BEGIN")
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={target}")
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute("COMMIT")
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                detail = " ".join(" ".join(problems).split())
                raise sqlite3.DatabaseError(f"integrity check failed: {detail[:200]}")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{self.path}: {exc}") from None
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    # -- writes ------------------------------------------------------------------
    def apply(self, operations: Sequence[Operation]) -> None:
        """One transaction.  The per-message operations (a message held for one
        session: its row written, then deleted; for several: a shared body and a
        holding each) are the bulk of every batch: they are reduced to their net
        effect per row (the last operation on a row wins, as executing them in
        order would leave it; a single message written and deleted in the same
        batch is not written at all) and written with one `executemany` per kind.
        Every other operation runs in order where it stands; `session_delete`,
        which reads the message tables, first writes what was collected before it,
        and so does `single_share` of a row already on disk."""
        if self._reopen:
            self.open()
            self._reopen = False
        db = self.db
        ops = self._ops
        batch = _Pending()
        single = batch.single
        db.execute("BEGIN")
        try:
            for op in operations:
                name = op[0]
                if name == "single_put":
                    message_id = op[6].id
                    if message_id in single:
                        batch.replaced.add(message_id)
                    single[message_id] = op
                elif name == "single_delete":
                    message_id = op[1]
                    pending = single.get(message_id)
                    if (pending is not None and pending[0] == "single_put"
                            and message_id not in batch.replaced):
                        del single[message_id]  # written and deleted in this batch
                    else:
                        single[message_id] = None
                elif name == "session_message_put":
                    batch.held[(op[1], op[2])] = op
                elif name == "session_message_delete":
                    batch.held[(op[1], op[2])] = None
                elif name == "single_update":
                    pending = single.get(op[1])
                    if pending is None:
                        if op[1] not in single:
                            single[op[1]] = op
                    elif pending[0] == "single_put":
                        single[op[1]] = (*pending[:4], op[2], op[3], pending[6])
                    else:
                        single[op[1]] = op
                elif name == "message_put":
                    batch.bodies[op[1].id] = op[1]
                elif name == "message_delete":
                    batch.bodies[op[1]] = None
                elif name == "single_share":
                    if not batch.share(op[1]):
                        self._write_messages(batch)
                        batch = _Pending()
                        single = batch.single
                        self._share_on_disk(op[1])
                else:
                    if name == "session_delete" and batch:
                        self._write_messages(batch)
                        batch = _Pending()
                        single = batch.single
                    ops[name](*op[1:])
            if batch:
                self._write_messages(batch)
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """Undo a failed transaction, if SQLite has not already.

        On SQLITE_FULL, SQLITE_IOERR or SQLITE_BUSY SQLite may roll the whole
        transaction back itself (https://sqlite.org/lang_transaction.html,
        "Response To Errors Within A Transaction"); a ROLLBACK then fails with
        "no transaction is active", and that error must neither hide the real one
        nor leave the connection unusable for the retry."""
        db = self.db
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                # The connection is in no state to go on: the retry opens a fresh one.
                db.close()
                self._db = None
                self._reopen = True

    def _write_messages(self, batch: _Pending) -> None:
        """The net effect of a run of per-message operations: rows of different
        keys are independent, so deletes and writes go in one statement each."""
        db = self.db
        single = batch.single
        if single:
            gone = [message_id for message_id, op in single.items() if op is None]
            if gone:
                self._delete_single(gone)
            changed = [(op[2], op[3], op[1]) for op in single.values()
                       if op is not None and op[0] == "single_update"]
            if changed:
                db.executemany("UPDATE single_messages SET packet_id = ?, released = ? "
                               "WHERE msg_id = ?", changed)
            self._insert_single([op for op in single.values()
                                 if op is not None and op[0] == "single_put"])
        held = batch.held
        if held:
            gone2 = [key for key, op in held.items() if op is None]
            if gone2:
                db.executemany("DELETE FROM session_messages WHERE client_id = ? AND msg_id = ?",
                               gone2)
            rows = [op[1:] for op in held.values() if op is not None]
            if rows:
                db.executemany("INSERT OR REPLACE INTO session_messages VALUES (?,?,?,?,?,?,?)",
                               rows)
        bodies = batch.bodies
        if not bodies:
            return
        dropped = [(message_id,) for message_id, m in bodies.items() if m is None]
        if dropped:
            db.executemany("DELETE FROM messages WHERE id = ?", dropped)
        # Most bodies have no properties, no expiry and often no username: those
        # go in as literals, because sqlite3 binds None, bytes and bool parameters
        # only after a failed adapter lookup (~0.3 us each, a third of a row's cost).
        plain: list[tuple[Any, ...]] = []
        named: list[tuple[Any, ...]] = []
        new: list[tuple[Any, ...]] = []
        for m in bodies.values():
            if m is None:
                continue
            if m.expires_at is None and m.properties == NO_PROPERTIES:
                if m.username is None:
                    plain.append((m.id, m.topic, m.payload, m.qos, 1 if m.retain else 0,
                                  m.sender, m.timestamp))
                else:
                    named.append((m.id, m.topic, m.payload, m.qos, 1 if m.retain else 0,
                                  m.sender, m.username, m.timestamp))
            else:
                new.append(_message_row(m))
        if plain:
            db.executemany("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?,X'00',?,NULL,?,NULL)",
                           plain)
        if named:
            db.executemany("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?,X'00',?,?,?,NULL)",
                           named)
        if new:
            db.executemany("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)", new)

    def _insert_single(self, puts: list[Operation]) -> None:
        """`single_put` operations: ("single_put", client_id, qos, retain, packet_id,
        released, MessageRecord).  As for bodies, the usual empty properties, no
        expiry and no username go in as SQL literals, not bound parameters."""
        if not puts:
            return
        plain: list[Any] = []  # the rows' parameters one after the other
        other: list[Any] = []
        for _, client_id, qos, retain, packet_id, released, m in puts:
            payload = m.payload
            if len(payload) <= SMALL_PAYLOAD:
                # sqlite3 binds a bytearray as it is, a bytes only after a failed
                # adapter lookup (an exception formatted and dropped): dearer than
                # copying a small payload.
                payload = bytearray(payload)
            if m.expires_at is None and m.username is None and m.properties == NO_PROPERTIES:
                plain += (m.id, client_id, qos, retain, packet_id, released, m.topic, payload,
                          m.qos, 1 if m.retain else 0, m.sender, m.timestamp)
            else:
                other += (m.id, client_id, qos, retain, packet_id, released, m.topic, payload,
                          m.qos, 1 if m.retain else 0, m.properties, m.sender, m.username,
                          m.timestamp, m.expires_at)
        if plain:
            self._insert_rows("INSERT OR REPLACE INTO single_messages VALUES ",
                              "(?,?,?,?,?,?,?,?,?,?,X'00',?,NULL,?,NULL)", 12, plain)
        if other:
            self._insert_rows("INSERT OR REPLACE INTO single_messages VALUES ",
                              "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", 15, other)

    def _insert_rows(self, head: str, row: str, width: int, params: list[Any]) -> None:
        """Insert rows given as one flat list of parameters, several rows per
        statement: one step (one trip through sqlite3's per-call work, its GIL
        release and statement reset) for up to `ROWS_PER_STATEMENT` rows."""
        db = self.db
        statements = self._statements
        for start, rows in _chunks(len(params) // width):
            sql = statements.get((row, rows))
            if sql is None:
                sql = statements[(row, rows)] = head + ",".join([row] * rows)
            db.execute(sql, params[start * width:(start + rows) * width])

    def _delete_single(self, message_ids: list[int]) -> None:
        """As `_insert_rows`: up to `ROWS_PER_STATEMENT` rows per statement."""
        db = self.db
        statements = self._statements
        for start, rows in _chunks(len(message_ids)):
            sql = statements.get(("delete", rows))
            if sql is None:
                sql = statements[("delete", rows)] = (
                    "DELETE FROM single_messages WHERE msg_id IN (" + ",".join("?" * rows) + ")")
            db.execute(sql, message_ids[start:start + rows])

    def _share_on_disk(self, message_id: int) -> None:
        """A second session holds a message stored as a single row: its body moves
        to `messages`, its first holder to `session_messages`."""
        db = self.db
        db.execute("INSERT OR IGNORE INTO messages SELECT msg_id, topic, payload, msg_qos, "
                   "msg_retain, props, sender, username, ts, expires_at FROM single_messages "
                   "WHERE msg_id = ?", (message_id,))
        db.execute("INSERT OR REPLACE INTO session_messages SELECT client_id, msg_id, msg_id, "
                   "qos, retain, packet_id, released FROM single_messages WHERE msg_id = ?",
                   (message_id,))
        db.execute("DELETE FROM single_messages WHERE msg_id = ?", (message_id,))

    def _kv_put(self, table: str, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (table, key, value))

    def _kv_delete(self, table: str, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE tbl = ? AND key = ?", (table, key))

    def _retained_put(self, m: MessageRecord) -> None:
        self.db.execute("INSERT OR REPLACE INTO retained VALUES (?,?,?,?,?,?,?,?,?)",
                        (m.topic, m.id, m.payload, m.qos, m.properties, m.sender, m.username,
                         m.timestamp, m.expires_at))

    def _retained_delete(self, topic: str) -> None:
        self.db.execute("DELETE FROM retained WHERE topic = ?", (topic,))

    def _session_put(self, client_id: str, username: str | None, expiry: float,
                     created_at: float, disconnected_at: float | None,
                     peercert: str | None = None) -> None:
        self.db.execute("INSERT OR REPLACE INTO sessions (client_id, username, expiry, "
                        "created_at, disconnected_at, peercert) VALUES (?,?,?,?,?,?)",
                        (client_id, username, expiry, created_at, disconnected_at, peercert))

    def _session_delete(self, client_id: str) -> None:
        db = self.db
        db.execute("DELETE FROM sessions WHERE client_id = ?", (client_id,))
        db.execute("DELETE FROM subscriptions WHERE client_id = ?", (client_id,))
        db.execute("DELETE FROM awaiting_rel WHERE client_id = ?", (client_id,))
        db.execute("DELETE FROM session_messages WHERE client_id = ?", (client_id,))
        # Message bodies no session refers to any more.
        db.execute("DELETE FROM messages WHERE id NOT IN "
                   "(SELECT DISTINCT msg_id FROM session_messages)")

    def _subscription_put(self, client_id: str, s: SubscriptionRecord) -> None:
        self.db.execute("INSERT OR REPLACE INTO subscriptions VALUES (?,?,?,?,?,?)",
                        (client_id, s.topic_filter, s.qos, int(s.no_local),
                         int(s.retain_as_published), s.retain_handling))

    def _subscription_delete(self, client_id: str, topic_filter: str) -> None:
        self.db.execute("DELETE FROM subscriptions WHERE client_id = ? AND filter = ?",
                        (client_id, topic_filter))

    def _message_put(self, m: MessageRecord) -> None:
        self.db.execute("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?)",
                        _message_row(m))

    def _message_delete(self, message_id: int) -> None:
        self.db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def _session_message_put(self, client_id: str, message_id: int, seq: int, qos: int,
                             retain: bool, packet_id: int | None, released: bool) -> None:
        self.db.execute("INSERT OR REPLACE INTO session_messages VALUES (?,?,?,?,?,?,?)",
                        (client_id, message_id, seq, qos, int(retain), packet_id,
                         int(released)))

    def _session_message_delete(self, client_id: str, message_id: int) -> None:
        self.db.execute("DELETE FROM session_messages WHERE client_id = ? AND msg_id = ?",
                        (client_id, message_id))

    def _awaiting_put(self, client_id: str, packet_id: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO awaiting_rel VALUES (?, ?)", (client_id, packet_id))

    def _awaiting_delete(self, client_id: str, packet_id: int) -> None:
        self.db.execute("DELETE FROM awaiting_rel WHERE client_id = ? AND packet_id = ?",
                        (client_id, packet_id))

    # -- reads (at start) --------------------------------------------------------
    def load_kv(self, table: str) -> dict[str, str]:
        rows = self.db.execute("SELECT key, value FROM kv WHERE tbl = ?", (table,))
        return {key: value for key, value in rows}

    def load_retained(self) -> list[MessageRecord]:
        rows = self.db.execute("SELECT id, topic, payload, qos, 1, props, sender, username, ts, "
                               "expires_at FROM retained")
        return [_message_from(row) for row in rows]

    def load_sessions(self) -> list[SessionRecord]:
        db = self.db
        # A single row outliving its session could never be delivered, and nothing
        # would delete it (the journal deletes a session's rows with it, in one
        # transaction): the safety net, once at start, for the disk's sake.
        db.execute("DELETE FROM single_messages WHERE client_id NOT IN "
                   "(SELECT client_id FROM sessions)")
        sessions = {row[0]: SessionRecord(row[0], row[1], row[2], row[3], row[4],
                                          peercert=row[5])
                    for row in db.execute("SELECT client_id, username, expiry, created_at, "
                                          "disconnected_at, peercert FROM sessions")}
        for row in db.execute("SELECT client_id, filter, qos, nl, rap, rh FROM subscriptions"):
            if row[0] in sessions:
                sessions[row[0]].subscriptions.append(
                    SubscriptionRecord(row[1], row[2], bool(row[3]), bool(row[4]), row[5]))
        messages = {row[0]: _message_from(row) for row in db.execute(
            "SELECT id, topic, payload, qos, retain, props, sender, username, ts, expires_at "
            "FROM messages")}
        for row in db.execute("SELECT client_id, msg_id, seq, qos, retain, packet_id, released "
                              "FROM session_messages ORDER BY seq"):
            session = sessions.get(row[0])
            message = messages.get(row[1])
            if session is not None and message is not None:
                session.messages.append(SessionMessageRecord(
                    message, row[2], row[3], bool(row[4]), row[5], bool(row[6])))
        for row in db.execute("SELECT msg_id, topic, payload, msg_qos, msg_retain, props, "
                              "sender, username, ts, expires_at, client_id, qos, retain, "
                              "packet_id, released FROM single_messages"):
            session = sessions.get(row[10])
            if session is not None:
                session.messages.append(SessionMessageRecord(
                    _message_from(row), row[0], row[11], bool(row[12]), row[13],
                    bool(row[14]), single=True))
        for session in sessions.values():
            session.messages.sort(key=_seq)
        for row in db.execute("SELECT client_id, packet_id FROM awaiting_rel"):
            if row[0] in sessions:
                sessions[row[0]].awaiting_rel.append(row[1])
        return list(sessions.values())

    def max_message_id(self) -> int:
        row = self.db.execute("SELECT max(m) FROM (SELECT max(id) AS m FROM messages "
                              "UNION ALL SELECT max(id) FROM retained "
                              "UNION ALL SELECT max(msg_id) FROM single_messages)").fetchone()
        return int(row[0] or 0)
