"""PUBLISH from the client: the checks (MQTT 5.0 topic aliases, forbidden
properties, Receive Maximum), the ACL (awaited when its sources must be), the
message routed through `Broker.publish`, PUBACK / PUBREC (after the commit of
what the message changed, `acks.py`), and PUBREL → PUBCOMP for QoS 2.
"""

from __future__ import annotations

from starling.mqtt import PropertyId, Publish, Pubrel, ReasonCode, ack_bytes, topic_levels_ok

from .. import metrics as m
from ..client import CONNECTED
from ..hooks import Points
from ..message import Message
from ..sentinels import own
from .acks import Replies


class PublishFlow(Replies):
    __slots__ = ()

    def _on_publish(self, p: Publish) -> None:
        counters = self.counters
        counters["packets/publish/received"] += 1
        counters[m.MESSAGES_RECEIVED] += 1
        qos = p.qos
        counters[m.QOS_RECEIVED[qos]] += 1
        self.recv_msg += 1
        if self.limiter is not None:
            self.limiter.published()
        if self.protocol_level == 5 and not self._v5_publish_checks(p):
            return
        if not p.topic:
            self._protocol_violation("empty topic without a topic alias")
            return
        broker = self.broker
        session = self.session
        assert session is not None
        if qos == 2 and p.packet_id in session.awaiting_rel:
            # A resend before PUBREL: acknowledge, do not deliver again [MQTT-4.3.3-2];
            # after the first copy's writes are committed, if they are not yet.
            self._send_ordered(ack_bytes(0x50, p.packet_id), broker.journal.durable)
            return
        ops_before = broker.journal.ops_added
        if not topic_levels_ok(p.topic, self.options.max_topic_levels):
            self._ack_publish(p, ReasonCode.TOPIC_NAME_INVALID)
            return
        if p.topic[0] == "$" and self.sys_publish_refused(p.topic):
            self._publish_denied(p)
            return
        if broker.hooks.has(Points.CLIENT_CHECK_ACL):
            if broker.acl_is_async:
                allowed = broker.acl_known(self, "publish", p.topic)
                if allowed is None:
                    self._wait_for(self._publish_after_acl(p))
                    return
            else:
                allowed = broker.check_acl(self, "publish", p.topic)
            if not allowed:
                self._publish_denied(p)
                return
        self._publish_allowed(p, ops_before)

    async def _publish_after_acl(self, p: Publish) -> None:
        broker = self.broker
        allowed = await broker.check_acl_async(self, "publish", p.topic)
        if self.state != CONNECTED:
            return
        if allowed:
            self._publish_allowed(p, broker.journal.ops_added)
        else:
            self._publish_denied(p)

    def _publish_denied(self, p: Publish) -> None:
        self.counters["packets/publish/auth_error"] += 1
        self._ack_publish(p, ReasonCode.NOT_AUTHORIZED)
        if self.options.acl_deny_action == "disconnect":
            self._acl_disconnect()

    def _publish_allowed(self, p: Publish, ops_before: int) -> None:
        """The rest of PUBLISH handling, once the ACL let it through."""
        broker = self.broker
        counters = self.counters
        session = self.session
        assert session is not None
        qos = p.qos
        message = Message(p.topic, p.payload, qos, p.retain, self.client_id, self.username,
                          self.conn.peerhost, p.properties)
        if qos and broker.journal.failing_since is not None and self.protocol_level == 5 \
                and broker.needs_store(message):
            # The store cannot write what this message needs: refused, not held
            # (a 3.x client is held instead, by its waiting acknowledgements).
            counters[m.MESSAGES_DROPPED] += 1
            self._ack_publish(p, ReasonCode.QUOTA_EXCEEDED)
            return
        if qos == 2:
            limit = self.options.max_awaiting_rel
            if limit and len(session.awaiting_rel) >= limit:
                counters["messages/qos2/expired"] += session.expire_awaiting_rel(
                    broker.clock.monotonic())
                if len(session.awaiting_rel) >= limit:
                    counters["messages/qos2/dropped"] += 1
                    self._ack_publish(p, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
                    return
            assert p.packet_id is not None
            session.await_rel(p.packet_id)
        expiry: float | None = (p.properties.get(PropertyId.MESSAGE_EXPIRY_INTERVAL)
                                if p.properties else None)
        expiry_cap = self.options.message_expiry_interval
        if expiry_cap and (expiry is None or expiry > expiry_cap):
            expiry = expiry_cap
        if expiry is not None:
            message.expires_at = broker.clock.monotonic() + expiry
        sent_before = self.send_pkt
        delivered = broker.publish(message)
        if qos:
            code = 0
            if not delivered and self.protocol_level == 5:
                code = ReasonCode.NO_MATCHING_SUBSCRIBERS
            # Durable mode: what this PUBLISH changed in the store is committed first.
            # The acknowledgement goes ahead of the copies to the publisher itself
            # (written by `publish` just now), as other brokers send it.
            self._ack_publish(p, code, broker.journal.changed_since(ops_before),
                              self.send_pkt - sent_before)

    def _v5_publish_checks(self, p: Publish) -> bool:
        """Topic aliases, forbidden properties and Receive Maximum (MQTT 5.0)."""
        props = p.properties
        if PropertyId.SUBSCRIPTION_IDENTIFIER in props:
            self._protocol_violation("Subscription Identifier in a client PUBLISH")  # §3.3.4
            return False
        alias = props.pop(PropertyId.TOPIC_ALIAS, None)
        if alias is not None:
            if alias == 0 or alias > self.options.max_topic_alias:
                self._disconnect(ReasonCode.TOPIC_ALIAS_INVALID, f"topic alias {alias}")
                return False
            v5 = self._v5_state()
            if p.topic:
                aliases = v5.topic_aliases = own(v5.topic_aliases)
                aliases[alias] = p.topic
            else:
                topic = v5.topic_aliases.get(alias)
                if topic is None:
                    self._protocol_violation(f"unknown topic alias {alias}")
                    return False
                p.topic = topic
        if p.retain and not self.options.retain_available:
            # Retain Available 0 was announced [MQTT-3.2.2-14] (§3.3.1.3).
            self._disconnect(ReasonCode.RETAIN_NOT_SUPPORTED, "retain not supported")
            return False
        if p.qos and self.session is not None and not (
                p.qos == 2 and p.packet_id in self.session.awaiting_rel) and (
                len(self.session.awaiting_rel) + len(self._held_acks or ())
                >= self.server_receive_maximum):
            self._disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded")
            return False
        return True

    def _ack_publish(self, p: Publish, code: int, wait: bool = False, ahead_of: int = 0) -> None:
        """PUBACK / PUBREC, after the journal's commit when `wait` (`acks.py`),
        else before the last `ahead_of` packets written."""
        if not p.qos:
            return
        packet_id = p.packet_id
        assert packet_id is not None
        if code >= 0x80:
            self.counters["packets/publish/error"] += 1
        if p.qos == 1:
            self._last_qos1_id = packet_id
            self.counters["packets/puback/sent"] += 1
            self._send_ordered(ack_bytes(0x40, packet_id, code, self.protocol_level), wait,
                               ahead_of)
        else:
            self._last_qos1_id = 0
            self.counters["packets/pubrec/sent"] += 1
            self._send_ordered(ack_bytes(0x50, packet_id, code, self.protocol_level), wait,
                               ahead_of)

    def _on_pubrel(self, p: Pubrel) -> None:
        self.counters["packets/pubrel/received"] += 1
        session = self.session
        assert session is not None
        code = 0
        journal = self.broker.journal
        ops_before = journal.ops_added
        if not session.release(p.packet_id):
            if p.packet_id == self._last_qos1_id:
                # The id of a QoS 1 PUBLISH, which has no PUBREL (§4.3.2).
                self._wrong_acknowledgement("PUBREL", p.packet_id, "no acknowledgement")
                return
            self.counters["packets/pubrel/missed"] += 1
            code = ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
        self.counters["packets/pubcomp/sent"] += 1
        self._send_ordered(ack_bytes(0x70, p.packet_id, code, self.protocol_level),
                           journal.changed_since(ops_before))
