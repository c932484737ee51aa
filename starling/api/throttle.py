"""Slowing down password guessing on the HTTP listeners.

Every credential check (HTTP Basic on both listeners, ``POST /api/v3/auth``)
goes through `LoginThrottle.guard`.  After `FREE_FAILURES` failures from one
source address, or for one user name, each further attempt from that address
or for that user waits for its turn: one attempt per `step` seconds, the step
doubling with every failure up to `MAX_STEP`.  Turns are handed out when a
request arrives, so requests sent in parallel queue one behind the other
instead of being checked together.  The wait is an `asyncio.sleep` on the
attacker's own request: no lock is held and no CPU is spent while it waits,
and other users and addresses are not slowed.  A success clears the address
and the user; an entry is forgotten `FORGET_AFTER` seconds after its last
failure, and at most `MAX_ENTRIES` are kept (the oldest go first).

Each failure is logged at warning with the address and user name (never the
password).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

FREE_FAILURES = 5
FIRST_STEP = 0.5
MAX_STEP = 30.0
FORGET_AFTER = 900.0
MAX_ENTRIES = 10_000


@dataclass(slots=True)
class _Entry:
    failures: int = 0
    next_turn: float = 0.0  #: monotonic time before which no attempt is checked
    last_failure: float = 0.0


def step(failures: int) -> float:
    """Seconds between attempts after `failures` failures (0 while still free)."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(FIRST_STEP * float(2 ** min(failures - FREE_FAILURES, 16)), MAX_STEP)


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    def _keys(self, address: str, user: str) -> list[tuple[str, str]]:
        """`user` is "<kind>:<name>" (apps and dashboard users are different people)."""
        return [("address", address), ("user", user)]

    def _entry(self, key: tuple[str, str], now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last_failure > FORGET_AFTER:
            del self._entries[key]
            return None
        return entry

    def turn(self, address: str, user: str) -> float:
        """Seconds this attempt must wait before it is checked (and book its turn)."""
        if not self._entries:
            return 0.0
        now = self._clock()
        start = now
        booked = []
        for key in self._keys(address, user):
            entry = self._entry(key, now)
            if entry is not None and entry.failures >= FREE_FAILURES:
                start = max(start, entry.next_turn)
                booked.append(entry)
        for entry in booked:
            entry.next_turn = start + step(entry.failures)
        return start - now

    def failed(self, address: str, user: str) -> int:
        """Count a failure; returns the address's failures so far."""
        now = self._clock()
        counts = []
        for key in self._keys(address, user):
            entry = self._entry(key, now)
            if entry is None:
                if len(self._entries) >= MAX_ENTRIES:
                    del self._entries[next(iter(self._entries))]
                entry = self._entries[key] = _Entry()
            entry.failures += 1
            entry.last_failure = now
            entry.next_turn = max(entry.next_turn, now + step(entry.failures))
            counts.append(entry.failures)
        return counts[0]

    def succeeded(self, address: str, user: str) -> None:
        if self._entries:
            for key in self._keys(address, user):
                self._entries.pop(key, None)

    async def guard(self, what: str, address: str, kind: str, user: str,
                    check: Callable[[], Awaitable[bool]]) -> bool:
        """Wait for this attempt's turn, run `check`, count and log the outcome.
        `kind` names whose names `user` is among ("app", "dashboard user")."""
        key = f"{kind}:{user}"
        wait = self.turn(address, key)
        if wait > 0:
            await asyncio.sleep(wait)
        if await check():
            self.succeeded(address, key)
            return True
        failures = self.failed(address, key)
        delay = step(failures)
        log.warning("%s: authentication failed for %r from %s (%d failed attempt%s from "
                    "this address%s)", what, user, address or "an unknown address", failures,
                    "" if failures == 1 else "s",
                    f"; further attempts wait {delay:g}s" if delay else "")
        return False
