"""SUBSCRIBE and UNSUBSCRIBE: the filters' checks, the ACL (awaited when its
sources must be), MQTT 5.0 Subscription Identifiers and retain handling,
SUBACK / UNSUBACK (after the commit of a persistent session's change,
`acks.py`), then the retained messages that match.
"""

from __future__ import annotations

from starling.mqtt import (
    PropertyId,
    ReasonCode,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    encode,
    is_valid_topic_filter,
    parse_share,
)

from ..client import CONNECTED
from ..hooks import HookPoint
from .acks import Replies


class SubscribeFlow(Replies):
    __slots__ = ()

    def _on_subscribe(self, p: Subscribe, acl_answers: dict[str, bool] | None = None) -> None:
        broker = self.broker
        if acl_answers is None and broker.acl_is_async and self._acl_lookups(p):
            return  # handled again once the ACL sources answered
        self.counters["packets/subscribe"] += 1
        session = self.session
        assert session is not None
        v5 = self.protocol_level == 5
        sub_id = 0
        if v5 and PropertyId.SUBSCRIPTION_IDENTIFIER in p.properties:
            ids = p.properties[PropertyId.SUBSCRIPTION_IDENTIFIER]
            if len(ids) != 1 or ids[0] == 0:
                self._protocol_violation("bad Subscription Identifier")  # §3.8.2.1.2
                return
            sub_id = ids[0]
        if v5 and any(opts.no_local and parse_share(f)[0] is not None
                      for f, opts in p.subscriptions):
            self._protocol_violation("No Local on a shared subscription")  # [MQTT-3.8.3-4]
            return
        if broker.hooks.has(HookPoint.CLIENT_SUBSCRIBE):  # what was asked, before any check
            broker.hooks.run(HookPoint.CLIENT_SUBSCRIBE, self.info, list(p.subscriptions))
        codes: list[int] = []
        granted: list[tuple[str, int, bool]] = []
        denied = False
        ops_before = broker.journal.ops_added
        for topic_filter, opts in p.subscriptions:
            refused = self._filter_refusal(topic_filter)
            if refused is not None:
                codes.append(refused if v5 else 0x80)
                continue
            if broker.hooks.has(HookPoint.CLIENT_CHECK_ACL) and not (
                    acl_answers[topic_filter] if acl_answers and topic_filter in acl_answers
                    else broker.check_acl(self, "subscribe", topic_filter)):
                codes.append(ReasonCode.NOT_AUTHORIZED if v5 else 0x80)
                denied = True
                continue
            is_new = broker.subscribe(session, topic_filter, opts)
            session.set_subscription_id(topic_filter, sub_id)
            codes.append(opts.qos)
            granted.append((topic_filter, opts.qos, is_new))
        self.counters["packets/suback"] += 1
        self._send_ordered(encode(Suback(p.packet_id, codes), self.protocol_level),
                           broker.journal.changed_since(ops_before))
        if denied and self.options.acl_deny_action == "disconnect":
            self._acl_disconnect()
            return
        for topic_filter, qos, is_new in granted:
            opts = session.subscriptions[topic_filter]
            if opts.retain_handling == 2 or (opts.retain_handling == 1 and not is_new):
                continue
            broker.deliver_retained(session, topic_filter, qos)

    def _acl_lookups(self, p: Subscribe) -> bool:
        """Start awaiting the ACL answers this SUBSCRIBE needs and are not known
        yet (cache aside); True when the channel now waits for them."""
        broker = self.broker
        unknown = [f for f, _ in p.subscriptions
                   if is_valid_topic_filter(f) and broker.acl_known(self, "subscribe", f) is None]
        if not unknown:
            return False
        self._wait_for(self._subscribe_after_acl(p, unknown))
        return True

    async def _subscribe_after_acl(self, p: Subscribe, filters: list[str]) -> None:
        answers = {f: await self.broker.check_acl_async(self, "subscribe", f) for f in filters}
        if self.state == CONNECTED:
            self._on_subscribe(p, answers)

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        self.counters["packets/unsubscribe"] += 1
        session = self.session
        assert session is not None
        if self.broker.hooks.has(HookPoint.CLIENT_UNSUBSCRIBE):
            self.broker.hooks.run(HookPoint.CLIENT_UNSUBSCRIBE, self.info, list(p.topic_filters))
        codes = []
        journal = self.broker.journal
        ops_before = journal.ops_added
        for topic_filter in p.topic_filters:
            found = self.broker.unsubscribe(session, topic_filter)
            session.subscription_ids.pop(topic_filter, None)
            codes.append(0 if found else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        self.counters["packets/unsuback"] += 1
        self._send_ordered(encode(Unsuback(p.packet_id, codes if self.protocol_level == 5
                                           else []), self.protocol_level),
                           journal.changed_since(ops_before))
