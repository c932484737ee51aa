"""Queries about one node as a whole: node and broker facts, stats, metrics,
listeners (and stopping/starting one), alarms, bans.

Stat and metric names leave here in the broker's spelling (the seed's); the
facade renames them for the node that serves the request
(`management.metric_names`).
"""

from __future__ import annotations

from dataclasses import dataclass

from starling.broker import format_uptime

from . import fields, system
from .local import LocalNode
from .paging import render_rows
from .query import JSON, NoParams, Params, QueryError, query


@dataclass(frozen=True, slots=True)
class ListenerName(Params):
    listener: str


@dataclass(frozen=True, slots=True)
class ListenerSwitch(Params):
    listener: str
    running: bool


@dataclass(frozen=True, slots=True)
class AlarmKind(Params):
    history: bool = False


@dataclass(frozen=True, slots=True)
class BanSlice(Params):
    offset: int = 0
    limit: int = 10000


@query("node.info", NoParams)
async def node_info(node: LocalNode, _: NoParams) -> JSON:
    """The node form of /nodes/:node (memory in bytes)."""
    load1, load5, load15 = system.load_averages()
    fds = system.max_fds()
    connections = node.reads.connection_count()
    return {
        "name": node.name,
        "node_status": "Running",
        "otp_release": system.runtime_release(),
        "version": node.version,
        "uptime": format_uptime(node.broker.uptime()),
        "load1": load1,
        "load5": load5,
        "load15": load15,
        "memory_total": system.machine_memory(),
        "memory_used": system.process_rss(),
        "process_available": fds,
        "process_used": connections + system.task_count(),
        "max_fds": fds,
        "connections": connections,
    }


@query("broker.info", NoParams)
async def broker_info(node: LocalNode, _: NoParams) -> JSON:
    return {
        "datetime": fields.now_string(),
        "node_status": "Running",
        "otp_release": system.runtime_release(),
        "sysdescr": node.broker.options.sysdescr,
        "uptime": format_uptime(node.broker.uptime()),
        "version": node.version,
    }


@query("stats.get", NoParams)
async def stats(node: LocalNode, _: NoParams) -> JSON:
    """Every stat as `<name>/count` and `<name>/max`."""
    return node.broker.stats.sample()


@query("metrics.get", NoParams)
async def metrics(node: LocalNode, _: NoParams) -> JSON:
    return node.broker.metrics()


@query("listeners.list", NoParams)
async def listeners(node: LocalNode, _: NoParams) -> JSON:
    return [fields.listener(i) for i in node.listeners()]


@query("listeners.details", NoParams)
async def listener_details(node: LocalNode, _: NoParams) -> JSON:
    return [fields.listener_detail(i) for i in node.listeners()]


@query("listeners.lookup", ListenerName)
async def listener(node: LocalNode, p: ListenerName) -> JSON:
    """The listener with its name and state; None if there is none of that name."""
    for info in node.listeners():
        if info.name == p.listener:
            return fields.listener_detail(info)
    return None


@query("listeners.switch", ListenerSwitch)
async def switch_listener(node: LocalNode, p: ListenerSwitch) -> JSON:
    """Stop or start an MQTT listener: "ok", or QueryError not_found /
    already_started / not_started / bind_failed."""
    control = node.listener_control
    if control is None or not control.listener_known(p.listener):
        raise QueryError("not_found", f"listener {p.listener} not found")
    if control.listener_running(p.listener) == p.running:
        raise QueryError("already_started" if p.running else "not_started")
    if p.running:
        try:
            await control.start_listener(p.listener)
        except OSError as exc:  # its port taken meanwhile: the bind error names it
            raise QueryError("bind_failed", str(exc)) from None
    else:
        await control.stop_listener(p.listener)
    return "ok"


@query("alarms.list", AlarmKind)
async def alarms(node: LocalNode, p: AlarmKind) -> JSON:
    table = node.broker.alarms
    if p.history:
        return [fields.alarm_history(a) for a in table.history()]
    return [fields.alarm_present(a) for a in table.present()]


@query("banned.slice", BanSlice)
async def banned(node: LocalNode, p: BanSlice) -> JSON:
    bans = node.broker.banned.all()
    return {"count": len(bans),
            "rows": await render_rows(bans[p.offset:p.offset + p.limit], fields.ban)}
