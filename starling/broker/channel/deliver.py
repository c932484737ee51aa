"""PUBLISH to the client and its acknowledgements: the `Outlet` side of the
channel.  A message is written from its cached encoding for the (QoS, retain,
level) variant with the packet id patched in, or encoded for this subscriber
when MQTT 5.0 needs it (topic alias, remaining expiry, Subscription
Identifiers); PUBACK / PUBREC / PUBCOMP from the client end the flows; 3.x
clients get unacknowledged messages again after retry_interval.
"""

from __future__ import annotations

import math

from starling.mqtt import (
    PropertyId,
    Puback,
    Pubcomp,
    Pubrec,
    ReasonCode,
    ack_bytes,
    matches,
    parse_share,
    publish_parts,
)

from .. import metrics as m
from ..client import CONNECTED
from ..hooks import Points
from ..message import Message
from .acks import Replies


class DeliveryFlow(Replies):
    __slots__ = ()

    # -- PUBLISH out ---------------------------------------------------------------------------
    def send_publish(self, message: Message, qos: int, retain: bool, packet_id: int,
                     dup: bool, via: str | None = None) -> bool:
        """Write one PUBLISH; False if it was dropped (over the client's maximum
        packet size, MQTT 5.0 §3.1.2.11.4: the flow counts as completed)."""
        alias = 0
        v5 = self._v5
        if self.protocol_level == 5 and (
                (v5 is not None and v5.alias_max) or message.expires_at is not None or (
                self.session is not None and self.session.subscription_ids)):
            alias = self._alias_for(message.topic)
            head, tail = self._v5_parts(message, qos, retain, via, alias)
        else:
            head, tail = message.parts(qos, retain, self.protocol_level)
        if v5 is not None and v5.max_packet and (
                len(head) + len(tail) + (2 if qos else 0) > v5.max_packet):
            self.counters[m.MESSAGES_DROPPED] += 1
            return False
        if alias and v5 is not None and message.topic not in v5.out_aliases:
            v5.out_aliases[message.topic] = alias  # sent: the client knows it now
        if qos:
            if dup:
                head = bytes((head[0] | 0x08,)) + head[1:]
            self.conn.write(head + packet_id.to_bytes(2, "big") + tail)
            if self._retry_timer is None and self._retry_interval:
                self._retry_timer = self.broker.clock.call_later(
                    self._retry_interval, self._retry)
        else:
            self.conn.write(head + tail)
        self.send_pkt += 1
        if not message.sys:
            self.send_msg += 1
            counters = self.counters
            counters[m.PACKETS_SENT] += 1
            counters["packets/publish/sent"] += 1
            counters[m.MESSAGES_SENT] += 1
            counters[m.QOS_SENT[qos]] += 1
        return True

    def _alias_for(self, topic: str) -> int:
        """The alias to send `topic` with: known, new (while there is room), or 0."""
        v5 = self._v5
        if v5 is None or not v5.alias_max:
            return 0
        alias = v5.out_aliases.get(topic)
        if alias is not None:
            return alias
        if len(v5.out_aliases) < v5.alias_max:
            return len(v5.out_aliases) + 1
        return 0

    def _v5_parts(self, message: Message, qos: int, retain: bool,
                  via: str | None, alias: int = 0) -> tuple[bytes, bytes]:
        """A per-subscriber encoding: remaining expiry, Subscription Identifiers,
        and a topic alias (the topic itself left out once the client knows it)."""
        props = dict(message.properties)
        topic = message.topic
        if alias:
            props[PropertyId.TOPIC_ALIAS] = alias
            if self._v5 is not None and topic in self._v5.out_aliases:
                topic = ""
        if message.expires_at is not None:
            props[PropertyId.MESSAGE_EXPIRY_INTERVAL] = max(
                0, math.ceil(message.expires_at - self.broker.clock.monotonic()))
        session = self.session
        if session is not None and session.subscription_ids:
            # The identifiers of the subscriptions this copy is for [MQTT-3.3.4-5]:
            # the shared subscription it came through, or every plain one that matches.
            if via is not None:
                ident = session.subscription_ids.get(via)
                ids = [ident] if ident else []
            else:
                ids = [i for f, i in session.subscription_ids.items()
                       if parse_share(f)[0] is None and matches(f, message.topic)]
            if ids:
                props[PropertyId.SUBSCRIPTION_IDENTIFIER] = ids
        return publish_parts(topic, message.payload, qos, retain, False, 5, props)

    def _retry(self) -> None:
        """retry_interval elapsed: resend what is still unacknowledged (MQTT 3.x)."""
        self._retry_timer = None
        session = self.session
        if session is None or self.state != CONNECTED:
            return
        interval = self._retry_interval
        clock = self.broker.clock
        oldest = session.resend_inflight(older_than=clock.monotonic() - interval)
        if self._retry_timer is not None:  # armed by the resends; re-arm precisely
            self._retry_timer.cancel()
            self._retry_timer = None
        if oldest is not None:
            delay = max(0.01, oldest + interval - clock.monotonic())
            self._retry_timer = clock.call_later(delay, self._retry)

    # -- acknowledgements from the client ------------------------------------------------------
    def _on_puback(self, p: Puback) -> None:
        # `Client.puback`, inlined: every QoS 1 delivery ends here.
        self.counters["packets/puback/received"] += 1
        session = self.session
        assert session is not None
        message = session.puback(p.packet_id)
        if message is None:
            if p.packet_id in session.inflight:  # a QoS 2 delivery
                self._wrong_acknowledgement("PUBACK", p.packet_id, "PUBREC and PUBCOMP")
                return
            self.counters["packets/puback/missed"] += 1
        elif self.broker.hooks.has(Points.MESSAGE_ACKED):
            self.broker.hooks.run(Points.MESSAGE_ACKED, self.info, message)

    def _on_pubrec(self, p: Pubrec) -> None:
        self.counters["packets/pubrec/received"] += 1
        session = self.session
        assert session is not None
        if p.reason_code >= 0x80:
            # MQTT 5.0: the client refused the message; the flow ends here.
            if self._pubrec_wrong(p.packet_id):
                return
            session.abandon(p.packet_id)
            return
        journal = self.broker.journal
        ops_before = journal.ops_added
        if session.pubrec(p.packet_id) is None:
            if self._pubrec_wrong(p.packet_id):
                return
            self.counters["packets/pubrec/missed"] += 1
            if self.protocol_level == 5:
                self.counters["packets/pubrel/sent"] += 1
                self._send(ack_bytes(0x62, p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, 5))
                return
        # The "released" state must be on disk before PUBREL: else a restart would
        # resend the PUBLISH to a client that already completed it.
        self.send_pubrel(p.packet_id, journal.changed_since(ops_before))

    def _pubrec_wrong(self, packet_id: int) -> bool:
        """A PUBREC for a QoS 1 delivery: closed (`_wrong_acknowledgement`)."""
        session = self.session
        assert session is not None
        entry = session.inflight.get(packet_id)
        if entry is None or entry.qos == 2:
            return False
        self._wrong_acknowledgement("PUBREC", packet_id, "PUBACK")
        return True

    def send_pubrel(self, packet_id: int, wait: bool = False) -> None:
        self.counters["packets/pubrel/sent"] += 1
        self._send_ordered(ack_bytes(0x62, packet_id), wait)

    def _on_pubcomp(self, p: Pubcomp) -> None:
        self.counters["packets/pubcomp/received"] += 1
        if self.pubcomp(p.packet_id) is None:
            session = self.session
            entry = session.inflight.get(p.packet_id) if session is not None else None
            if entry is not None:  # QoS 1, or QoS 2 before its PUBREC
                self._wrong_acknowledgement(
                    "PUBCOMP", p.packet_id, "PUBACK" if entry.qos == 1 else "PUBREC first")
                return
            self.counters["packets/pubcomp/missed"] += 1
