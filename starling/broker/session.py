"""A client's session: what survives the connection (MQTT §4.1).

Holds subscriptions, the outgoing in-flight window (QoS 1/2 PUBLISHes sent
but not acknowledged, keyed by packet id in send order), the message queue
for what does not fit the window or arrives while offline, and the packet
ids of incoming QoS 2 messages awaiting PUBREL.

Bounds, so a slow, stuck or absent consumer cannot grow memory without limit:
the window holds at most `max_inflight`; the queue at most `max_mqueue_len`
messages and `max_mqueue_bytes` bytes (topic and payload), past which a
message is dropped and counted: the oldest QoS 0 message queued; else the new
message if it is QoS 0; else the oldest (docs/reliability.md).

The session does no I/O: it hands messages to its outlet (`client.Outlet`:
the MQTT channel, a gateway's client), which is None while the client is
offline.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from starling.mqtt import SubscriptionOptions

from . import metrics as m
from .clock import DEFAULT_CLOCK, Clock, Timer
from .message import Message
from .options import BrokerOptions
from .sentinels import NO_ENTRIES, own

if TYPE_CHECKING:
    from .outlet import Outlet


@dataclass(slots=True)
class InflightEntry:
    message: Message
    qos: int
    retain: bool
    #: `time.monotonic()` of the last transmission, for retry_interval.
    sent_at: float
    #: QoS 2 only: PUBREC received and PUBREL sent; waiting for PUBCOMP.
    released: bool = False
    #: The shared subscription this copy is for (for its Subscription Identifier).
    via: str | None = None


QueueEntry = tuple[Message, int, bool, "str | None"]


class _NoQueue(deque[QueueEntry]):
    """The queue every session starts with, shared and always empty.

    An empty deque costs ~600 bytes; most sessions never queue anything, so a
    session gets its own deque only when it first does (`Session.enqueue_raw`).
    """

    def append(self, item: QueueEntry) -> None:
        raise RuntimeError("append to the shared empty queue: use Session.enqueue_raw")


_NO_QUEUE = _NoQueue()
#: How deep a full queue is searched for a QoS 0 message to drop first.
_QOS0_SCAN = 1000




class SessionJournal(Protocol):
    """Where a persistent session records what it holds: the `Journal` is one
    (declared here, so the session does not depend on the journal's module)."""

    def held(self, session: Session, message: Message, qos: int, retain: bool,
             packet_id: int | None) -> None: ...

    def moved(self, session: Session, message: Message, qos: int, retain: bool,
              packet_id: int) -> None: ...

    def released(self, session: Session, message: Message, qos: int, retain: bool,
                 packet_id: int) -> None: ...

    def done(self, session: Session, message: Message) -> None: ...

    def awaiting_added(self, session: Session, packet_id: int) -> None: ...

    def awaiting_removed(self, session: Session, packet_id: int) -> None: ...


class Session:
    __slots__ = (
        "_next_id",
        "acl_wildcards",
        "awaiting_rel",
        "clean_start",
        "client_id",
        "clock",
        "counters",
        "created_at",
        "deliver_msg",
        "disconnected_at",
        "enqueue_msg",
        "expiry_interval",
        "inflight",
        "journal",
        "max_inflight",
        "mqueue",
        "mqueue_bytes",
        "mqueue_dropped",
        "options",
        "outlet",
        "peercert",
        "pending_will",
        "subscription_ids",
        "subscriptions",
        "username",
    )

    def __init__(self, client_id: str, clean_start: bool, expiry_interval: float,
                 options: BrokerOptions, counters: dict[str, int],
                 clock: Clock | None = None) -> None:
        self.client_id = client_id
        #: The broker's clock: send times (retry_interval), message expiry.
        self.clock = clock or DEFAULT_CLOCK
        #: Whose session it is (`Broker.resumable_by`): the user name of the client that
        #: opened or last resumed it, and its client certificate's subject (None: none).
        self.username: str | None = None
        self.peercert: str | None = None
        self.clean_start = clean_start
        #: Seconds the session outlives its connection; 0 = ends with it.
        self.expiry_interval = expiry_interval
        self.options = options
        self.counters = counters
        self.created_at = self.clock.time()
        self.disconnected_at: float | None = None
        # The four maps start as the shared empty one (`sentinels.NO_ENTRIES`); the
        # methods that add to them make the session's own.
        self.subscriptions: dict[str, SubscriptionOptions] = NO_ENTRIES
        #: MQTT 5.0 Subscription Identifiers by topic filter (only filters that have one).
        self.subscription_ids: dict[str, int] = NO_ENTRIES
        self.inflight: dict[int, InflightEntry] = NO_ENTRIES
        self.max_inflight = options.max_inflight or 65535
        #: (message, qos, retain flag, shared subscription it is for or None).
        self.mqueue: deque[QueueEntry] = _NO_QUEUE
        #: Topic and payload bytes of what `mqueue` holds (`max_mqueue_bytes` bounds it).
        self.mqueue_bytes = 0
        self.mqueue_dropped = 0
        #: Incoming QoS 2 packet ids → monotonic time received.
        self.awaiting_rel: dict[int, float] = NO_ENTRIES
        #: Where deliveries go while the client is connected.
        self.outlet: Outlet | None = None
        #: A will waiting out its Will Delay Interval: (message, timer).
        self.pending_will: tuple[Message, Timer] | None = None
        #: Set while the session is persistent and the store keeps data.
        self.journal: SessionJournal | None = None
        self.deliver_msg = 0
        self.enqueue_msg = 0
        self._next_id = 0
        #: Subscriptions with + or # (shared ones included) while `acl_deliver_check`
        #: is on, else 0 (the broker counts them): while there are any, what the
        #: session delivers is ACL-checked.
        self.acl_wildcards = 0

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    # -- adding to the maps (each made when first needed) -----------------------
    def put_subscription(self, topic_filter: str, opts: SubscriptionOptions) -> bool:
        """Add or replace a subscription; True if it is new."""
        subs = self.subscriptions = own(self.subscriptions)
        is_new = topic_filter not in subs
        subs[topic_filter] = opts
        return is_new

    def set_subscription_id(self, topic_filter: str, sub_id: int) -> None:
        """The Subscription Identifier of a filter; 0 = none."""
        if not sub_id:
            self.subscription_ids.pop(topic_filter, None)
            return
        ids = self.subscription_ids = own(self.subscription_ids)
        ids[topic_filter] = sub_id

    def put_inflight(self, packet_id: int, entry: InflightEntry) -> None:
        inflight = self.inflight = own(self.inflight)
        inflight[packet_id] = entry

    def put_awaiting_rel(self, packet_id: int, at: float) -> None:
        awaiting = self.awaiting_rel = own(self.awaiting_rel)
        awaiting[packet_id] = at

    def reconfigure(self, options: BrokerOptions) -> None:
        """Adopt options changed at runtime (PUT /configs): the new window and queue
        limits apply from now on; a queue over its new limit loses its oldest messages
        (counted as dropped), and a wider window is filled from the queue at once.
        The window never exceeds an MQTT 5.0 client's Receive Maximum [MQTT-3.3.4-7]."""
        self.options = options
        window = options.max_inflight or 65535
        if self.outlet is not None:
            window = min(window, self.outlet.receive_maximum)
        self.max_inflight = window
        while self.mqueue and self._over_limit(0):
            self._drop_queued(1)
        self.drain()

    # -- outgoing messages ---------------------------------------------------
    def deliver(self, message: Message, qos: int, retain: bool, via: str | None = None) -> None:
        """Send now if the client is online and the window allows; else queue.

        `via` names the shared subscription this copy is for, if it is for one."""
        outlet = self.outlet
        if outlet is not None and outlet.writable:
            if self.acl_wildcards and message.topic not in outlet.deliverable:
                allowed = outlet.may_receive(message.topic)  # refused, or not decided yet
                if not allowed:
                    if allowed is None:  # being decided: wait in the queue
                        self._enqueue(message, qos, retain, via)
                    else:
                        self._acl_denied()
                    return
            if not qos:
                outlet.send_publish(message, 0, retain, 0, False, via)
                self.deliver_msg += 1
                return
            if len(self.inflight) < self.max_inflight and not self.mqueue:
                packet_id = self._allocate_id()
                self.put_inflight(packet_id, InflightEntry(message, qos, retain,
                                                           self.clock.monotonic(), via=via))
                if self.journal is not None:
                    self.journal.held(self, message, qos, retain, packet_id)
                if not outlet.send_publish(message, qos, retain, packet_id, False, via):
                    self._forget(packet_id)  # too large for the client: dropped
                self.deliver_msg += 1
                return
        elif outlet is None and not qos and not self.options.mqueue_store_qos0:
            self.counters[m.MESSAGES_DROPPED] += 1
            return
        self._enqueue(message, qos, retain, via)

    def _enqueue(self, message: Message, qos: int, retain: bool, via: str | None) -> None:
        size = len(message.payload) + len(message.topic)
        while self.mqueue and self._over_limit(size):
            if not self._drop_queued(qos):
                self._count_dropped()  # the new QoS 0 message itself
                return
        self.enqueue_raw((message, qos, retain, via))
        self.enqueue_msg += 1
        if self.journal is not None and qos:
            self.journal.held(self, message, qos, retain, None)

    def _over_limit(self, adding: int) -> bool:
        """Would the queue, with one more message of `adding` bytes (0: as it is), be
        over `max_mqueue_len` or `max_mqueue_bytes`?"""
        options = self.options
        limit = options.max_mqueue_len
        if limit and len(self.mqueue) + (1 if adding else 0) > limit:
            return True
        byte_limit = options.max_mqueue_bytes
        return bool(byte_limit) and self.mqueue_bytes + adding > byte_limit

    def _drop_queued(self, arriving_qos: int) -> bool:
        """Make room: drop the oldest QoS 0 message queued (looking at most
        `_QOS0_SCAN` deep), else, unless the arriving message is QoS 0 (it is the
        one to drop: False), the oldest message."""
        queue = self.mqueue
        victim = next((i for i, entry in enumerate(itertools.islice(queue, _QOS0_SCAN))
                       if not entry[1]), None)
        if victim is None:
            if not arriving_qos:
                return False
            victim = 0
        message, qos, _, _ = queue[victim]
        del queue[victim]
        self.mqueue_bytes -= len(message.payload) + len(message.topic)
        self.mqueue_dropped += 1
        self._count_dropped()
        if self.journal is not None and qos:
            self.journal.done(self, message)
        return True

    def _count_dropped(self) -> None:
        self.counters[m.MESSAGES_DROPPED] += 1
        self.counters[m.MESSAGES_DROPPED_QUEUE_FULL] += 1

    def drop_messages(self) -> None:
        """The session has ended: let go of what it still held (nothing is delivered
        from it any more; anything still referring to the session keeps no message)."""
        self.mqueue = _NO_QUEUE
        self.mqueue_bytes = 0
        self.inflight = NO_ENTRIES
        self.awaiting_rel = NO_ENTRIES

    def _acl_denied(self) -> None:
        """A delivery the subscriber's ACL refused (`acl_deliver_check`): dropped."""
        counters = self.counters
        counters[m.DELIVERY_DROPPED_ACL] += 1
        counters[m.MESSAGES_DROPPED] += 1

    def enqueue_raw(self, entry: QueueEntry) -> None:
        """Append to the queue as it is (no limit, no journal): for restore too."""
        if self.mqueue is _NO_QUEUE:
            self.mqueue = deque()
        self.mqueue.append(entry)
        message = entry[0]
        self.mqueue_bytes += len(message.payload) + len(message.topic)

    def drain(self) -> None:
        """Move queued messages into the window while there is room (checked by the
        delivery-time ACL, as `deliver` does: queued while offline, they were not)."""
        outlet = self.outlet
        queue = self.mqueue
        while queue and outlet is not None and outlet.writable:
            message, qos, retain, via = queue[0]
            if qos and len(self.inflight) >= self.max_inflight:
                return
            allowed: bool | None = True
            if self.acl_wildcards and message.topic not in outlet.deliverable:
                allowed = outlet.may_receive(message.topic)
                if allowed is None:
                    return  # being decided: drained again once it is
            queue.popleft()
            self.mqueue_bytes -= len(message.payload) + len(message.topic)
            journal = self.journal
            if not allowed or (message.expires_at is not None
                               and message.expires_at <= self.clock.monotonic()):
                if allowed:
                    self.counters[m.MESSAGES_EXPIRED] += 1
                else:
                    self._acl_denied()
                if journal is not None and qos:
                    journal.done(self, message)
                continue
            packet_id = 0
            if qos:
                packet_id = self._allocate_id()
                self.put_inflight(packet_id, InflightEntry(message, qos, retain,
                                                           self.clock.monotonic(), via=via))
                if journal is not None:
                    journal.moved(self, message, qos, retain, packet_id)
            if not outlet.send_publish(message, qos, retain, packet_id, False, via) and qos:
                self._forget(packet_id)
            self.deliver_msg += 1

    def resend_inflight(self, older_than: float | None = None) -> float | None:
        """PUBLISH again with DUP, or PUBREL, what is unacknowledged [MQTT-4.4.0-1].

        All of it after a reconnect; with `older_than` (a monotonic time) only
        what was last sent before then.  Returns the oldest remaining send time.
        """
        outlet = self.outlet
        assert outlet is not None
        now = self.clock.monotonic()
        oldest: float | None = None
        for packet_id, entry in self.inflight.items():
            if older_than is not None and entry.sent_at > older_than:
                if oldest is None or entry.sent_at < oldest:
                    oldest = entry.sent_at
                continue
            entry.sent_at = now
            if entry.released:
                outlet.send_pubrel(packet_id)
            else:
                outlet.send_publish(entry.message, entry.qos, entry.retain, packet_id, True,
                                     entry.via)
        if oldest is None and self.inflight:
            oldest = now
        return oldest

    def _forget(self, packet_id: int) -> None:
        entry = self.inflight.pop(packet_id, None)
        if entry is not None and self.journal is not None:
            self.journal.done(self, entry.message)

    def _allocate_id(self) -> int:
        packet_id = self._next_id
        inflight = self.inflight
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in inflight:
                self._next_id = packet_id
                return packet_id

    # -- acknowledgements from the client ----------------------------------
    def puback(self, packet_id: int) -> Message | None:
        entry = self.inflight.get(packet_id)
        if entry is None or entry.qos != 1:
            return None
        del self.inflight[packet_id]
        if self.journal is not None:
            self.journal.done(self, entry.message)
        if self.mqueue:
            self.drain()
        return entry.message

    def pubrec(self, packet_id: int) -> Message | None:
        entry = self.inflight.get(packet_id)
        if entry is None or entry.qos != 2:
            return None
        entry.released = True
        entry.sent_at = self.clock.monotonic()
        if self.journal is not None:
            self.journal.released(self, entry.message, entry.qos, entry.retain, packet_id)
        return entry.message

    def pubcomp(self, packet_id: int) -> Message | None:
        entry = self.inflight.get(packet_id)
        if entry is None or not entry.released:
            return None
        del self.inflight[packet_id]
        if self.journal is not None:
            self.journal.done(self, entry.message)
        if self.mqueue:
            self.drain()
        return entry.message

    def abandon(self, packet_id: int) -> None:
        """The client refused an in-flight message (MQTT 5.0 PUBREC >= 0x80)."""
        entry = self.inflight.pop(packet_id, None)
        if entry is not None and self.journal is not None:
            self.journal.done(self, entry.message)
        self.drain()

    def await_rel(self, packet_id: int) -> None:
        self.put_awaiting_rel(packet_id, self.clock.monotonic())
        if self.journal is not None:
            self.journal.awaiting_added(self, packet_id)

    def release(self, packet_id: int) -> bool:
        """PUBREL: forget an incoming QoS 2 id; False if it was unknown."""
        if self.awaiting_rel.pop(packet_id, None) is None:
            return False
        if self.journal is not None:
            self.journal.awaiting_removed(self, packet_id)
        return True

    # -- incoming QoS 2 ----------------------------------------------------
    def expire_awaiting_rel(self, now: float) -> int:
        """Forget incoming QoS 2 ids older than await_rel_timeout; return how many."""
        timeout = self.options.await_rel_timeout
        stale = [pid for pid, at in self.awaiting_rel.items() if now - at >= timeout]
        for pid in stale:
            del self.awaiting_rel[pid]
            if self.journal is not None:
                self.journal.awaiting_removed(self, pid)
        return len(stale)
