"""EMQ X v3 field names: the only place that knows them.

Snapshots and records from the broker, the plugin registry and the rule engine
go in; dicts shaped like the seed document's examples come out (JSON-ready, so a
remote node can send them as they are).  Fields that only mean something on the
Erlang VM are given their nearest honest Python meaning (docs/api.md,
"Erlang-only fields").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starling.broker import (
    Alarm,
    Ban,
    ConnectionSnapshot,
    SessionSnapshot,
    SubscriptionSnapshot,
    format_datetime,
)

if TYPE_CHECKING:
    from starling.plugins import PluginEntry
    from starling.rules import (
        ActionSpec,
        BoundAction,
        EventInfo,
        Resource,
        ResourceType,
        Rule,
        RuleMetrics,
    )

Row = dict[str, Any]

UNDEFINED = "undefined"  # how EMQ X renders a missing value (facts §1.2)
#: EMQ X's status of a node that does not answer (emqx_mgmt:list_nodes).
STOPPED = "Stopped"


def local_time(epoch: float | None) -> str:
    return format_datetime(epoch) if epoch else UNDEFINED


def now_string() -> str:
    return format_datetime(time.time())


# -- clients -------------------------------------------------------------------------------

def connection(c: ConnectionSnapshot, node: str) -> Row:
    return {
        "client_id": c.client_id,
        "username": c.username if c.username is not None else UNDEFINED,
        "node": node,
        "ipaddress": c.peerhost,
        "port": c.peerport,
        "zone": c.zone,
        "conn_mod": ("emqx_ws_connection" if c.listener.startswith(("mqtt:ws:", "mqtt:wss:"))
                     else "emqx_connection"),
        "connected_at": local_time(c.connected_at),
        "clean_start": c.clean_start,
        "keepalive": c.keepalive,
        "proto_name": c.protocol_name,
        "proto_ver": c.protocol_level,
        "is_bridge": c.is_bridge,
        "peercert": c.peercert if c.peercert is not None else "nossl",
        "recv_oct": c.recv_oct,
        "recv_cnt": c.recv_cnt,
        "recv_pkt": c.recv_pkt,
        "recv_msg": c.recv_msg,
        "send_oct": c.send_oct,
        "send_cnt": c.send_cnt,
        "send_pkt": c.send_pkt,
        "send_msg": c.send_msg,
        "send_pend": c.send_pend,
        # Erlang-only: bytes waiting to be written; packets handled; nothing queued.
        "heap_size": c.send_pend,
        "reductions": c.recv_pkt + c.send_pkt,
        "mailbox_len": 0,
    }


def session(s: SessionSnapshot, node: str) -> Row:
    return {
        "client_id": s.client_id,
        "username": s.username if s.username is not None else UNDEFINED,
        "node": node,
        "binding": "local",
        "clean_start": s.clean_start,
        "expiry_interval": int(s.expiry_interval),
        "created_at": local_time(s.created_at),
        "subscriptions_count": s.subscriptions_count,
        "max_subscriptions": s.max_subscriptions,
        "inflight_len": s.inflight_len,
        "max_inflight": s.max_inflight,
        "mqueue_len": s.mqueue_len,
        "max_mqueue": s.max_mqueue,
        "mqueue_dropped": s.mqueue_dropped,
        "awaiting_rel_len": s.awaiting_rel_len,
        "max_awaiting_rel": s.max_awaiting_rel,
        "deliver_msg": s.deliver_msg,
        "enqueue_msg": s.enqueue_msg,
        # Erlang-only: messages held for the client; messages handled; nothing queued.
        "heap_size": s.inflight_len + s.mqueue_len,
        "reductions": s.deliver_msg + s.enqueue_msg,
        "mailbox_len": 0,
    }


def subscription(s: SubscriptionSnapshot, node: str) -> Row:
    return {"node": node, "client_id": s.client_id, "topic": s.topic, "qos": s.qos}


def route(topic: str, node: str) -> Row:
    return {"topic": topic, "node": node}


# -- the node --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ListenerInfo:
    """One listener as the node describes it (MQTT and HTTP alike)."""

    protocol: str  #: "mqtt:tcp", "http:management", ...
    name: str  #: "mqtt:tcp:default"
    host: str
    port: int
    acceptors: int
    max_conns: int
    current_conns: int
    shutdown_count: dict[str, int]
    running: bool = True
    path: str = ""  #: the WebSocket endpoint's HTTP path (mqtt:ws / mqtt:wss only)


def listener(info: ListenerInfo) -> Row:
    return {
        "protocol": info.protocol,
        "listen_on": f"{info.host}:{info.port}",
        "acceptors": info.acceptors,
        "max_conns": info.max_conns,
        "current_conns": info.current_conns,
        # EMQ X renders an empty reason table as [] (facts §5.6).
        "shutdown_count": dict(info.shutdown_count) or [],
    }


def listener_detail(info: ListenerInfo) -> Row:
    """Starling's own lookup: the listener object plus its name, whether it runs and
    (WebSocket) its path: the dashboard's Listeners page and MQTT tool need them."""
    row = {**listener(info), "name": info.name, "running": info.running}
    if info.path:
        row["path"] = info.path
    return row


