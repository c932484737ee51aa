"""One event-loop timer for every connection's deadline (idle and keepalive).

A `call_later` handle per connection costs ~650 bytes (uvloop's TimerHandle,
its libuv timer, the bound method) and two timer operations per CONNECT.
Here a connection costs one entry in a bucket: deadlines are rounded *up* to
`resolution` seconds (never early, at most that much late), each bucket holds
the connections due in it, and one loop timer is set for the earliest bucket.
When a bucket comes due, each of its connections is asked `on_deadline(now)`;
it acts (closes) or registers again with its next deadline, as a keepalive
that saw traffic in the meantime does.  Like the per-connection timers it
replaces, a connection is looked at once per window, not per packet.
"""

from __future__ import annotations

import heapq
import logging
import math
from typing import Any, Protocol

from .clock import DEFAULT_CLOCK, Clock, Timer

log = logging.getLogger(__name__)

#: Seconds per bucket: how late a deadline may be acted on.
RESOLUTION = 0.1


class Timed(Protocol):
    #: The bucket this item is registered in (a reference, no object of its own).
    timer_bucket: dict[Any, None] | None

    def on_deadline(self, now: float) -> None: ...


class TimerWheel:
    __slots__ = ("_buckets", "_due", "_handle", "_keys", "clock", "resolution")

    def __init__(self, resolution: float = RESOLUTION, clock: Clock = DEFAULT_CLOCK) -> None:
        self.resolution = resolution
        self.clock = clock
        #: Bucket key (deadline / resolution, rounded up) → items due then.
        self._buckets: dict[int, dict[Timed, None]] = {}
        #: Heap of the keys in `_buckets`.
        self._keys: list[int] = []
        self._handle: Timer | None = None
        #: The key the loop timer is set for.
        self._due = 0

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def add(self, item: Timed, deadline: float) -> None:
        """Call `item.on_deadline` at `deadline` (monotonic), replacing any earlier one."""
        old = item.timer_bucket
        if old is not None:
            old.pop(item, None)
        key = math.ceil(deadline / self.resolution)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            heapq.heappush(self._keys, key)
            if self._handle is None or key < self._due:
                self._schedule(key)
        bucket[item] = None
        item.timer_bucket = bucket

    def remove(self, item: Timed) -> None:
        bucket = item.timer_bucket
        if bucket is not None:
            item.timer_bucket = None
            bucket.pop(item, None)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for bucket in self._buckets.values():
            for item in bucket:
                item.timer_bucket = None
        self._buckets.clear()
        self._keys.clear()

    def _schedule(self, key: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._due = key
        delay = max(0.0, key * self.resolution - self.clock.monotonic())
        self._handle = self.clock.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = self.clock.monotonic()
        keys = self._keys
        resolution = self.resolution
        due: list[dict[Timed, None]] = []
        # Due as `_schedule` reckons it (key x resolution, not now / resolution: the
        # two can round apart, and a key not due here would be rescheduled at once).
        while keys and keys[0] * resolution <= now:
            bucket = self._buckets.pop(heapq.heappop(keys), None)
            if bucket:
                due.append(bucket)
        # Buckets taken first: an item registered again for a time already past
        # waits for the next turn instead of looping here.
        for bucket in due:
            # Items removed or moved by an earlier item's action are taken out of
            # the bucket then: iterate over a copy.
            for item in list(bucket):
                if item.timer_bucket is not bucket:
                    continue
                item.timer_bucket = None
                try:
                    item.on_deadline(now)
                except Exception:
                    log.exception("deadline handler failed")
        if keys:
            self._schedule(keys[0])
