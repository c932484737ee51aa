"""emqx_recon: runtime inspection of a running node, for operators.

EMQ X's recon plugin exposes Erlang's `recon` library (process memory, top
processes by reductions or message queue length) on the console.  Starling's
runs in Python and shows the nearest honest equivalents (docs/feature-plugins.md,
"Recon"), over ``/api/v3/nodes/:node/recon`` and ``starling ctl recon``:

- event-loop lag: while loaded, a sampler task sleeps `recon.lag_interval`
  and records how late it woke up (one timer per interval: nothing per message);
- asyncio tasks, counted and grouped by coroutine name;
- process memory: RSS, garbage-collector counts and, when `recon.tracemalloc`
  is on, the top allocation sites;
- per-connection memory *estimates* (`Broker.connection_memory`): `sys.getsizeof`
  summed over the objects a connection owns (channel, transport buffers, session
  with its subscriptions, in-flight window and queue), computed only when asked
  for, yielding to the event loop between connections;
- top talkers: connections ranked by messages or bytes in or out.

Everything is read while the plugin is loaded and computed on request; the only
standing cost is the lag sampler (and tracemalloc, when switched on).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import threading
import time
import tracemalloc
from collections import Counter, deque
from typing import Any

from starling.broker import Broker, ConnectionMemory, ConnectionSnapshot
from starling.config import parse_bool

from .. import ConfigKey, Plugin, cancel, positive_duration

log = logging.getLogger(__name__)

#: How many lag samples the window keeps (the mean and max are over these).
LAG_WINDOW = 60
#: The counters a connection can be ranked by (ConnectionSnapshot fields).
TALKER_KEYS = ("recv_msg", "send_msg", "recv_oct", "send_oct", "recv_pkt", "send_pkt",
               "send_pend")
#: Connections measured between two yields to the event loop.
SIZE_BATCH = 200


def connection_memory_view(estimate: ConnectionMemory) -> dict[str, Any]:
    """One connection's memory estimate as the API and `starling ctl recon` show it."""
    return {
        "clientid": estimate.client_id,
        "username": estimate.username,
        "memory": estimate.memory,
        "channel": estimate.client,
        "transport": estimate.transport,
        "send_pend": estimate.send_pend,
        "session": estimate.session,
        "mqueue_len": estimate.mqueue_len,
        "inflight_len": estimate.inflight_len,
        "truncated": estimate.truncated,
    }


def task_name(task: asyncio.Task[Any]) -> str:
    """A task's coroutine, by qualified name (what groups tasks doing the same job)."""
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    module = getattr(getattr(coro, "cr_code", None), "co_filename", "")
    return f"{name} ({os.path.basename(module)})" if module else str(name)


def open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


