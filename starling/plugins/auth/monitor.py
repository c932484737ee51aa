"""What every auth plugin reports about itself: its ``auth/<kind>/...`` and
``acl/<kind>/...`` counters (`AuthMetrics`), and, for those that ask an outside
server, the alarm raised while that server cannot be reached (`ServerAlarm`).

The server-down alarm: the first failed call raises it (``<plugin>_down`` for
emqx_auth_http / _ldap, ``<plugin>_server_down`` for the database plugins; the
description names the server, never a credential), and starts a probe that
tries the server every `interval` seconds; the first call or probe that gets
through clears it.  Unloading the plugin stops the probe and clears the alarm
(nobody would be left to clear it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starling.broker import Broker

from .. import cancel

log = logging.getLogger(__name__)

#: Seconds between two probes of a server that is down (emqx_auth_http, _ldap).
PROBE_INTERVAL = 2.0


class AuthMetrics:
    """``auth/<kind>/success|failure|ignore`` and ``acl/<kind>/allow|deny|ignore``,
    created at zero when the plugin is made."""

    def __init__(self, broker: Broker, kind: str) -> None:
        self._counters = broker.counters
        self._kind = kind
        for outcome in ("success", "failure", "ignore"):
            self._counters.setdefault(f"auth/{kind}/{outcome}", 0)
        for outcome in ("allow", "deny", "ignore"):
            self._counters.setdefault(f"acl/{kind}/{outcome}", 0)

    def auth(self, outcome: str) -> None:
        self._counters[f"auth/{self._kind}/{outcome}"] += 1

    def acl(self, outcome: str) -> None:
        self._counters[f"acl/{self._kind}/{outcome}"] += 1


class ServerAlarm:
    """The server-down alarm of one plugin, and the probe that clears it.

    A plugin may talk to more than one server (emqx_auth_http's three URLs): the
    alarm is up while any of them is down, and its description names each."""

    def __init__(self, broker: Broker, alarm_id: str, probe: Callable[[str], Awaitable[Any]],
                 *, interval: float = PROBE_INTERVAL, label: str = "") -> None:
        """`probe(server)` raises while that server is still unreachable; a
        server is named ``host:port`` (never with credentials).  `label` goes
        before each server in the description (``"Redis server "``)."""
        self.broker = broker
        self.alarm_id = alarm_id
        self._probe = probe
        self._interval = interval
        self._label = label
        self._down: dict[str, str] = {}  # server -> why
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def down(self) -> list[str]:
        return list(self._down)

    def failed(self, server: str, error: BaseException, why: str | None = None) -> None:
        """A call to `server` failed with `error` (`why` says how, in the
        description; by default the error's type)."""
        if self._closed:
            return  # a call that was under way when the plugin unloaded
        why = why or type(error).__name__
        fresh = server not in self._down
        self._down[server] = why
        if fresh:
            log.warning("%s: %s unreachable (%s)", self.alarm_id, server, why)
        self.broker.alarms.raise_alarm(self.alarm_id, self._desc())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probing())

    def succeeded(self, server: str) -> None:
        if self._down.pop(server, None) is None:
            return
        log.info("%s: %s reachable again", self.alarm_id, server)
        if self._down:
            self.broker.alarms.raise_alarm(self.alarm_id, self._desc())
        else:
            self.broker.alarms.clear_alarm(self.alarm_id)

    def _desc(self) -> str:
        return "; ".join(f"{self._label}{server} unreachable ({why})" for server, why in self._down.items())

    async def _probing(self) -> None:
        while self._down:
            await asyncio.sleep(self._interval)
            for server in list(self._down):
                try:
                    await self._probe(server)
                except Exception:
                    continue
                self.succeeded(server)

    async def close(self) -> None:
        """The plugin unloads: stop probing and clear the alarm, for good."""
        self._closed = True
        await cancel(self._task)
        self._task = None
        self._down.clear()
        self.broker.alarms.clear_alarm(self.alarm_id)


async def tcp_probe(server: str, timeout: float) -> None:
    """Open and close a TCP connection to ``host:port``; raises if nobody answers."""
    host, _, port = server.rpartition(":")
    _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)),
                                       timeout)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
