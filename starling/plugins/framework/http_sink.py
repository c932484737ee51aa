"""Outgoing HTTP delivery that can never hold up the broker.

`HttpSink` is the one piece that POSTs to a web server on the broker's
behalf: the `emqx_web_hook` plugin and the rule engine's `web_hook`
resource both use it.  EMQ X v3 called the web server from the hook itself,
so a slow or dead endpoint stalled connects and message delivery
(emqx-web-hook#207, emqx/emqx#5121).  Here a hook only calls `submit()`,
which puts the body on a bounded queue and returns at once; a few worker
tasks take bodies off the queue and send them through one `httpx`
connection pool.

- Queue full: the body is dropped and counted (`stats.dropped`), never waited for.
- A request that fails (connection refused, timeout, 5xx) is retried up to
  `max_retries` times with exponential backoff; one that still fails is
  counted in `stats.failed`.  A 4xx is the server's answer, not a failure:
  it is counted as sent (retrying would get the same answer).
- Alarm: when a request has failed all its attempts, the alarm
  ``webhook_down/<name>`` (or `alarm_id`) is raised; the next request that
  gets any answer clears it, and so does `stop()`.  Given a pair of
  callbacks instead of `Alarms`, the owner learns of down / up and raises
  its own alarm (the rule engine's ``resource_down/<id>``).
- Completion: `submit(body, done)` calls ``done(ok)`` exactly once when the
  body's fate is known: ok when the server answered 2xx; not ok for any
  other answer, a request that failed all its attempts, or a body dropped
  (queue full: `submit` returns False and `done` is not called; stopped
  before it went out: ``done(False)``).  The rule engine counts its web hook
  actions' success and failure this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

Body = bytes | str | Mapping[str, Any]
#: Called once with whether the server answered 2xx (see the module docstring).
Done = Callable[[bool], None]


class AlarmTarget(Protocol):
    """What raises and clears alarms: the broker's `Alarms` has this shape."""

    def raise_alarm(self, alarm_id: str, desc: str) -> object: ...

    def clear_alarm(self, alarm_id: str) -> object: ...


#: Or a pair of callbacks: (raise(alarm_id, desc), clear(alarm_id)).
AlarmCallbacks = tuple[Callable[[str, str], object], Callable[[str], object]]