class LagSampler:
    """Event-loop lag: how much later than asked a sleep of `interval` wakes up.

    A loop busy with one long callback (a blocking call, a slow plugin) shows up
    here as lag; a healthy loop stays near 0 ms."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=LAG_WINDOW)
        self.max_ever = 0.0
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="recon-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - started - self.interval)
            self.samples.append(lag)
            self.count += 1
            self.max_ever = max(self.max_ever, lag)

    def view(self) -> dict[str, Any]:
        samples = list(self.samples)
        ms = 1000.0
        return {
            "interval_ms": round(self.interval * ms, 3),
            "samples": self.count,
            "window": len(samples),
            "lag_ms": round(samples[-1] * ms, 3) if samples else None,
            "lag_avg_ms": round(sum(samples) / len(samples) * ms, 3) if samples else None,
            "lag_max_ms": round(max(samples) * ms, 3) if samples else None,
            "lag_max_since_load_ms": round(self.max_ever * ms, 3),
        }


class ReconPlugin(Plugin):
    SCHEMA = (
        ConfigKey("recon.lag_interval", "1s", "How often the event-loop lag is sampled "
                  "(a duration: 500ms, 1s, ...).", positive_duration),
        ConfigKey("recon.tracemalloc", "off", "Trace Python allocations while loaded (on/off); "
                  "shows the top allocation sites, costs CPU and memory.", parse_bool),
        ConfigKey("recon.top_limit", "10", "Rows shown by default in the memory, tasks and "
                  "top-talkers views.", lambda v: parse_limit(v, "recon.top_limit")),
    )

    def __init__(self, context: Any, settings: Any) -> None:
        super().__init__(context, settings)
        self.sampler = LagSampler(self.settings["recon.lag_interval"])
        self.loaded_at = 0.0
        self._started_tracemalloc = False

    @property
    def broker(self) -> Broker:
        return self.context.broker

    async def load(self) -> None:
        self.loaded_at = time.time()
        self.sampler.start()
        if self.settings["recon.tracemalloc"] and not tracemalloc.is_tracing():
            tracemalloc.start(1)
            self._started_tracemalloc = True

    async def unload(self) -> None:
        await self.sampler.stop()
        if self._started_tracemalloc:
            tracemalloc.stop()
            self._started_tracemalloc = False

    @property
    def default_limit(self) -> int:
        limit: int = self.settings["recon.top_limit"]
        return limit

    # -- views (the API and `starling ctl recon` show these) -------------------------------
    def summary(self) -> dict[str, Any]:
        tasks = self.tasks(5)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "node": self.context.node_name,
            "loaded_at": self.loaded_at,
            "loop": self.sampler.view(),
            "tasks": {"total": tasks["total"], "top": tasks["groups"]},
            "memory": self.process_memory(),
            "connections": self.broker.connection_count(),
            "sessions": len(self.broker.sessions),
            "threads": threading.active_count(),
            "open_fds": open_fds(),
            "cpu_user_s": round(usage.ru_utime, 3),
            "cpu_system_s": round(usage.ru_stime, 3),
            "hook_errors": self.broker.hooks.errors,
        }

    def tasks(self, limit: int | None = None) -> dict[str, Any]:
        tasks = asyncio.all_tasks()
        groups = Counter(task_name(t) for t in tasks)
        rows = [{"coroutine": name, "count": n}
                for name, n in groups.most_common(limit or self.default_limit)]
        return {"total": len(tasks), "distinct": len(groups), "groups": rows}

    def process_memory(self) -> dict[str, Any]:
        # RSS is added by the API (starling.api.system reads it for /nodes too).
        info: dict[str, Any] = {
            "gc_counts": list(gc.get_count()),
            "gc_collections": [s.get("collections", 0) for s in gc.get_stats()],
            "tracemalloc": None,
        }
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            info["tracemalloc"] = {"current": current, "peak": peak}
        return info

    async def memory(self, limit: int | None = None, client_id: str | None = None,
                     ) -> dict[str, Any]:
        """Process memory and the connections estimated to hold the most."""
        broker = self.broker
        client_ids = [client_id] if client_id is not None else broker.client_ids()
        rows = []
        for i, one in enumerate(client_ids):
            if i and i % SIZE_BATCH == 0:
                await asyncio.sleep(0)  # a long walk must not stall the loop
            estimate = broker.connection_memory(one)
            if estimate is not None:
                rows.append(connection_memory_view(estimate))
        rows.sort(key=lambda r: r["memory"], reverse=True)
        out = self.process_memory()
        out["connections"] = len(rows)
        out["connections_estimate"] = sum(r["memory"] for r in rows)
        out["top"] = rows[: limit or self.default_limit]
        if tracemalloc.is_tracing():
            stats = tracemalloc.take_snapshot().statistics("lineno")
            out["tracemalloc"]["top"] = [
                {"site": str(s.traceback), "size": s.size, "count": s.count}
                for s in stats[: limit or self.default_limit]]
        return out

    def top(self, by: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Connections ranked by one counter (`TALKER_KEYS`), highest first, with
        the per-second average since each connected."""
        if by not in TALKER_KEYS:
            raise ValueError(f"'by' must be one of {', '.join(TALKER_KEYS)}")
        now = time.time()
        snaps = self.broker.connections()
        snaps.sort(key=lambda s: getattr(s, by), reverse=True)
        return [talker(s, by, now) for s in snaps[: limit or self.default_limit]]


def talker(snap: ConnectionSnapshot, by: str, now: float) -> dict[str, Any]:
    seconds = max(now - snap.connected_at, 1e-3) if snap.connected_at else None
    row: dict[str, Any] = {"clientid": snap.client_id, "username": snap.username,
                           "peerhost": snap.peerhost, "connected_at": snap.connected_at}
    for key in TALKER_KEYS:
        row[key] = getattr(snap, key)
    row["rate"] = round(getattr(snap, by) / seconds, 3) if seconds else None
    return row


def parse_limit(value: str, what: str = "limit") -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{what} must be an integer from 1 to 10000") from None
    if not 1 <= number <= 10000:
        raise ValueError(f"{what} must be an integer from 1 to 10000")
    return number

