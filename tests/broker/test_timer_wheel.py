"""The timer wheel (broker/timers.py) on a clock moved by hand: deadlines fire once,
at their bucket, never early."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.channels import ManualClock

from starling.broker.timers import TimerWheel


class Item:
    def __init__(self) -> None:
        self.timer_bucket: dict[Any, None] | None = None
        self.fired: list[float] = []

    def on_deadline(self, now: float) -> None:
        self.fired.append(now)


def test_deadline_fires_once_at_its_bucket() -> None:
    clock = ManualClock(start=100.0)
    wheel = TimerWheel(clock=clock)
    item = Item()
    wheel.add(item, 101.25)
    clock.advance(1.2)
    assert item.fired == []
    clock.advance(0.2)
    assert item.fired == [pytest.approx(101.3)]  # rounded up to its bucket, never early
    clock.advance(10)
    assert len(item.fired) == 1


def test_a_bucket_whose_time_rounds_below_its_key_still_fires() -> None:
    """43 x 0.1 is 4.3, but 4.3 / 0.1 is 42.999...: the wheel must take the bucket
    as due when its own timer fires, not set a zero-delay timer for it again
    (which, on a clock that does not move meanwhile, never ends)."""
    clock = ManualClock(start=4.0)
    wheel = TimerWheel(clock=clock)
    item = Item()
    wheel.add(item, 4.3)
    clock.advance(0.3)
    assert item.fired == [clock.now]
    assert clock.pending() == []
