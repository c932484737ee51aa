"""The journal: what the broker writes to the store, and when it is safe.

Changes to durable state (persistent sessions, their subscriptions and held
QoS 1/2 messages, retained messages, management tables) become store
operations appended here on the event loop.  A worker thread commits them
in batches (group commit): everything appended while one commit runs goes
into the next, so throughput holds however small each write is.

Modes (`store.durability`):
- ``durable``: a batch is handed to the worker as soon as the loop is idle;
  channels hold a PUBACK/PUBREC back until the batch holding the message's
  writes has committed (`batch_id` / `committed_id` / `after_commit`).
- ``relaxed``: batches are committed every `interval` seconds and nobody
  waits; a crash may lose what came after the last commit.

A batch that fails to commit (disk full, I/O error, database locked) was
rolled back whole: it is kept, in front of what came after it, and retried
every `RETRY_DELAY` seconds; acknowledgements waiting for it stay held until
then.  From the first failure to the next success the store is *unavailable*
(`failing_since`); `on_health` tells the broker both edges (its alarm).

With a store that keeps nothing (memory), the journal is disabled and costs
one attribute check per operation site.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from starling.mqtt import SubscriptionOptions, decode_properties, encode_properties
from starling.store import MessageRecord, Operation, Store, SubscriptionRecord

from .message import Message

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

#: Seconds between attempts to commit a batch that failed.
RETRY_DELAY = 1.0
#: The encoded property block of a message without properties.
NO_PROPERTIES = b"\x00"
#: `Journal._refs` of a message held by one session, stored as one row with its body.
SINGLE = -1


def record_of(message: Message) -> MessageRecord:
    expires_at = None
    if message.expires_at is not None:
        expires_at = time.time() + (message.expires_at - time.monotonic())
    properties = message.properties
    return MessageRecord(message.id, message.topic, message.payload, message.qos,
                         message.retain,
                         encode_properties(properties) if properties else NO_PROPERTIES,
                         message.sender, message.username, message.timestamp, expires_at)


def message_of(record: MessageRecord) -> Message:
    properties, _ = decode_properties(record.properties, 0, len(record.properties))
    expires_at = None
    if record.expires_at is not None:
        expires_at = time.monotonic() + (record.expires_at - time.time())
    return Message(record.topic, record.payload, record.qos, record.retain, record.sender,
                   record.username, None, properties, record.timestamp, record.id,
                   expires_at=expires_at)


class Journal:
    def __init__(self, store: Store, mode: str = "durable", interval: float = 0.1) -> None:
        self.store = store
        self.enabled = store.durable
        self.durable = self.enabled and mode == "durable"
        self.interval = interval
        #: Id of the batch now collecting operations; `committed_id` the last one written.
        self.batch_id = 1
        self.committed_id = 0
        self.failures = 0
        #: Operations recorded so far: a channel compares it before and after a
        #: PUBLISH to know whether its acknowledgement must wait for a commit.
        self.ops_added = 0
        self._ops: list[Operation] = []
        self._callbacks: list[Callable[[], None]] = []
        #: The callbacks of the batch being committed (a worker-thread commit).
        self._in_flight_callbacks: list[Callable[[], None]] = []
        self._committing = False
        self._scheduled = False
        self._refs: dict[int, int] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._idle: asyncio.Event | None = None
        #: `time.time()` of the first failed commit since the last good one; None: fine.
        self.failing_since: float | None = None
        self.last_error = ""
        #: Called with (available, why) when commits start failing and when they recover.
        self.on_health: Callable[[bool, str], None] | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if not self.enabled:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="starling-store")
        self._idle = asyncio.Event()
        self._idle.set()
        if not self.durable:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    async def close(self) -> None:
        """Commit everything still pending, then stop the worker."""
        if not self.enabled or self._executor is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._idle is not None
        await self._idle.wait()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._ops:
            self._kick()
            await self._idle.wait()
        if self._retry is not None:  # the last attempt failed too: give up
            self._retry.cancel()
            self._retry = None
            log.error("store: %d operations could not be committed at shutdown",
                      len(self._ops))
        self._executor.shutdown(wait=True)
        self._executor = None

    # -- batching ------------------------------------------------------------------
    def add(self, op: Operation) -> None:
        self._ops.append(op)
        self.ops_added += 1
        if self.durable and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def add_pair(self, first: Operation, second: Operation) -> None:
        """Two operations at once (a message body and its holding): one call, not two."""
        self._ops += (first, second)
        self.ops_added += 2
        if self.durable and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    @property
    def flush_id(self) -> int:
        """The batch that must commit for everything recorded so far to be on disk:
        the one collecting now, or else the last one handed to the store (which may
        still be committing)."""
        return self.batch_id if self._ops else self.batch_id - 1

    def changed_since(self, mark: int) -> bool:
        """Must a reply wait for a commit?  True in durable mode when operations were
        recorded since `mark`, an earlier `ops_added` (compared as counters: taking
        the mark and this test cost two attribute reads on the publish path)."""
        return self.durable and self.ops_added != mark

    @property
    def uncommitted(self) -> bool:
        """Is something recorded that is not committed yet?"""
        return self.flush_id > self.committed_id

    @property
    def available(self) -> bool:
        """False from a failed commit until one succeeds again."""
        return self.failing_since is None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once everything recorded so far is committed (at once if it is)."""
        if not self.durable or not self.uncommitted:
            callback()
        elif self._ops:
            self._callbacks.append(callback)
        else:
            self._in_flight_callbacks.append(callback)

    async def committed(self) -> None:
        """Return once everything recorded so far is on disk."""
        if not self.durable or not self.uncommitted:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def release() -> None:
            if not done.done():
                done.set_result(None)
        self.after_commit(release)
        await done

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)
        if self._ops and not self._committing:
            self._kick()

    def _kick(self) -> None:
        self._scheduled = False
        if self._committing or not self._ops or self._executor is None or self._retry:
            return
        ops, self._ops = self._ops, []
        callbacks, self._callbacks = self._callbacks, []
        self._in_flight_callbacks = callbacks
        batch = self.batch_id
        self.batch_id += 1
        self._committing = True
        assert self._idle is not None
        self._idle.clear()
        loop = asyncio.get_running_loop()
        if self.store.cheap_commit:
            # No fsync per commit: doing it here costs less than handing the batch
            # to the worker thread and back (two GIL hand-overs, up to 5 ms each).
            future: asyncio.Future[None] = loop.create_future()
            try:
                self.store.apply(ops)
                future.set_result(None)
            except Exception as exc:
                future.set_exception(exc)
            self._committed(future, batch, ops, callbacks)
            return
        future = loop.run_in_executor(self._executor, self.store.apply, ops)
        future.add_done_callback(lambda f: self._committed(f, batch, ops, callbacks))

    def _committed(self, future: asyncio.Future[None], batch: int, ops: list[Operation],
                   callbacks: list[Callable[[], None]]) -> None:
        self._committing = False
        exc = future.exception()
        if exc is not None:
            # Nothing of the batch is on disk: keep it (and the acknowledgements
            # waiting for it) ahead of newer operations, and try again later.
            self.failures += 1
            self.last_error = str(exc)
            if self.failing_since is None:
                self.failing_since = time.time()
                log.error("store commit failed, retrying every %gs until it succeeds: %s",
                          RETRY_DELAY, exc)
                self._tell_health(False, str(exc))
            else:
                log.debug("store commit failed again: %s", exc)
            self._ops[:0] = ops
            self._callbacks[:0] = callbacks
            self._retry = asyncio.get_running_loop().call_later(RETRY_DELAY, self._retry_now)
            if self._idle is not None:
                self._idle.set()
            return
        self.committed_id = batch
        if self.failing_since is not None:
            log.warning("store commits again after %.0fs of failures",
                        time.time() - self.failing_since)
            self.failing_since = None
            self._tell_health(True, "")
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")
        if self._ops and (self.durable or self._executor is None):
            self._kick()
        if not self._committing and self._idle is not None:
            self._idle.set()

    def _tell_health(self, available: bool, why: str) -> None:
        if self.on_health is not None:
            try:
                self.on_health(available, why)
            except Exception:
                log.exception("store health callback failed")

    def _retry_now(self) -> None:
        self._retry = None
        self._kick()

    # -- what the broker records -----------------------------------------------------
    def kv_put(self, table: str, key: str, value: str) -> None:
        if self.enabled:
            self.add(("kv_put", table, key, value))

    def kv_delete(self, table: str, key: str) -> None:
        if self.enabled:
            self.add(("kv_delete", table, key))

    def retained_put(self, message: Message) -> None:
        self.add(("retained_put", record_of(message)))

    def retained_delete(self, topic: str) -> None:
        self.add(("retained_delete", topic))

    def session_saved(self, session: Session, disconnected_at: float | None) -> None:
        self.add(("session_put", session.client_id, session.username, session.expiry_interval,
                  session.created_at, disconnected_at, session.peercert))

    def session_deleted(self, session: Session) -> None:
        self.add(("session_delete", session.client_id))
        for message, qos, _retain, _via in session.mqueue:
            if qos:
                self._unref(message.id)
        for entry in session.inflight.values():
            self._unref(entry.message.id)

    def subscribed(self, session: Session, topic_filter: str, opts: SubscriptionOptions) -> None:
        self.add(("subscription_put", session.client_id, SubscriptionRecord(
            topic_filter, opts.qos, opts.no_local, opts.retain_as_published,
            opts.retain_handling)))

    def unsubscribed(self, session: Session, topic_filter: str) -> None:
        self.add(("subscription_delete", session.client_id, topic_filter))

    def held(self, session: Session, message: Message, qos: int, retain: bool,
             packet_id: int | None) -> None:
        """A session starts holding a QoS 1/2 message: queued (no packet id) or in flight.

        A message held by one session is one row with its body (`single_put`);
        when a second session holds it, the body becomes shared (`single_share`)
        and each holder gets a holding row.  `_refs` counts the holders of each
        shared body, so it is deleted with its last holder; `SINGLE` marks a
        message stored as a single row."""
        message_id = message.id
        refs = self._refs.get(message_id)
        # Flags as ints, not bools: sqlite3 binds a bool only after an adapter lookup.
        if refs is None:
            self._refs[message_id] = SINGLE
            self.add(("single_put", session.client_id, qos, 1 if retain else 0, packet_id, 0,
                      record_of(message)))
            return
        held = ("session_message_put", session.client_id, message_id, message_id, qos,
                1 if retain else 0, packet_id, 0)
        if refs == SINGLE:
            self._refs[message_id] = 2
            self.add_pair(("single_share", message_id), held)
        else:
            self._refs[message_id] = refs + 1
            self.add(held)

    def moved(self, session: Session, message: Message, qos: int, retain: bool,
              packet_id: int) -> None:
        """A queued message was sent: it is in flight now, under `packet_id`."""
        self._changed(session, message, qos, retain, packet_id, 0)

    def released(self, session: Session, message: Message, qos: int, retain: bool,
                 packet_id: int) -> None:
        self._changed(session, message, qos, retain, packet_id, 1)

    def _changed(self, session: Session, message: Message, qos: int, retain: bool,
                 packet_id: int, released: int) -> None:
        message_id = message.id
        if self._refs.get(message_id) == SINGLE:
            self.add(("single_update", message_id, packet_id, released))
        else:
            self.add(("session_message_put", session.client_id, message_id, message_id, qos,
                      1 if retain else 0, packet_id, released))

    def done(self, session: Session, message: Message) -> None:
        """Acknowledged, dropped or expired: the session no longer holds it."""
        message_id = message.id
        refs = self._refs.pop(message_id, 0)
        if refs == SINGLE:
            self.add(("single_delete", message_id))
        elif refs > 1:
            self._refs[message_id] = refs - 1
            self.add(("session_message_delete", session.client_id, message_id))
        else:
            self.add_pair(("session_message_delete", session.client_id, message_id),
                          ("message_delete", message_id))

    def _unref(self, message_id: int) -> None:
        """A holder of the message is deleted with its session (`session_delete`
        drops its holdings and the bodies nobody holds; a single row goes here)."""
        refs = self._refs.pop(message_id, 0)
        if refs == SINGLE:
            self.add(("single_delete", message_id))
        elif refs > 1:
            self._refs[message_id] = refs - 1

    def restored(self, message_id: int, single: bool = False) -> None:
        if single:
            self._refs[message_id] = SINGLE
        else:
            self._refs[message_id] = self._refs.get(message_id, 0) + 1

    def awaiting_added(self, session: Session, packet_id: int) -> None:
        self.add(("awaiting_put", session.client_id, packet_id))

    def awaiting_removed(self, session: Session, packet_id: int) -> None:
        self.add(("awaiting_delete", session.client_id, packet_id))
