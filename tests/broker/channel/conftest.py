"""Unit tests of the MQTT channel's flows: a real `Channel` and a real `Broker`
driven through a fake in-memory connection and a clock moved by hand
(`helpers/channels.py`).  No sockets, no sleeps: each test runs in
milliseconds.  Test functions are `async def`, run here on a fresh event loop.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests on their own event loop (no plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True

