"""The $SYS tree (EMQ X v3 names and payloads, facts §12).

Prefix ``$SYS/brokers/<node>/``.  Every heartbeat (1 s): ``uptime`` and
``datetime``.  Every `sys_interval` (60 s): ``$SYS/brokers`` (retained),
``version`` and ``sysdescr`` (retained), ``stats/<name>`` and
``metrics/<name>``.  On each connect and disconnect, a JSON presence event
under ``clients/<clientid>/``.  These messages are flagged `sys` so they stay
out of the client traffic metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .hooks import Points
from .message import Message

if TYPE_CHECKING:
    from .hooks import Hooks
    from .options import BrokerOptions
    from .router import Router
    from .snapshots import Connected
    from .stats import Stats


def format_uptime(seconds: float) -> str:
    """EMQ X's form: "1 days,2 hours, 3 minutes, 4 seconds", leading zero units left out."""
    secs = int(seconds)
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts: list[str] = []
    if days:
        parts.append(f"{days} days,")
    if days or hours:
        parts.append(f"{hours} hours, ")
    if days or hours or minutes:
        parts.append(f"{minutes} minutes, ")
    parts.append(f"{secs} seconds")
    return "".join(parts)


def format_datetime(epoch: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


class SysSource(Protocol):
    """What the $SYS publisher reads and publishes through: the `Broker` is one
    (declared here, so this module does not depend on the broker's)."""

    options: BrokerOptions
    running: bool
    router: Router[Any]
    shared_router: Router[Any]
    hooks: Hooks
    stats: Stats

    def publish(self, message: Message) -> int: ...

    def uptime(self) -> float: ...

    def metrics(self) -> dict[str, int]: ...


class SysPublisher:
    def __init__(self, broker: SysSource) -> None:
        self._broker = broker
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def prefix(self) -> str:
        return f"$SYS/brokers/{self._broker.options.node_name}/"

    def start(self) -> None:
        options = self._broker.options
        if options.sys_heartbeat > 0:
            self._schedule(options.sys_heartbeat, self.heartbeat)
        self.publish_info()
        if options.sys_interval > 0:
            self._schedule(options.sys_interval, self.publish_info)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _schedule(self, interval: float, action: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        slot = len(self._timers)

        def fire() -> None:
            self._timers[slot] = loop.call_later(interval, fire)
            action()

        self._timers.append(loop.call_later(interval, fire))

    def _publish(self, topic: str, payload: str, retain: bool = False, qos: int = 0) -> None:
        self._broker.publish(Message(topic, payload.encode(), qos, retain, sys=True))

    def heartbeat(self) -> None:
        self._publish(self.prefix + "uptime", format_uptime(self._broker.uptime()))
        self._publish(self.prefix + "datetime", format_datetime())

    def publish_retained(self) -> None:
        """The retained ones: ``$SYS/brokers``, ``version``, ``sysdescr`` (also sent
        when the retainer is switched on, so they are held from then on)."""
        options = self._broker.options
        self._publish("$SYS/brokers", options.node_name, retain=True)
        self._publish(self.prefix + "version", options.version, retain=True)
        self._publish(self.prefix + "sysdescr", options.sysdescr, retain=True)

    def publish_info(self) -> None:
        broker = self._broker
        options = broker.options
        self.publish_retained()
        if not broker.running or options.sys_interval <= 0:
            return
        for name, value in broker.stats.sample().items():
            self._publish(f"{self.prefix}stats/{name}", str(value))
        for name, value in broker.metrics().items():
            self._publish(f"{self.prefix}metrics/{name}", str(value))

    def _observed(self) -> bool:
        """Could a $SYS message reach anyone?  Only through a subscription whose
        filter starts with "$" (no wildcard matches "$SYS" [MQTT-4.7.2-1]) or a
        `message.publish` hook (rules).  If not, the per-connection presence
        events are not built at all: they cost more than the rest of a CONNECT."""
        broker = self._broker
        return broker.running and bool(
            broker.router.dollar_filters or broker.shared_router.dollar_filters
            or broker.hooks.has(Points.MESSAGE_PUBLISH))

    def client_connected(self, client: Connected) -> None:
        if not self._observed():
            return
        payload = {
            "clientid": client.client_id,
            "username": client.username if client.username is not None else "undefined",
            "ipaddress": client.peerhost,
            "connack": 0,
            "ts": int(time.time() * 1000),
            "clean_start": client.clean_start,
            "proto_ver": client.protocol_level,
            "proto_name": client.proto_name,
            "keepalive": client.keepalive,
        }
        self._presence(client, "connected", payload)

    def client_disconnected(self, client: Connected, reason: str) -> None:
        if not self._observed():
            return
        payload = {
            "clientid": client.client_id,
            "username": client.username if client.username is not None else "undefined",
            "reason": reason,
            "ts": int(time.time() * 1000),
        }
        self._presence(client, "disconnected", payload)

    def _presence(self, client: Connected, event: str, payload: dict[str, object]) -> None:
        if not self._broker.running:
            return
        topic = f"{self.prefix}clients/{client.client_id}/{event}"
        self._publish(topic, json.dumps(payload), qos=self._broker.options.presence_qos)
