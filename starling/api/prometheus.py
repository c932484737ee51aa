"""``GET /api/v3/prometheus/stats``: the node in Prometheus' text format.

Beyond EMQ X v3 (EMQX 5 serves ``/api/v5/prometheus/stats``): a scrape gets

- every metric as a counter, ``emqx_`` + its name with ``/`` as ``_``
  (``messages/received`` → ``emqx_messages_received``, sample
  ``emqx_messages_received_total``); ``messages/retained`` is a gauge; with
  ``management.metric_names = dot`` the name is EMQ X 3.2's
  (``packets/connect`` → ``emqx_packets_connect_received``, as EMQX 5 calls it);
- every stat as a gauge (``connections/count`` → ``emqx_connections_count``);
- node facts: ``emqx_node_info{node,version}``, ``emqx_uptime_seconds``,
  ``emqx_vm_loop_lag_seconds``, ``emqx_vm_tasks``, ``emqx_alarms_present``,
  and prometheus_client's ``process_*`` (memory, CPU, open files) and
  ``python_*`` collectors.

It lives outside the v3 route table (whose listing is EMQ X's and whose
answers are JSON envelopes); `ManagementApp` serves it as a raw route and
asks for credentials only when ``prometheus.auth`` is true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from starling.mgmt import metric_name
from starling.plugins import NodeReading, loop_lag, read_node

from .app import RawRoute
from .context import ApiContext

PATH = "/api/v3/prometheus/stats"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Node gauges under the names Prometheus users expect (the rest: ``emqx_`` + name).
NODE_NAMES = {
    "node/uptime": ("emqx_uptime_seconds", "Seconds since the node started."),
    "node/tasks": ("emqx_vm_tasks", "asyncio tasks alive (EMQ X: Erlang processes)."),
    "node/alarms": ("emqx_alarms_present", "Alarms raised now."),
    "node/store_available": ("emqx_store_available",
                             "1 while the store commits, 0 while it cannot (disk full, I/O "
                             "error): acknowledgements of durable messages wait meanwhile."),
}
#: Node gauges prometheus_client's process collector already exposes.
SKIPPED = frozenset({"node/memory", "node/cpu_time"})

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def prom_name(name: str) -> str:
    return "emqx_" + _UNSAFE.sub("_", name)


class _NodeCollector(Collector):
    def __init__(self, ctx: ApiContext, reading: NodeReading, lag: float) -> None:
        self.ctx = ctx
        self.reading = reading
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("emqx_node", "The node answering this scrape.")
        info.add_metric([], {"node": self.ctx.node_name, "version": self.ctx.version})
        yield info
        style = self.ctx.mgmt.metric_names
        for name, value in sorted(self.reading.counters.items()):
            shown = metric_name(name, style)
            yield CounterMetricFamily(prom_name(shown), f"EMQ X metric {shown}", value=value)
        for name, number in sorted(self.reading.gauges.items()):
            if name in SKIPPED:
                continue
            metric, doc = NODE_NAMES.get(name, (prom_name(name), f"EMQ X stat {name}"))
            yield GaugeMetricFamily(metric, doc, value=number)
        yield GaugeMetricFamily("emqx_vm_loop_lag_seconds",
                                "How long a callback waited for the event loop at scrape time.",
                                value=self.lag)


_PROCESS: tuple[Collector, ...] = (ProcessCollector(registry=None),
                                   PlatformCollector(registry=None),
                                   GCCollector(registry=CollectorRegistry()))


async def exposition(ctx: ApiContext) -> bytes:
    """The text a scrape gets."""
    lag = await loop_lag()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(ctx, read_node(ctx.broker), lag))
    for collector in _PROCESS:
        registry.register(collector)
    return generate_latest(registry)


def prometheus_routes(ctx: ApiContext, public: Callable[[], bool]) -> dict[str, RawRoute]:
    """The scrape endpoint for `ManagementApp`; `public()` is read at each request
    (true: no credentials asked)."""
    async def handler() -> tuple[bytes, str]:
        return await exposition(ctx), CONTENT_TYPE
    return {PATH: RawRoute(handler, public)}
