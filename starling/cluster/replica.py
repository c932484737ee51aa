"""A JetStream key-value bucket mirrored into a node's own state.

What every node must agree on (retained messages, banned clients, apps,
users, auth entries, rules, ...) lives in a bucket; each node keeps its
usual in-memory copy (and its store's copy on disk) and this class keeps the
two in step:

- a local change is applied locally at once and queued for the bucket
  (`put` / `delete`, synchronous, never waiting on NATS); one writer task
  sends the queue in order, coalesced by key, and retries while NATS is away;
- a watcher applies every other node's changes through `apply`;
- at start and after every reconnect the watcher reads the whole bucket
  again: keys the bucket holds or has deleted (a tombstone) are applied, keys
  only this node holds (made while it was cut off, or before it joined) are
  written to the bucket.

Concurrent writes to one key from two nodes converge on the bucket's last
one: a node ignores another node's change older than its own last write to
that key, and holds one that arrives while its own write is in flight until
it knows which came last.

Values carry their real key and the writing node's name (``!HH`` lengths,
origin, key, payload), so a node recognises the echo of its own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Mapping

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from .connection import NatsConnection
from .names import token
from .watch import open_watcher

log = logging.getLogger(__name__)

_HEAD = struct.Struct("!HH")
#: Local changes waiting for the bucket, at most; past it the oldest is dropped.
MAX_PENDING = 100_000
#: Seconds a write may take before it is tried again.
WRITE_TIMEOUT = 5.0

Apply = Callable[[str, bytes | None], None]


def pack(origin: str, key: str, payload: bytes) -> bytes:
    o, k = origin.encode(), key.encode()
    return b"".join((_HEAD.pack(len(o), len(k)), o, k, payload))


def unpack(value: bytes) -> tuple[str, str, bytes]:
    n_origin, n_key = _HEAD.unpack_from(value, 0)
    pos = _HEAD.size
    origin = value[pos:pos + n_origin].decode()
    pos += n_origin
    key = value[pos:pos + n_key].decode()
    return origin, key, value[pos + n_key:]


class Replica:
    def __init__(self, conn: NatsConnection, bucket: str, origin: str, apply: Apply,
                 local: Callable[[], Mapping[str, bytes]],
                 on_drop: Callable[[], None] | None = None) -> None:
        self.conn = conn
        self.bucket = bucket
        self.origin = origin
        self._apply = apply
        self._local = local
        self._on_drop = on_drop
        self._kv: KeyValue | None = None
        #: Local changes not yet in the bucket (None: a delete), oldest first.
        self._pending: dict[str, bytes | None] = {}
        self._inflight: str | None = None
        #: Another node's change to a key we are writing: decided after our write.
        self._held: dict[str, tuple[int, bytes | None]] = {}
        #: Revision of this node's last write of each key.
        self._own: dict[str, int] = {}
        #: Real key of each bucket key seen (tombstones carry only the bucket key).
        self._real: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._checks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    async def start(self, timeout: float) -> None:
        self._kv = await self.conn.bucket(self.bucket)
        self._writer = asyncio.get_running_loop().create_task(self._write())
        await self.resync(timeout)

    async def resync(self, timeout: float) -> None:
        """Read the whole bucket again and go on watching (at start, after a reconnect);
        returns once it is read, or after `timeout`."""
        if self._kv is None:
            return
        if self._watcher is not None:
            self._watcher.cancel()
        self._synced.clear()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), timeout)

    async def stop(self) -> None:
        for task in (self._writer, self._watcher, *self._checks):
            if task is not None:
                task.cancel()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    # -- local changes ---------------------------------------------------------------
    def put(self, key: str, payload: bytes) -> None:
        self._queue(key, payload)

    def delete(self, key: str) -> None:
        self._queue(key, None)

    def _queue(self, key: str, payload: bytes | None) -> None:
        pending = self._pending
        pending.pop(key, None)
        pending[key] = payload
        if len(pending) > MAX_PENDING:
            oldest = next(iter(pending))
            del pending[oldest]
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
        self._wake.set()

    async def _write(self) -> None:
        pending = self._pending
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending and self.conn.connected:
                key = next(iter(pending))
                payload = pending.pop(key)
                self._inflight = key
                try:
                    revision = await self._send(key, payload)
                except (nats.errors.Error, TimeoutError, OSError) as exc:
                    log.debug("cluster: %s: write of %r failed: %s", self.bucket, key, exc)
                    if key not in pending:  # no newer change meanwhile: try it again
                        self._pending = {key: payload, **pending}
                        pending = self._pending
                    self._inflight = None
                    await asyncio.sleep(0.2)
                    continue
                self._inflight = None
                self._own[key] = revision
                held = self._held.pop(key, None)
                if held is not None and held[0] > revision and key not in pending:
                    self._apply(key, held[1])

    async def _send(self, key: str, payload: bytes | None) -> int:
        kv = self._kv
        assert kv is not None
        name = token(key)
        self._real[name] = key
        if payload is None:
            # kv.delete() does not return the revision: publish the tombstone ourselves.
            ack = await asyncio.wait_for(self.conn.js.publish(
                f"$KV.{self.bucket}.{name}", b"", headers={"KV-Operation": "DEL"}),
                WRITE_TIMEOUT)
            return int(ack.seq)
        return int(await asyncio.wait_for(kv.put(name, pack(self.origin, key, payload)),
                                          WRITE_TIMEOUT))

    # -- everyone's changes ------------------------------------------------------------
    async def _watch(self) -> None:
        kv = self._kv
        assert kv is not None
        watcher = await open_watcher(kv, self.bucket)
        for held in self._local():  # so a tombstone of a key held here is understood
            self._real.setdefault(token(held), held)
        seen: set[str] = set()
        initial = True
        try:
            async for entry in watcher:
                if entry is None:
                    if initial:
                        initial = False
                        self._push_local_only(seen)
                        self._synced.set()
                    continue
                name = entry.key
                key: str | None
                payload: bytes | None
                if entry.operation in ("DEL", "PURGE"):
                    key = self._real.get(name)
                    payload = None
                    origin = ""
                else:
                    try:
                        origin, key, payload = unpack(entry.value or b"")
                    except (struct.error, UnicodeDecodeError):
                        log.warning("cluster: %s: undecodable value for %s", self.bucket, name)
                        continue
                    self._real[name] = key
                if initial:
                    seen.add(name)
                if key is None:
                    continue  # a tombstone of a key this node never had
                self._remote(key, int(entry.revision or 0), payload,
                             echo=not initial and origin == self.origin)
        finally:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _remote(self, key: str, revision: int, payload: bytes | None, echo: bool) -> None:
        if echo or key in self._pending:
            return  # ours, or about to be overwritten by ours
        if key == self._inflight:
            self._held[key] = (revision, payload)
            return
        if revision and revision <= self._own.get(key, 0):
            return  # older than this node's own last write
        self._apply(key, payload)

    def _push_local_only(self, seen: set[str]) -> None:
        """Keys this node holds that the watcher's first pass did not show: each is
        looked up in the bucket (nats-py may show a tombstone only after that pass),
        and written only if the bucket never had it."""
        candidates = {}
        for key, payload in self._local().items():
            name = token(key)
            self._real[name] = key
            if name not in seen and key not in self._pending and key != self._inflight:
                candidates[key] = payload
        if candidates:
            task = asyncio.get_running_loop().create_task(self._check_local_only(candidates))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check_local_only(self, candidates: dict[str, bytes]) -> None:
        stream = f"KV_{self.bucket}"
        for key, payload in candidates.items():
            try:
                last = await asyncio.wait_for(self.conn.js.get_last_msg(
                    stream, f"$KV.{self.bucket}.{token(key)}"), WRITE_TIMEOUT)
            except nats.js.errors.NotFoundError:
                if key not in self._pending and key != self._inflight:
                    self._queue(key, payload)  # made here before this node joined
                continue
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("cluster: %s: cannot look %r up: %s", self.bucket, key, exc)
                continue
            headers = last.headers or {}
            if headers.get("KV-Operation") in ("DEL", "PURGE"):
                self._remote(key, int(last.seq or 0), None, echo=False)
                continue
            try:
                origin, _, value = unpack(last.data or b"")
            except (struct.error, UnicodeDecodeError):
                continue
            self._remote(key, int(last.seq or 0), value, echo=origin == self.origin)
