"""The delivery-time ACL check (`acl_deliver_check`, docs/acl.md) on the broker's
clock: a wildcard subscription's deliveries are decided once per connection and
topic, that decision stands until `acl_cache_ttl` has passed, then the ACL is
asked again.  A real Channel and Broker through a fake connection, the time moved
by hand."""

from __future__ import annotations

from helpers.channels import ChannelWorld
from helpers.packets import SUBACK, gen_publish, gen_subscribe, parse_publish

from starling.broker import BrokerOptions, ClientInfo, HookPoint


async def test_a_delivery_decision_stands_until_acl_cache_ttl() -> None:
    async with ChannelWorld(BrokerOptions(acl_cache_ttl=30.0)) as world:
        verdicts = {"secret/x": "deny"}
        asked: list[str] = []

        def source(info: ClientInfo, action: str, topic: str, acc: str) -> str:
            """An ACL source whose answer the test changes (no reload tells the broker),
            for what clients may subscribe to."""
            if action != "subscribe":
                return acc
            asked.append(topic)
            return verdicts.get(topic, acc)

        world.broker.hooks.add(HookPoint.CLIENT_CHECK_ACL, source)
        sub = world.connect("sub", keepalive=0)
        sub.send(gen_subscribe(1, "+/x", 0))
        assert [p.type for p in sub.read()] == [SUBACK]
        pub = world.connect("pub", keepalive=0)

        def delivered(payload: bytes) -> list[bytes]:
            pub.send(gen_publish("secret/x", 0, payload))
            return [parse_publish(p).payload for p in sub.read()]

        assert delivered(b"1") == [] and delivered(b"2") == []
        assert asked == ["+/x", "secret/x"]  # the filter at SUBSCRIBE, the topic once
        verdicts["secret/x"] = "allow"
        assert delivered(b"3") == []  # the decision stands
        world.clock.advance(29)
        assert delivered(b"4") == []
        world.clock.advance(2)  # acl_cache_ttl has passed: asked again
        assert delivered(b"5") == [b"5"]
        assert asked == ["+/x", "secret/x", "secret/x"]
        assert world.broker.counters["delivery/dropped/acl_denied"] == 4
