"""One reading of everything a node counts, for the exporters (StatsD push,
the Prometheus scrape): the broker's metrics (counters), its stats
(gauges) and a few facts about the process itself.

Names stay the REST API's (``messages/received``, ``connections/count``);
each exporter spells them its own way.  ``messages/retained`` is listed
with the metrics but is a gauge (docs/metrics.md), so it is returned with
the gauges here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from starling.broker import Broker, SystemSampler

#: Metrics that are current values, not counts of events.
GAUGE_METRICS = frozenset({"messages/retained"})

_sampler = SystemSampler()


@dataclass(frozen=True, slots=True)
class NodeReading:
    counters: dict[str, int]
    gauges: dict[str, float]


def read_node(broker: Broker) -> NodeReading:
    """Counters and gauges now (cheap: dict copies and two small /proc reads)."""
    counters: dict[str, int] = {}
    gauges: dict[str, float] = {}
    for name, value in broker.metrics().items():
        (gauges if name in GAUGE_METRICS else counters)[name] = value
    gauges.update(broker.stats.sample())
    gauges.update(process_gauges(broker))
    return NodeReading(counters, gauges)


def process_gauges(broker: Broker) -> dict[str, float]:
    """``node/uptime`` (s), ``node/memory`` (resident bytes), ``node/cpu_time``
    (s of CPU used), ``node/tasks`` (asyncio tasks alive), ``node/alarms``,
    ``node/store_available`` (0 while the store cannot commit)."""
    out: dict[str, float] = {
        "node/uptime": round(broker.uptime(), 3),
        "node/cpu_time": round(time.process_time(), 3),
        "node/alarms": len(broker.alarms.present()),
        "node/store_available": 1 if broker.journal.available else 0,
    }
    rss = _sampler.process_memory()
    if rss is not None:
        out["node/memory"] = rss
    with contextlib.suppress(RuntimeError):  # no running loop: not on the broker's loop
        out["node/tasks"] = len(asyncio.all_tasks())
    return out


async def loop_lag() -> float:
    """Seconds a callback scheduled now waits before the event loop runs it: how
    far behind the loop is at this moment."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    started = loop.time()
    loop.call_soon(done.set_result, None)
    await done
    return max(0.0, loop.time() - started)
