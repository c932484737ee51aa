"""EMQ X v3 field names: the only place that knows them.

Snapshots from the broker go in; dicts shaped like the seed document's
examples come out.  Fields that only mean something on the Erlang VM are
given their nearest honest Python meaning (docs/api.md, "Erlang-only fields").
"""

from __future__ import annotations

import time
from typing import Any

from starling.broker import (
    ConnectionSnapshot,
    SessionSnapshot,
    SubscriptionSnapshot,
    format_datetime,
)

UNDEFINED = "undefined"  # how EMQ X renders a missing value (facts §1.2)


def local_time(epoch: float | None) -> str:
    return format_datetime(epoch) if epoch else UNDEFINED


def connection(c: ConnectionSnapshot, node: str) -> dict[str, Any]:
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


def session(s: SessionSnapshot, node: str) -> dict[str, Any]:
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


def subscription(s: SubscriptionSnapshot, node: str) -> dict[str, Any]:
    return {"node": node, "client_id": s.client_id, "topic": s.topic, "qos": s.qos}


def route(topic: str, node: str) -> dict[str, Any]:
    return {"topic": topic, "node": node}


def now_string() -> str:
    return format_datetime(time.time())
