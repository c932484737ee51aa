"""Read-only views of live state for the API, plugins and rules.

Built on demand from clients and sessions, so callers outside the core
never hold a live object they could change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .session import Session


class Connected(Protocol):
    """What a snapshot or a presence event reads of a connected client (a `Client`
    is one; declared here, so hooks and snapshots do not depend on the client
    module)."""

    client_id: str
    username: str | None
    zone: str
    protocol_level: int
    clean_start: bool
    keepalive: int
    connected_at: float | None
    recv_pkt: int
    recv_msg: int
    send_pkt: int
    send_msg: int

    # Read only (properties or class constants of a client).
    @property
    def peername(self) -> tuple[str, int]: ...
    @property
    def peerhost(self) -> str: ...
    @property
    def listener(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def proto_name(self) -> str: ...
    @property
    def is_bridge(self) -> bool: ...
    @property
    def peercert(self) -> str | None: ...

    def io_stats(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class ConnectionSnapshot:
    client_id: str
    username: str | None
    peerhost: str
    peerport: int
    listener: str
    zone: str
    protocol_level: int
    clean_start: bool
    keepalive: int
    connected_at: float
    is_bridge: bool
    peercert: str | None
    recv_oct: int
    recv_cnt: int
    recv_pkt: int
    recv_msg: int
    send_oct: int
    send_cnt: int
    send_pkt: int
    send_msg: int
    send_pend: int
    #: "mqtt", or a gateway's ("mqtt-sn", "stomp", "coap", "lwm2m").
    protocol: str = "mqtt"
    #: As EMQ X's API shows it: "MQTT", "MQIsdp" (3.1), or the gateway's name.
    protocol_name: str = "MQTT"

    @classmethod
    def of(cls, client: Connected) -> ConnectionSnapshot:
        io = client.io_stats()
        host, port = client.peername
        return cls(
            client_id=client.client_id,
            username=client.username,
            peerhost=host,
            peerport=port,
            listener=client.listener,
            zone=client.zone,
            protocol_level=client.protocol_level,
            clean_start=client.clean_start,
            keepalive=client.keepalive,
            connected_at=client.connected_at or 0.0,
            is_bridge=client.is_bridge,
            peercert=client.peercert,
            recv_oct=io["recv_oct"],
            recv_cnt=io["recv_cnt"],
            recv_pkt=client.recv_pkt,
            recv_msg=client.recv_msg,
            send_oct=io["send_oct"],
            send_cnt=io["send_cnt"],
            send_pkt=client.send_pkt,
            send_msg=client.send_msg,
            send_pend=io["send_pend"],
            protocol=client.protocol,
            protocol_name=client.proto_name,
        )


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    client_id: str
    username: str | None
    connected: bool
    clean_start: bool
    expiry_interval: float
    created_at: float
    subscriptions_count: int
    max_subscriptions: int
    inflight_len: int
    max_inflight: int
    mqueue_len: int
    max_mqueue: int
    mqueue_dropped: int
    awaiting_rel_len: int
    max_awaiting_rel: int
    deliver_msg: int
    enqueue_msg: int

    @classmethod
    def of(cls, session: Session) -> SessionSnapshot:
        options = session.options
        return cls(
            client_id=session.client_id,
            username=session.username,
            connected=session.outlet is not None,
            clean_start=session.clean_start,
            expiry_interval=session.expiry_interval,
            created_at=session.created_at,
            subscriptions_count=len(session.subscriptions),
            max_subscriptions=options.max_subscriptions,
            inflight_len=len(session.inflight),
            max_inflight=session.max_inflight,
            mqueue_len=len(session.mqueue),
            max_mqueue=options.max_mqueue_len,
            mqueue_dropped=session.mqueue_dropped,
            awaiting_rel_len=len(session.awaiting_rel),
            max_awaiting_rel=options.max_awaiting_rel,
            deliver_msg=session.deliver_msg,
            enqueue_msg=session.enqueue_msg,
        )


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    client_id: str
    topic: str
    qos: int
