"""Plain records the store reads and writes: no broker types, no I/O.

Times are wall-clock epoch seconds (monotonic clocks do not survive a
restart).  Properties are kept as their MQTT 5.0 wire encoding, so every
property round-trips byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class MessageRecord:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: bytes  #: encoded property block (b"\x00" when none)
    sender: str
    username: str | None
    timestamp: float
    expires_at: float | None  #: wall-clock expiry, MQTT 5.0 Message Expiry


@dataclass(slots=True)
class SubscriptionRecord:
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class SessionMessageRecord:
    """A message held for a session: queued (packet_id None) or in flight."""

    message: MessageRecord
    seq: int
    qos: int
    retain: bool
    packet_id: int | None = None
    released: bool = False
    #: Stored as one row with its body (held by this session alone), not as a
    #: holding of a shared body: the journal writes its changes accordingly.
    single: bool = False


@dataclass(slots=True)
class SessionRecord:
    client_id: str
    username: str | None
    expiry_interval: float
    created_at: float
    disconnected_at: float | None
    subscriptions: list[SubscriptionRecord] = field(default_factory=list)
    messages: list[SessionMessageRecord] = field(default_factory=list)  #: in seq order
    awaiting_rel: list[int] = field(default_factory=list)
    #: The owner's client certificate subject (None: it had none).
    peercert: str | None = None
