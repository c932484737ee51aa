"""Field names of every packet, in order, whether it is a dataclass or one of the plain
classes the hot path uses (PUBLISH and the acknowledgements): the client trace
(starling/transport/trace.py) names each received packet's fields with them."""

from __future__ import annotations

from starling.mqtt import Puback, Publish, Pubrel, Subscribe, SubscriptionOptions, packet_fields


def test_plain_packets_list_their_fields_in_constructor_order() -> None:
    assert packet_fields(Publish("t", b"x", 1)) == (
        "topic", "payload", "qos", "retain", "dup", "packet_id", "properties")
    assert packet_fields(Puback(7)) == ("packet_id", "reason_code", "properties")
    assert packet_fields(Pubrel(7, 0x92)) == ("packet_id", "reason_code", "properties")


def test_dataclass_packets_list_their_fields() -> None:
    sub = Subscribe(3, [("a/+", SubscriptionOptions(qos=1))])
    assert packet_fields(sub) == ("packet_id", "subscriptions", "properties")
