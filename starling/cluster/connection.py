"""The node's one connection to NATS, and what the rest of the cluster code
needs from it: publish, subscribe, request, JetStream key-value buckets, and
being told when the link goes down and comes back.

nats-py reconnects by itself (forever here) and replays subscriptions; what it
cannot replay (key-value watchers, whose consumers a restarted server has
forgotten; what other nodes said while we were away) is the job of the
`on_up` callback.  This is the only module that connects to NATS; the
cluster package is imported only when `cluster.discovery = nats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from .errors import ClusterUnavailable
from .settings import NatsSettings

log = logging.getLogger(__name__)

#: Seconds between reconnect attempts to one server.
RECONNECT_WAIT = 1
#: Seconds between PINGs; two unanswered and the link is declared down.
PING_INTERVAL = 5
#: Seconds between two log lines about the same kind of NATS error.
ERROR_LOG_INTERVAL = 10.0


def _tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.cacertfile or None)
    if settings.certfile:
        context.load_cert_chain(settings.certfile, settings.keyfile)
    return context


class NatsConnection:
    def __init__(self, settings: NatsSettings, client_name: str,
                 on_down: Callable[[], None], on_up: Callable[[], Awaitable[None]],
                 on_slow_consumer: Callable[[], None]) -> None:
        self.settings = settings
        self.client_name = client_name
        self._on_down = on_down
        self._on_up = on_up
        self._on_slow = on_slow_consumer
        self.nc = Client()
        self._js: JetStreamContext | None = None
        self._error_logged: dict[str, float] = {}

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            self._js = self.nc.jetstream(timeout=5.0)
        return self._js

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload) if self.nc.is_connected else 1024 * 1024

    async def connect(self) -> None:
        """Connect, or raise ClusterUnavailable after `connect_timeout`."""
        s = self.settings
        try:
            tls = _tls_context(s)
        except (OSError, ssl.SSLError) as exc:
            raise ClusterUnavailable(f"cluster.nats.tls: {exc}") from None
        try:
            await asyncio.wait_for(self.nc.connect(
                list(s.servers), name=self.client_name, allow_reconnect=True,
                max_reconnect_attempts=-1, reconnect_time_wait=RECONNECT_WAIT,
                connect_timeout=max(1, min(2, int(s.connect_timeout))),
                ping_interval=PING_INTERVAL, max_outstanding_pings=2,
                disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                error_cb=self._error, user=s.user or None, password=s.password or None,
                token=s.token or None, user_credentials=s.credentials or None, tls=tls),
                s.connect_timeout)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await self.nc.close()
            why = str(exc) or type(exc).__name__
            raise ClusterUnavailable(
                f"cannot reach NATS at {', '.join(s.servers)} within "
                f"{s.connect_timeout:g}s (cluster.nats.servers): {why}") from None
        try:
            await self.js.account_info()
        except nats.errors.Error as exc:
            await self.nc.close()
            raise ClusterUnavailable(
                f"NATS at {', '.join(s.servers)} has no JetStream (start nats-server "
                f"with -js): {exc}") from None

    async def synced(self, timeout: int = 10) -> None:
        """Return once the server has processed every command sent so far (a SUB
        just made: another connection's publish now reaches it).  nats-py's
        `flush()` alone does not promise that: it writes its PING straight to the
        socket, ahead of commands still in its buffer (2.16, `_send_ping`), and
        measured on one nats-server 2.9.10, a publish right after another
        connection's subscribe + flush was lost 3 to 6 times in 100.  The first
        flush pushes the buffer out; the second's PONG comes after it."""
        await self.nc.flush(timeout)
        await self.nc.flush(timeout)

    async def close(self) -> None:
        if not self.nc.is_closed:
            with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
                await asyncio.wait_for(self.nc.drain(), 2.0)
            await self.nc.close()

    async def bucket(self, name: str, history: int = 1) -> KeyValue:
        """The key-value bucket `name` (created on first use, file storage, with
        `cluster.nats.replicas`); ClusterUnavailable if it exists with other settings."""
        try:
            return await self.js.create_key_value(KeyValueConfig(
                bucket=name, history=history, storage=StorageType.FILE,
                replicas=self.settings.replicas))
        except nats.js.errors.APIError as exc:
            raise ClusterUnavailable(
                f"JetStream refused the bucket {name}: {exc.description or exc} (it exists "
                f"with other settings, e.g. another cluster.nats.replicas)") from None

    # -- callbacks from nats-py ------------------------------------------------------
    async def _disconnected(self) -> None:
        if not self.nc.is_closed:
            self._on_down()

    async def _reconnected(self) -> None:
        log.info("cluster: NATS connection back (%s)", self.nc.connected_url.netloc
                 if self.nc.connected_url else "?")
        await self._on_up()

    async def _error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self._on_slow()
        kind = type(exc).__name__
        now = time.monotonic()
        if now - self._error_logged.get(kind, -ERROR_LOG_INTERVAL) >= ERROR_LOG_INTERVAL:
            self._error_logged[kind] = now
            log.warning("cluster: NATS: %s", str(exc) or kind)
