"""Everything a node sends to NATS, in order, without ever making the broker wait.

The broker hands messages over synchronously (`batches.add`, `send`): they
are added to this loop turn's batches (`forwards.Batches`: one per
destination node) or queued, and a single sender task publishes them.  When the turn
ends, each destination's batch goes out as one NATS message (split only past
NATS's max_payload), so crossing to another node costs one NATS publish per
turn, not one per message.  One queue and one task keep the order in which
things were handed over, which is what keeps each publisher's messages in
order on the other nodes.

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
from .forwards import Batches

log = logging.getLogger(__name__)


def _nothing(count: int) -> None:
    return None


class Outbox:
    def __init__(self, conn: NatsConnection, limit: int, on_drop: Callable[[int], None],
                 on_forwarded: Callable[[int], None] = _nothing) -> None:
        self.conn = conn
        self.limit = limit
        self._on_drop = on_drop
        #: Told how many records each closed turn holds.
        self._on_forwarded = on_forwarded
        #: (subject, payload, records in it) in the order handed over.
        self._queue: deque[tuple[str, bytes, int]] = deque()
        self._queued_bytes = 0
        #: This turn's forwarded messages, by destination: the broker hands them over
        #: with `batches.add(message, targets)` (drops counted, the turn closed here).
        self.batches = Batches(limit, self._turn_started, on_drop)
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
        return self._queued_bytes + self.batches.size

    # -- handing over (synchronous, from the broker's dispatch) -----------------------
    def _turn_started(self) -> None:
        asyncio.get_running_loop().call_soon(self.close_turn)

    def send(self, subject: str, payload: bytes) -> None:
        """Queue one NATS message (control traffic: route changes).  Past the limit it
        is dropped too: the others notice the gap and ask for the whole table."""
        self.close_turn()
        if self._queued_bytes + len(payload) > self.limit:
            return
        self._queue.append((subject, payload, 0))
        self._queued(len(payload))
        self._wake.set()

    def _queued(self, change: int) -> None:
        self._queued_bytes += change
        self.batches.queued = self._queued_bytes

    def close_turn(self) -> None:
        """The loop turn is over: its batches join the queue."""
        batches = self.batches
        batches.max_payload = self.conn.max_payload
        ready = batches.close()
        if not ready:
            return
        count, batches.count = batches.count, 0
        self._on_forwarded(count)
        queue = self._queue
        size = 0
        for batch in ready:
            queue.append(batch)
            size += len(batch[1])
        self._queued(size)
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
                self._queued(-len(payload))
                try:
                    await publish(subject, payload)
                    self.sent += records
                except (nats.errors.Error, OSError) as exc:
                    if records:
                        self._on_drop(records)
                    log.debug("cluster: publish to %s failed: %s", subject, exc)