@dataclass(frozen=True, slots=True)
class SinkStats:
    """A snapshot of a sink's counters (`queued` is the current queue length)."""

    queued: int
    sent: int
    failed: int
    retried: int
    dropped: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class HttpSink:
    """A bounded queue of request bodies sent to one URL by a few worker tasks."""

    def __init__(self, name: str, url: str, *, method: str = "POST",
                 headers: Mapping[str, str] | None = None, timeout: float = 5.0,
                 pool_size: int = 8, queue_size: int = 10000, max_retries: int = 3,
                 alarms: AlarmTarget | AlarmCallbacks | None = None,
                 alarm_id: str | None = None, retry_backoff: float = 0.5,
                 max_backoff: float = 10.0, drain_timeout: float = 1.0,
                 counters: MutableMapping[str, int] | None = None,
                 counter_prefix: str = "") -> None:
        """`counters` (e.g. the broker's metrics) also get ``<counter_prefix>sent``,
        ``failed``, ``retried`` and ``dropped`` incremented, so they show in
        /metrics, StatsD and Prometheus."""
        check_url(url)
        if pool_size < 1 or queue_size < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError("pool_size and queue_size must be >= 1, max_retries >= 0, "
                             "timeout > 0")
        self.name = name
        self.url = url
        self.method = method.upper()
        self.headers = {"content-type": "application/json"} | {
            k.lower(): v for k, v in (headers or {}).items()}
        self.timeout = timeout
        self.pool_size = pool_size
        self.queue_size = queue_size
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.drain_timeout = drain_timeout
        self.alarm_id = alarm_id or f"webhook_down/{name}"
        self._raise, self._clear = _alarm_callbacks(alarms)
        self._queue: asyncio.Queue[tuple[Body, Done | None]] = asyncio.Queue(maxsize=queue_size)
        self._client: httpx.AsyncClient | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self._counts = {"sent": 0, "failed": 0, "retried": 0, "dropped": 0}
        self._external = counters
        self._names = {k: f"{counter_prefix}{k}" for k in self._counts}
        #: True while the alarm is raised (the endpoint failed and has not answered since).
        self.down = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        self._closed = False
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.pool_size,
                                max_keepalive_connections=self.pool_size),
            headers=self.headers, follow_redirects=False)
        self._workers = [asyncio.create_task(self._work(), name=f"http-sink-{self.name}-{i}")
                         for i in range(self.pool_size)]

    async def stop(self) -> None:
        """Give queued bodies up to `drain_timeout` seconds to go out, then cancel
        what is left (counted as dropped) and clear the alarm."""
        self._closed = True
        if self._workers and not self._queue.empty():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self.drain_timeout)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        while not self._queue.empty():
            _, done = self._queue.get_nowait()
            self._queue.task_done()
            self._count("dropped")
            _finished(self.name, done, False)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._set_down(False, "")

    # -- the hook side -------------------------------------------------------------------
    def submit(self, body: Body, done: Done | None = None) -> bool:
        """Queue a body (bytes as they are, str as UTF-8, a mapping as JSON; it is
        encoded by the sender, so a dropped body costs nothing).  Never blocks:
        False, and one more drop counted, when the queue is full or the sink is
        stopped (`done` is then never called).  A mapping must not be changed after
        it is submitted."""
        if self._closed:
            self._count("dropped")
            return False
        try:
            self._queue.put_nowait((body, done))
        except asyncio.QueueFull:
            self._count("dropped")
            return False
        return True

    @property
    def stats(self) -> SinkStats:
        return SinkStats(queued=self._queue.qsize(), **self._counts)

    def _count(self, what: str) -> None:
        self._counts[what] += 1
        if self._external is not None:
            name = self._names[what]
            self._external[name] = self._external.get(name, 0) + 1

    # -- the worker side -----------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            body, done = await self._queue.get()
            ok = False
            try:
                ok = await self._deliver(encode(body))
            except asyncio.CancelledError:
                self._count("dropped")
                raise
            except Exception:  # a worker must survive anything one request does
                log.exception("web hook %s: delivery failed unexpectedly", self.name)
                self._count("failed")
            finally:
                self._queue.task_done()
                _finished(self.name, done, ok)

    async def _deliver(self, data: bytes) -> bool:
        """Send with retries; True when the server answered 2xx."""
        assert self._client is not None
        attempt = 0
        while True:
            answer = await self._attempt(data)
            if isinstance(answer, int):
                self._count("sent")
                return 200 <= answer < 300
            if attempt >= self.max_retries:
                self._count("failed")
                self._set_down(True, answer)
                return False
            attempt += 1
            self._count("retried")
            await asyncio.sleep(min(self.max_backoff, self.retry_backoff * 2 ** (attempt - 1)))

    async def _attempt(self, data: bytes) -> int | str:
        """One request: the status when the server answered (2xx-4xx), else what went
        wrong."""
        assert self._client is not None
        try:
            response = await self._client.request(self.method, self.url, content=data)
        except httpx.TimeoutException:
            return f"timeout after {self.timeout}s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if response.status_code >= 500:
            return f"HTTP {response.status_code}"
        self._set_down(False, "")  # it answers
        return response.status_code

    def _set_down(self, down: bool, problem: str) -> None:
        if down == self.down:
            return
        self.down = down
        if down:
            log.warning("web hook %s: %s unreachable (%s)", self.name, _safe_url(self.url),
                        problem)
            if self._raise is not None:
                self._raise(self.alarm_id, f"{_safe_url(self.url)}: {problem}")
        else:
            log.info("web hook %s: %s answers again", self.name, _safe_url(self.url))
            if self._clear is not None:
                self._clear(self.alarm_id)


def _finished(name: str, done: Done | None, ok: bool) -> None:
    if done is not None:
        try:
            done(ok)
        except Exception:
            log.exception("web hook %s: completion callback failed", name)


def encode(body: Body) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host, else ValueError."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not an http(s) URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


def _alarm_callbacks(alarms: AlarmTarget | AlarmCallbacks | None) -> tuple[
        Callable[[str, str], object] | None, Callable[[str], object] | None]:
    if alarms is None:
        return None, None
    if isinstance(alarms, tuple):
        return alarms[0], alarms[1]
    return alarms.raise_alarm, alarms.clear_alarm


def _safe_url(url: str) -> str:
    """The URL without any user:password part (never logged, never in an alarm)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url
