"""The hooks bus: ordering, STOP, folds, error isolation, async folds."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from starling.broker import STOP, HookPoint, Hooks, Stop

P = HookPoint.CLIENT_CONNECT
Q = HookPoint.MESSAGE_PUBLISH


def recorder(calls: list[Any], name: Any, result: Any = None) -> Any:
    def callback(*args: Any) -> Any:
        calls.append((name, args))
        return result
    return callback


def names(calls: list[Any]) -> list[Any]:
    return [name for name, _ in calls]


# -- registration and ordering ---------------------------------------------------------

def test_empty_chain() -> None:
    hooks = Hooks()
    for point in HookPoint:
        assert hooks.has(point) is False
        assert hooks.callbacks(point) == []
        assert hooks.run(point, "x") is True
        assert hooks.run_fold(point, (), "acc") == "acc"


def test_priority_higher_first_then_registration_order() -> None:
    hooks = Hooks()
    calls: list[Any] = []
    hooks.add(P, recorder(calls, "p0-first"))
    hooks.add(P, recorder(calls, "p10"), priority=10)
    hooks.add(P, recorder(calls, "p0-second"))
    hooks.add(P, recorder(calls, "p-5"), priority=-5)
    hooks.add(P, recorder(calls, "p10-second"), priority=10)
    hooks.add(P, recorder(calls, "p0-third"), priority=0)
    assert hooks.run(P, 1, 2) is True
    assert names(calls) == ["p10", "p10-second", "p0-first", "p0-second", "p0-third", "p-5"]
    assert all(args == (1, 2) for _, args in calls)
    assert len(hooks.callbacks(P)) == 6


def test_points_are_independent() -> None:
    hooks = Hooks()
    calls: list[Any] = []
    hooks.add(P, recorder(calls, "p"))
    assert hooks.has(P)
    assert not hooks.has(Q)
    hooks.run(Q)
    assert calls == []


def test_add_accepts_the_hook_name_as_a_string() -> None:
    hooks = Hooks()
    calls: list[Any] = []
    hooks.add("client.connect", recorder(calls, "s"))  # type: ignore[arg-type]
    assert hooks.has(HookPoint.CLIENT_CONNECT)
    with pytest.raises(ValueError):
        hooks.add("no.such.hook", recorder(calls, "x"))  # type: ignore[arg-type]


def test_remove() -> None:
    hooks = Hooks()
    calls: list[Any] = []
    keep, drop = recorder(calls, "keep"), recorder(calls, "drop")
    hooks.add(P, keep)
    hooks.add(P, drop, priority=5)
    hooks.add(Q, drop)
    hooks.remove(P, drop)
    assert hooks.callbacks(P) == [keep]
    assert hooks.callbacks(Q) == [drop]  # only the named point
    hooks.run(P)
    assert names(calls) == ["keep"]
    hooks.remove(P, drop)  # removing twice is harmless
    hooks.remove(P, keep)
    assert not hooks.has(P)


def test_remove_bound_method() -> None:
    class Plugin:
        def __init__(self) -> None:
            self.seen = 0

        def on_connect(self, *args: Any) -> None:
            self.seen += 1

    plugin = Plugin()
    hooks = Hooks()
    hooks.add(P, plugin.on_connect)
    hooks.run(P)
    hooks.remove(P, plugin.on_connect)  # a new bound-method object, equal to the first
    hooks.run(P)
    assert plugin.seen == 1
    assert not hooks.has(P)


def test_callback_removing_itself_during_run_does_not_skip_others() -> None:
    hooks = Hooks()
    calls: list[Any] = []

    def once(*args: Any) -> None:
        calls.append("once")
        hooks.remove(P, once)

    hooks.add(P, once, priority=1)
    hooks.add(P, recorder(calls, "next"))
    hooks.run(P)
    hooks.run(P)
    assert calls == ["once", ("next", ()), ("next", ())]


# -- run and STOP ----------------------------------------------------------------------

def test_stop_ends_the_chain() -> None:
    hooks = Hooks()
    calls: list[Any] = []
    hooks.add(P, recorder(calls, "first"), priority=2)
    hooks.add(P, recorder(calls, "stopper", STOP), priority=1)
    hooks.add(P, recorder(calls, "never"))
    assert hooks.run(P, "arg") is False
    assert names(calls) == ["first", "stopper"]
    assert repr(STOP) == "STOP"


def test_return_values_other_than_stop_do_not_stop_run() -> None:
    hooks = Hooks()
    calls: list[Any] = []
    for value in (False, None, 0, "STOP", Stop(1)):
        hooks.add(P, recorder(calls, value, value))
    assert hooks.run(P) is True
    assert len(calls) == 5


# -- run_fold --------------------------------------------------------------------------

def test_fold_threads_the_accumulator() -> None:
    hooks = Hooks()
    seen: list[Any] = []

    def add_one(x: int, acc: int) -> int:
        seen.append((x, acc))
        return acc + 1

    def keep(x: int, acc: int) -> None:
        seen.append((x, acc))
        return None

    def double(x: int, acc: int) -> int:
        seen.append((x, acc))
        return acc * 2

    hooks.add(Q, add_one, priority=3)
    hooks.add(Q, keep, priority=2)
    hooks.add(Q, double, priority=1)
    assert hooks.run_fold(Q, (7,), 10) == 22
    assert seen == [(7, 10), (7, 11), (7, 11)]


def test_fold_stop_returns_its_value_and_ends_the_chain() -> None:
    hooks = Hooks()
    calls: list[Any] = []
    hooks.add(Q, lambda acc: acc + "a", priority=3)
    hooks.add(Q, lambda acc: Stop(acc + "!"), priority=2)
    hooks.add(Q, recorder(calls, "never", "zzz"), priority=1)
    assert hooks.run_fold(Q, (), "x") == "xa!"
    assert calls == []


def test_fold_stop_with_none_returns_none() -> None:
    hooks = Hooks()
    hooks.add(Q, lambda acc: Stop(None), priority=1)
    hooks.add(Q, lambda acc: "later")
    assert hooks.run_fold(Q, (), "x") is None


def test_fold_falsy_results_other_than_none_replace_the_accumulator() -> None:
    hooks = Hooks()
    hooks.add(Q, lambda acc: 0)
    assert hooks.run_fold(Q, (), 5) == 0
    hooks2 = Hooks()
    hooks2.add(Q, lambda acc: False)
    assert hooks2.run_fold(Q, (), True) is False


def test_fold_stop_marker_is_not_special_in_fold() -> None:
    """STOP belongs to `run`; in a fold it is just a new accumulator value."""
    hooks = Hooks()
    hooks.add(Q, lambda acc: STOP, priority=1)
    hooks.add(Q, lambda acc: None)
    assert hooks.run_fold(Q, (), "x") is STOP


# -- errors are isolated -----------------------------------------------------------------

def boom(*args: Any) -> Any:
    raise RuntimeError("plugin bug")


def test_raising_callback_is_isolated_in_run(caplog: pytest.LogCaptureFixture) -> None:
    hooks = Hooks()
    calls: list[Any] = []
    hooks.add(P, recorder(calls, "before"), priority=2)
    hooks.add(P, boom, priority=1)
    hooks.add(P, recorder(calls, "after"))
    with caplog.at_level(logging.ERROR, logger="starling.broker.hooks"):
        assert hooks.run(P, "x") is True
        assert hooks.run(P, "y") is True
    assert names(calls) == ["before", "after", "before", "after"]
    assert hooks.errors == 2
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 2
    assert "client.connect" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)


def test_raising_callback_is_isolated_in_fold(caplog: pytest.LogCaptureFixture) -> None:
    hooks = Hooks()
    hooks.add(Q, lambda acc: acc + 1, priority=2)
    hooks.add(Q, boom, priority=1)
    hooks.add(Q, lambda acc: acc * 10)
    with caplog.at_level(logging.CRITICAL + 1, logger="starling.broker.hooks"):
        assert hooks.run_fold(Q, (), 1) == 20  # the failed step leaves acc unchanged
    assert hooks.errors == 1


def test_base_exceptions_are_not_swallowed() -> None:
    hooks = Hooks()

    def interrupt(*args: Any) -> None:
        raise KeyboardInterrupt

    hooks.add(P, interrupt)
    with pytest.raises(KeyboardInterrupt):
        hooks.run(P)
    assert hooks.errors == 0


# -- run_fold_async ----------------------------------------------------------------------

def test_fold_async_mixes_sync_and_coroutine_callbacks() -> None:
    hooks = Hooks()
    order: list[str] = []

    async def slow_add(acc: int) -> int:
        await asyncio.sleep(0)
        order.append("slow_add")
        return acc + 5

    def sync_double(acc: int) -> int:
        order.append("sync_double")
        return acc * 2

    async def async_none(acc: int) -> None:
        order.append("async_none")
        return None

    hooks.add(HookPoint.CLIENT_AUTHENTICATE, slow_add, priority=3)
    hooks.add(HookPoint.CLIENT_AUTHENTICATE, sync_double, priority=2)
    hooks.add(HookPoint.CLIENT_AUTHENTICATE, async_none, priority=1)
    result = asyncio.run(hooks.run_fold_async(HookPoint.CLIENT_AUTHENTICATE, (), 1))
    assert result == 12
    assert order == ["slow_add", "sync_double", "async_none"]


def test_fold_async_stop_and_args() -> None:
    hooks = Hooks()
    seen: list[Any] = []

    async def decide(client: str, acc: str) -> Stop:
        seen.append((client, acc))
        return Stop("denied")

    async def never(client: str, acc: str) -> str:
        seen.append("never")
        return "allowed"

    hooks.add(HookPoint.CLIENT_AUTHENTICATE, decide, priority=1)
    hooks.add(HookPoint.CLIENT_AUTHENTICATE, never)
    result = asyncio.run(
        hooks.run_fold_async(HookPoint.CLIENT_AUTHENTICATE, ("c1",), "pending"))
    assert result == "denied"
    assert seen == [("c1", "pending")]


def test_fold_async_isolates_raising_coroutines(caplog: pytest.LogCaptureFixture) -> None:
    hooks = Hooks()

    async def broken(acc: int) -> int:
        await asyncio.sleep(0)
        raise RuntimeError("backend down")

    hooks.add(HookPoint.CLIENT_AUTHENTICATE, broken, priority=2)
    hooks.add(HookPoint.CLIENT_AUTHENTICATE, boom, priority=1)
    hooks.add(HookPoint.CLIENT_AUTHENTICATE, lambda acc: acc + 1)
    with caplog.at_level(logging.ERROR, logger="starling.broker.hooks"):
        result = asyncio.run(hooks.run_fold_async(HookPoint.CLIENT_AUTHENTICATE, (), 1))
    assert result == 2
    assert hooks.errors == 2
    assert len([r for r in caplog.records if r.exc_info]) == 2
