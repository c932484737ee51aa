"""Resources of the rule engine: the `built_in` and `web_hook` resource types,
and live resources (a web hook endpoint with its `HttpSink`, the outgoing-HTTP
piece the web hook plugin uses too).

A resource is *alive* while its endpoint answers.  A `web_hook` resource is
probed with a TCP connect to the URL's host and port (3 s) when it is created
or started and at every health check; a request that fails all its attempts
(no connection, a timeout or a 5xx answer, see http_sink.py) also marks it
down, and any answer marks it up again.  Going down raises the alarm
``resource_down/<id>``; coming back clears it.  A resource that cannot be
reached when created is still created (alive false, alarm raised), as in EMQ X.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starling.broker import Alarms
from starling.plugins import HttpSink, check_url

from .errors import RuleError, bad_arguments
from .schema import Schema, check, param

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0
WEB_HOOK_METHODS = ("POST", "PUT", "GET", "DELETE")


@dataclass(frozen=True, slots=True)
class ResourceType:
    name: str
    provider: str
    description: str
    params: Schema

BUILT_IN = ResourceType("built_in", "emqx_rule_engine",
                        "The built in resource type for debug purpose", {})
WEB_HOOK = ResourceType("web_hook", "emqx_web_hook", "WebHook Resource", {
    "url": param("string", "Request URL", "Request URL", required=True, format="url"),
    "headers": param("object", "Request Header", "Request Header", default={}, schema={}),
    "method": param("string", "Request Method", "Request Method", default="POST",
                    enum=list(WEB_HOOK_METHODS)),
})
RESOURCE_TYPES: dict[str, ResourceType] = {t.name: t for t in (BUILT_IN, WEB_HOOK)}


def check_config(rtype: ResourceType, config: Any) -> dict[str, Any]:
    """A resource's config checked against its type (400 on a bad one)."""
    checked = check(rtype.params, config, "config")
    if rtype is WEB_HOOK:
        parts = urlsplit(checked["url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_arguments("config: 'url' must be an http:// or https:// URL")
        try:
            check_url(checked["url"])  # what the web hook client itself will accept
        except ValueError as exc:
            raise bad_arguments(f"config: 'url': {exc}") from None
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise bad_arguments("config: 'url' has a bad port") from None
        headers = checked.get("headers") or {}
        if not all(isinstance(v, str) for v in headers.values()):
            raise bad_arguments("config: 'headers' values must be strings")
    return checked


@dataclass(eq=False)
class Resource:
    """A created resource.  `start()` (re)initialises it and says whether it is alive."""

    id: str
    name: str
    type: ResourceType
    config: dict[str, Any]
    description: str
    alarms: Alarms
    created_at: int
    alive: bool = field(init=False)
    #: The web hook's sender while started.
    sink: HttpSink | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.alive = self.type is BUILT_IN

    @property
    def alarm_id(self) -> str:
        return f"resource_down/{self.id}"

    def record(self) -> dict[str, Any]:
        """What the store keeps."""
        return {"id": self.id, "name": self.name, "type": self.type.name,
                "config": self.config, "description": self.description,
                "created_at": self.created_at}

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> bool:
        if self.type is not WEB_HOOK:
            self.alive = True
            return True
        await self.stop_sink()
        headers = {str(k): str(v) for k, v in (self.config.get("headers") or {}).items()}
        # The sink reports down / up through these callbacks; the alarm is ours.
        sink = HttpSink(self.id, self.config["url"],
                        method=self.config.get("method") or "POST", headers=headers,
                        alarms=(lambda _id, _desc: self._sink_state(sink, False),
                                lambda _id: self._sink_state(sink, True)),
                        alarm_id=self.alarm_id)
        self.sink = sink
        await sink.start()
        return await self.check()

    def _sink_state(self, sink: HttpSink, up: bool) -> None:
        if sink is self.sink:  # not a stopped one (stopping clears its state)
            self._set_alive(up)

    async def stop(self) -> None:
        await self.stop_sink()
        self.alarms.clear_alarm(self.alarm_id)

    async def stop_sink(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            await sink.stop()

    async def check(self) -> bool:
        """Probe the endpoint now; update `alive` and the alarm."""
        if self.type is not WEB_HOOK:
            return True
        self._set_alive(await probe(self.config["url"]))
        if self.sink is not None:
            self.sink.down = not self.alive  # the next request's outcome changes it
        return self.alive

    def _set_alive(self, alive: bool) -> None:
        """Raising a raised alarm or clearing a clear one changes nothing (Alarms)."""
        self.alive = alive
        if alive:
            self.alarms.clear_alarm(self.alarm_id)
        else:
            self.alarms.raise_alarm(self.alarm_id, f"resource {self.id} is down")


async def probe(url: str) -> bool:
    """Can a TCP connection to the URL's host and port be made (within 3 s)?"""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
    except (TimeoutError, OSError, UnicodeError):  # UnicodeError: a host IDNA refuses
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def make_resource(rid: str, name: str, type_name: str, config: Any, description: str,
                  alarms: Alarms, created_at: int | None = None) -> Resource:
    rtype = RESOURCE_TYPES.get(type_name)
    if rtype is None:
        raise RuleError(f"Resource Type {type_name} Not Found")
    return Resource(rid, name, rtype, check_config(rtype, config), description, alarms,
                    created_at if created_at is not None else time.time_ns())