def alarm_present(alarm: Alarm) -> Row:
    return {"id": alarm.id, "desc": alarm.desc}


def alarm_history(alarm: Alarm) -> Row:
    return {"id": alarm.id, "desc": alarm.desc, "clear_at": local_time(alarm.cleared_at)}


def ban(b: Ban) -> Row:
    """EMQ X renders a field that was not given as "undefined" (also `until` of a ban
    that never expires)."""
    until: Any = UNDEFINED
    if b.until is not None:
        until = int(b.until) if float(b.until).is_integer() else b.until
    return {
        "who": b.who,
        "as": b.kind,
        "reason": b.reason if b.reason is not None else UNDEFINED,
        "desc": b.desc if b.desc is not None else UNDEFINED,
        "by": b.by if b.by is not None else UNDEFINED,
        "until": until,
    }


def unreachable(node: str, why: str) -> Row:
    """A node of a cluster-wide list that did not answer: EMQ X's stopped-node marker
    plus the reason."""
    return {"node": node, "node_status": STOPPED, "error": why}


# -- plugins ---------------------------------------------------------------------------------

def plugin(entry: PluginEntry) -> Row:
    """The seed's four fields plus v3.2's `type`."""
    return {"name": entry.name, "version": entry.version,
            "description": entry.info.description, "active": entry.active,
            "type": entry.info.type}


# -- the rule engine -------------------------------------------------------------------------

def rule(r: Rule, node: str) -> Row:
    """The seed's rule object, plus per-node metrics (rule and actions)."""
    return {"id": r.id, "name": r.name, "for": r.for_, "rawsql": r.rawsql,
            "actions": [bound_action(a, node) for a in r.actions], "enabled": r.enabled,
            "description": r.description, "metrics": [rule_metrics(r.metrics, node)]}


def bound_action(a: BoundAction, node: str) -> Row:
    return {"name": a.name, "params": a.params,
            "metrics": [{"node": node, "success": a.success, "failed": a.failed}]}


def rule_metrics(m: RuleMetrics, node: str) -> Row:
    return {"node": node, "matched": m.matched, "passed": m.passed, "nomatch": m.nomatch,
            "failed": m.failed, "speed": m.speed, "speed_max": m.speed_max,
            "speed_last5m": m.speed_last5m}


def action(spec: ActionSpec) -> Row:
    return {"name": spec.name, "app": spec.app, "for": spec.for_, "type": spec.type,
            "params": {k: dict(v) for k, v in spec.params.items()},
            "description": spec.description}


def resource(r: Resource) -> Row:
    """The seed's resource object."""
    return {"id": r.id, "name": r.name, "type": r.type.name, "config": r.config,
            "attrs": UNDEFINED, "description": r.description}


def resource_type(t: ResourceType) -> Row:
    return {"name": t.name, "provider": t.provider,
            "params": {k: dict(v) for k, v in t.params.items()},
            "description": t.description}


def rule_event(e: EventInfo) -> Row:
    """One event as `GET /rule_events` shows it."""
    return {"event": e.name,
            "title": {"en": e.title, "zh": e.title},
            "description": {"en": e.description, "zh": e.description},
            "columns": list(e.columns),
            "test_columns": dict(e.test_columns),
            "sql_example": f'SELECT * FROM "{e.name}"'}
