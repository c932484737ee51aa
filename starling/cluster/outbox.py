"""Everything a node sends to NATS, in order, without ever making the broker wait.

The broker hands messages over synchronously (`batch`, `send`): they are
appended to a bounded buffer and a single sender task publishes them.
Records for one subject within one loop iteration go out as one NATS
message (a batch), so fan-out to another node costs one NATS publish per
iteration, not one per message.  One buffer and one task keep the order in
which things were handed over, which is what keeps each publisher's
messages in order on the other nodes.

When NATS is slow or unreachable the buffer fills up to `limit` bytes; past
that, what is handed over is dropped and counted (`on_drop`), and local
delivery goes on untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import nats.errors

from .connection import NatsConnection

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, conn: NatsConnection, limit: int,
                 on_drop: Callable[[int], None]) -> None:
        self.conn = conn
        self.limit = limit
        self._on_drop = on_drop
        #: (subject, payload, records in it) in the order handed over.
        self._queue: deque[tuple[str, bytes, int]] = deque()
        self._queued_bytes = 0
        #: This iteration's records by subject, and their byte count.
        self._batches: dict[str, list[bytes]] = {}
        self._batch_bytes = 0
        self._scheduled = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def buffered(self) -> int:
        return self._queued_bytes + self._batch_bytes

    # -- handing over (synchronous, from the broker's dispatch) -----------------------
    def batch(self, subject: str, record: bytes) -> bool:
        """Add one record to `subject`'s batch; False (and counted) if the buffer is full."""
        if self._queued_bytes + self._batch_bytes + len(record) > self.limit:
            self._on_drop(1)
            return False
        records = self._batches.get(subject)
        if records is None:
            records = self._batches[subject] = []
        records.append(record)
        self._batch_bytes += len(record)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._close_batches)
        return True

    def send(self, subject: str, payload: bytes) -> None:
        """Queue one NATS message (control traffic: route changes).  Past the limit it
        is dropped too: the others notice the gap and ask for the whole table."""
        self._close_batches()
        if self._queued_bytes + len(payload) > self.limit:
            return
        self._queue.append((subject, payload, 0))
        self._queued_bytes += len(payload)
        self._wake.set()

    def _close_batches(self) -> None:
        """Move this iteration's batches to the queue, each split to fit NATS's
        max_payload (a single record over it is dropped and counted)."""
        self._scheduled = False
        if not self._batches:
            return
        batches, self._batches = self._batches, {}
        self._batch_bytes = 0
        max_payload = self.conn.max_payload
        queue = self._queue
        for subject, records in batches.items():
            chunk: list[bytes] = []
            size = 0
            for record in records:
                if len(record) > max_payload:
                    self._on_drop(1)
                    continue
                if size + len(record) > max_payload:
                    queue.append((subject, b"".join(chunk), len(chunk)))
                    self._queued_bytes += size
                    chunk, size = [], 0
                chunk.append(record)
                size += len(record)
            if chunk:
                queue.append((subject, b"".join(chunk), len(chunk)))
                self._queued_bytes += size
        self._wake.set()

    # -- the sender task -------------------------------------------------------------
    async def _run(self) -> None:
        queue = self._queue
        publish = self.conn.nc.publish
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                subject, payload, records = queue.popleft()
                self._queued_bytes -= len(payload)
                try:
                    await publish(subject, payload)
                    self.sent += records
                except (nats.errors.Error, OSError) as exc:
                    if records:
                        self._on_drop(records)
                    log.debug("cluster: publish to %s failed: %s", subject, exc)
