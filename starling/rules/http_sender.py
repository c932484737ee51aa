"""The HTTP sender behind `web_hook` resources: a bounded queue drained by a
few workers sharing one httpx connection pool.

`submit()` never waits: it queues the body (False when the queue is full, so
the caller counts a failure) and the workers send it, retrying connection
errors with backoff.  Each submitted body gets exactly one `done(ok)` call
once its fate is known (2xx = ok); `on_state(up)` reports the endpoint going
down (no connection after the retries) and coming back (any answer).  Any
transport error is retried (a duplicate POST beats a lost event).

This is the one place to switch to the shared `starling.plugins.http_sink.HttpSink`
once it lands (same constructor and start/stop/submit/stats shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import httpx

log = logging.getLogger(__name__)

Done = Callable[[bool], None]


class HttpSender:
    def __init__(self, name: str, url: str, *, method: str = "POST",
                 headers: Mapping[str, str] | None = None, timeout: float = 5.0,
                 pool_size: int = 8, queue_size: int = 10000, max_retries: int = 3,
                 on_state: Callable[[bool], None] | None = None) -> None:
        self.name = name
        self.url = url
        self.method = method
        self.headers = {"content-type": "application/json", **(headers or {})}
        self.timeout = timeout
        self.pool_size = pool_size
        self.max_retries = max_retries
        self.on_state = on_state
        self.up = True
        self.stats = {"sent": 0, "succeeded": 0, "failed": 0, "dropped": 0, "retried": 0}
        self._queue: asyncio.Queue[tuple[bytes, Done | None]] = asyncio.Queue(queue_size)
        self._client: httpx.AsyncClient | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        limits = httpx.Limits(max_connections=self.pool_size,
                              max_keepalive_connections=self.pool_size)
        self._client = httpx.AsyncClient(timeout=self.timeout, limits=limits)
        self._workers = [asyncio.create_task(self._work(), name=f"http-sender:{self.name}")
                         for _ in range(self.pool_size)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        while not self._queue.empty():  # what was never sent failed
            _, done = self._queue.get_nowait()
            if done is not None:
                done(False)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def submit(self, body: bytes, done: Done | None = None) -> bool:
        try:
            self._queue.put_nowait((body, done))
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            return False
        return True

    async def _work(self) -> None:
        while True:
            body, done = await self._queue.get()
            ok = await self._send(body)
            self.stats["succeeded" if ok else "failed"] += 1
            if done is not None:
                try:
                    done(ok)
                except Exception:
                    log.exception("web hook %s: completion callback failed", self.name)

    async def _send(self, body: bytes) -> bool:
        assert self._client is not None
        delay = 0.1
        for attempt in range(self.max_retries + 1):
            self.stats["sent"] += 1
            try:
                resp = await self._client.request(self.method, self.url, content=body,
                                                  headers=self.headers)
            except httpx.HTTPError as exc:
                if attempt < self.max_retries:
                    self.stats["retried"] += 1
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                # Not the URL: it may carry credentials.
                log.warning("web hook %s: %s failed: %s", self.name, self.method,
                            type(exc).__name__)
                if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    self._state(False)  # nobody answers there (a slow server is not down)
                return False
            self._state(True)
            return 200 <= resp.status_code < 300
        return False  # pragma: no cover - the loop always returns

    def _state(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            if self.on_state is not None:
                self.on_state(up)
