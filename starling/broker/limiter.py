"""Per-client rate limits (a zone's `publish_limit` and `rate_limit.conn_bytes_in`).

As in EMQ X, nothing already read is refused or dropped: what arrived is
handled, and a client over its budget is simply not read from until the bucket
has refilled, so TCP flow control slows it down.
"""

from __future__ import annotations

from collections.abc import Callable

from .clock import Clock, Timer


class TokenBucket:
    """`amount` tokens per `period` seconds, bursts of up to `amount`."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, amount: int, period: float, now: float) -> None:
        self.capacity = float(amount)
        self.rate = amount / period
        self.tokens = self.capacity
        self.stamp = now

    def take(self, n: float, now: float) -> float:
        """Take `n` tokens (going into debt if need be); the seconds until the
        debt is repaid, 0.0 when there was enough."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate) - n
        self.tokens, self.stamp = tokens, now
        return 0.0 if tokens >= 0 else -tokens / self.rate


class Limiter:
    """A connection's buckets; tells its owner when to hold the client back
    (`pause`) and when to let it go again (`resume`)."""

    __slots__ = ("_bytes", "_clock", "_pause", "_publish", "_resume", "_timer")

    def __init__(self, publish_limit: tuple[int, float] | None,
                 bytes_limit: tuple[int, float] | None,
                 pause: Callable[[], None], resume: Callable[[], None], clock: Clock) -> None:
        self._clock = clock
        now = clock.monotonic()
        self._publish = TokenBucket(*publish_limit, now) if publish_limit else None
        self._bytes = TokenBucket(*bytes_limit, now) if bytes_limit else None
        self._pause, self._resume = pause, resume
        self._timer: Timer | None = None

    def published(self) -> None:
        if self._publish is not None:
            self._hold(self._publish.take(1, self._clock.monotonic()))

    def received(self, size: int) -> None:
        if self._bytes is not None:
            self._hold(self._bytes.take(size, self._clock.monotonic()))

    def cancel(self) -> None:
        """Stop limiting; a hold under way ends now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._resume()

    def _hold(self, wait: float) -> None:
        if wait <= 0.0 or self._timer is not None:
            return
        self._pause()
        self._timer = self._clock.call_later(wait, self._release)

    def _release(self) -> None:
        self._timer = None
        self._resume()
