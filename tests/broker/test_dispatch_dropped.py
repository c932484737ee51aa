"""A message that reaches nobody is counted and announced on `message.dropped`,
whether or not shared subscriptions exist elsewhere."""

from __future__ import annotations

from starling.broker import Broker, HookPoint, Message, Session
from starling.mqtt import SubscriptionOptions


def test_dropped_with_and_without_shared_groups() -> None:
    broker = Broker()
    dropped: list[str] = []
    broker.hooks.add(HookPoint.MESSAGE_DROPPED, lambda msg, why: dropped.append(msg.topic))
    broker.publish(Message("nobody/here", b"x"))
    session = Session("member", True, 0, broker.options, broker.counters)
    broker.subscribe(session, "$share/g/elsewhere", SubscriptionOptions(1))
    broker.publish(Message("nobody/there", b"x"))
    assert dropped == ["nobody/here", "nobody/there"]
    assert broker.counters["messages/dropped"] == 2
    broker.publish(Message("elsewhere", b"x"))  # the group's member gets it (queued)
    assert broker.counters["messages/dropped"] == 2
    assert len(session.mqueue) == 1
