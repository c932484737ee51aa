"""What the auth plugins that ask an outside server share (emqx_auth_http,
emqx_auth_ldap): EMQ X's placeholders, the ``on_error`` choice, the metrics
they count, and the alarm raised while their server cannot be reached.

The server-down alarm: the first failed call raises ``<plugin>_down`` (the
description names the server, never a credential), and starts a probe that
tries the server every `PROBE_INTERVAL` seconds; the first call or probe
that gets through clears it.  Unloading the plugin stops the probe and
clears the alarm (nobody would be left to clear it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starling.broker import AuthResult, Broker, Channel
from starling.config import parse_duration
from starling.mqtt import ReasonCode

log = logging.getLogger(__name__)

#: Seconds between two probes of a server that is down.
PROBE_INTERVAL = 2.0
#: What a call that failed (timeout, connection error) answers: EMQ X's "ignore"
#: (the chain goes on, `mqtt.allow_anonymous` / `acl_nomatch` decide) or "deny".
ON_ERROR = ("ignore", "deny")


def parse_on_error(value: str) -> str:
    text = value.strip().lower()
    if text not in ON_ERROR:
        raise ValueError("must be ignore or deny")
    return text


def parse_timeout(value: str) -> float:
    """A duration above 0: every call to a server is bounded."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than 0 (every call to the server is bounded)")
    return seconds


def parse_count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def common_name(subject: str | None) -> str:
    """The CN of a certificate subject (``CN=dev1,O=acme``), or ""."""
    for part in (subject or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.upper() == "CN":
            return value
    return ""


def client_vars(channel: Channel) -> dict[str, str]:
    """EMQ X's placeholders for a client; absent values are "" (``%A`` access and
    ``%t`` topic are filled in by ACL checks; no mountpoint ``%m`` or listener
    port ``%l`` in Starling)."""
    password = channel.password.decode("utf-8", "replace") if channel.password else ""
    subject = channel.conn.peercert or ""
    return {"%u": channel.username or "", "%c": channel.client_id or "",
            "%a": channel.peerhost, "%P": password, "%C": common_name(subject),
            "%cn": common_name(subject), "%d": subject, "%dn": subject, "%m": "", "%l": "",
            "%A": "", "%t": ""}


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace every placeholder in `template` (longest names first, so ``%cn`` is
    not read as ``%c`` followed by ``n``)."""
    out: list[str] = []
    i = 0
    names = sorted(values, key=len, reverse=True)
    while i < len(template):
        if template[i] == "%":
            name = next((n for n in names if template.startswith(n, i)), None)
            if name is not None:
                out.append(values[name])
                i += len(name)
                continue
        out.append(template[i])
        i += 1
    return "".join(out)


def denied() -> AuthResult:
    return AuthResult(ReasonCode.BAD_USER_NAME_OR_PASSWORD, anonymous=False)


class Counters:
    """``<prefix>/<outcome>`` metrics, created at zero when the plugin is made."""

    def __init__(self, broker: Broker, prefix: str, outcomes: tuple[str, ...]) -> None:
        self._counters = broker.counters
        self._prefix = prefix
        for outcome in outcomes:
            self._counters.setdefault(f"{prefix}/{outcome}", 0)

    def inc(self, outcome: str) -> None:
        self._counters[f"{self._prefix}/{outcome}"] += 1


class ServerAlarm:
    """The ``<plugin>_down`` alarm of one plugin, and the probe that clears it.

    A plugin may talk to more than one server (emqx_auth_http's three URLs): the
    alarm is up while any of them is down, and its description names each."""

    def __init__(self, broker: Broker, alarm_id: str,
                 probe: Callable[[str], Awaitable[Any]]) -> None:
        """`probe(server)` raises while that server is still unreachable; a
        server is named ``host:port`` (never with credentials)."""
        self.broker = broker
        self.alarm_id = alarm_id
        self._probe = probe
        self._down: dict[str, str] = {}  # server -> why
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def down(self) -> list[str]:
        return list(self._down)

    def failed(self, server: str, error: BaseException) -> None:
        if self._closed:
            return  # a call that was under way when the plugin unloaded
        why = type(error).__name__
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
        return "; ".join(f"{server} unreachable ({why})" for server, why in self._down.items())

    async def _probing(self) -> None:
        while self._down:
            await asyncio.sleep(PROBE_INTERVAL)
            for server in list(self._down):
                try:
                    await self._probe(server)
                except Exception:
                    continue
                self.succeeded(server)

    async def close(self) -> None:
        """The plugin unloads: stop probing and clear the alarm, for good."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
