"""emqx_statsd: every metric and stat pushed to a StatsD server over UDP.

Every ``statsd.interval`` the plugin reads the node (`read_node`) and
sends, in as few datagrams as fit ``statsd.max_packet_size``:

- each metric that changed since the last push as a counter of the change:
  ``<prefix>.messages.received:12|c``;
- each stat and node gauge as a gauge: ``<prefix>.connections.count:3|g``;
- with ``statsd.tags`` set, DogStatsD tags on every line: ``...|c|#env:prod``.

Names are the REST API's with ``/`` turned into ``.``.  UDP is fire and
forget: a send that fails is counted (`errors`) and logged once per
interval, never retried.  The last changes are pushed once more at unload.
(EMQ X v3's emqx_statsd pushed to a Prometheus Pushgateway despite its
name; docs/feature-plugins.md says why Starling speaks StatsD instead.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Mapping
from typing import Any

from starling.config import parse_duration

from . import ConfigKey, Plugin, PluginUnavailable, parse_port, read_node

log = logging.getLogger(__name__)

_TAG = re.compile(r"^[A-Za-z0-9_.\-/]+(:[A-Za-z0-9_.\-/]+)?$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]*$")


def parse_interval(value: str) -> float:
    """``10s``, ``500ms``; a bare number is milliseconds, as EMQ X's ``5000``."""
    text = value.strip()
    seconds = int(text) / 1000 if text.isdigit() else parse_duration(text)
    if seconds < 0.05:
        raise ValueError("the interval must be at least 50ms")
    return seconds


def parse_prefix(value: str) -> str:
    value = value.strip().strip(".")
    if not _NAME.match(value):
        raise ValueError("a prefix has letters, digits, '_', '-' and '.' only")
    return value


def parse_tags(value: str) -> tuple[str, ...]:
    """``env:prod,region:eu`` (or ``key`` alone)."""
    tags = tuple(t.strip() for t in value.split(",") if t.strip())
    for tag in tags:
        if not _TAG.match(tag):
            raise ValueError(f"bad tag {tag!r}: use key:value, separated by commas")
    return tags


def parse_packet_size(value: str) -> int:
    size = int(value)
    if not 64 <= size <= 65000:
        raise ValueError("max_packet_size must be 64-65000 bytes")
    return size


def statsd_name(prefix: str, name: str) -> str:
    base = name.replace("/", ".")
    return f"{prefix}.{base}" if prefix else base


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def lines(prefix: str, tags: tuple[str, ...], counters: Mapping[str, int],
          gauges: Mapping[str, float]) -> list[str]:
    """The StatsD lines of one push: counters (already deltas) then gauges."""
    suffix = f"|#{','.join(tags)}" if tags else ""
    out = [f"{statsd_name(prefix, n)}:{v}|c{suffix}" for n, v in counters.items()]
    out += [f"{statsd_name(prefix, n)}:{format_number(v)}|g{suffix}" for n, v in gauges.items()]
    return out


def packets(all_lines: list[str], max_size: int) -> list[bytes]:
    """Lines joined by newlines into datagrams of at most `max_size` bytes."""
    out: list[bytes] = []
    current = b""
    for line in all_lines:
        data = line.encode()
        if current and len(current) + 1 + len(data) > max_size:
            out.append(current)
            current = b""
        current = data if not current else current + b"\n" + data
    if current:
        out.append(current)
    return out


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, plugin: StatsdPlugin) -> None:
        self.plugin = plugin

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        self.plugin.errors += 1


class StatsdPlugin(Plugin):
    SCHEMA = (
        ConfigKey("statsd.host", "127.0.0.1", "The StatsD server (name or address)."),
        ConfigKey("statsd.port", "8125", "Its UDP port.", parse_port),
        ConfigKey("statsd.prefix", "emqx", "Put before every name ('' for none).",
                  parse_prefix, required=False),
        ConfigKey("statsd.tags", "", "DogStatsD tags on every line: key:value,key:value.",
                  parse_tags, required=False),
        ConfigKey("statsd.interval", "10s",
                  "Push interval (10s, 500ms; a bare number is milliseconds).",
                  parse_interval),
        ConfigKey("statsd.max_packet_size", "1432", "Largest datagram sent, bytes.",
                  parse_packet_size),
    )

    def __init__(self, context: Any, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.broker = context.broker
        self.prefix: str = self.settings["statsd.prefix"]
        self.tags: tuple[str, ...] = self.settings["statsd.tags"]
        self.interval: float = self.settings["statsd.interval"]
        self.max_size: int = self.settings["statsd.max_packet_size"]
        self.pushes = 0
        self.errors = 0
        self._last: dict[str, int] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        host, port = self.settings["statsd.host"], self.settings["statsd.port"]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), timeout=5.0)
        except (OSError, TimeoutError) as exc:
            raise PluginUnavailable(f"cannot resolve statsd.host {host!r}: "
                                    f"{getattr(exc, 'strerror', None) or 'timed out'}") from None
        family, _, _, _, address = infos[0]
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), family=family, remote_addr=(str(address[0]), port))
        self._last = read_node(self.broker).counters  # count from here on
        self._task = asyncio.create_task(self._run(), name="emqx_statsd")

    async def unload(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._transport is not None:
            self.push()  # what changed since the last push is not lost
            self._transport.close()
            self._transport = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.push()
            except Exception:  # the timer must survive anything one push does
                log.exception("statsd push failed")

    def push(self) -> None:
        """Send one reading: counter changes since the last push, and every gauge."""
        reading = read_node(self.broker)
        deltas = {}
        for name, value in reading.counters.items():
            change = value - self._last.get(name, 0)
            if change:
                deltas[name] = change
        self._last = reading.counters
        transport = self._transport
        if transport is None:
            return
        failed = 0
        for datagram in packets(lines(self.prefix, self.tags, deltas, reading.gauges),
                                self.max_size):
            try:
                transport.sendto(datagram)
            except OSError:
                failed += 1
        self.pushes += 1
        if failed:
            self.errors += failed
            log.warning("statsd: %d datagram(s) could not be sent", failed)
