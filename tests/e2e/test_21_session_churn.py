"""Persistent sessions coming and going must not pile up in memory: a session
that went offline stays on the expiry schedule until its deadline (2 h), also
when the client comes back or a clean start discards it meanwhile; what the
discarded session held (its queue) must be let go at once, and the schedule must
not keep every session that ever went offline (found by benchmarks/soak.py:
RSS grew ~40 MB/h with five clients coming and going)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers.clients import Clients, uid
from helpers.nodes import ON_MOSQUITTO, rss_kib
from helpers.packets import RawClient, gen_publish

pytestmark = pytest.mark.skipif(ON_MOSQUITTO, reason="Starling's own memory")

ROUNDS = 40
QUEUED = 16 * 64 * 1024  # what each discarded session had queued: 1 MB
#: Without letting go of discarded sessions' queues: ROUNDS MB (40 MB).
RSS_GROWTH_LIMIT_KIB = 16 * 1024


@pytest.mark.timeout(180)
def test_discarded_sessions_let_go_of_their_queues(make_node: Callable[..., Any],
                                                    clients: Clients) -> None:
    node = make_node()
    topic = uid("churn")
    client_id = uid("churner")
    payload = b"q" * (64 * 1024)
    with RawClient(node.host, node.port, timeout=30) as publisher:
        publisher.connect(uid("pub"))

        def one_round(n: int) -> None:
            # A persistent session subscribes, goes offline, 1 MB queues for it ...
            sub = clients(node, client_id, clean_session=False)
            sub.subscribe(topic, 1)
            sub.disconnect()
            for i in range(QUEUED // len(payload)):
                publisher.send(gen_publish(topic, 1, payload, mid=(n * 16 + i) % 65535 + 1))
                publisher.expect_type(4)
            # ... then a clean start discards it (and the clean session ends at once).
            clients(node, client_id, clean_session=True).disconnect()

        for n in range(3):  # warm up allocator and caches
            one_round(n)
        before = rss_kib(node)
        for n in range(3, 3 + ROUNDS):
            one_round(n)
        clients.close()
        growth = rss_kib(node) - before
    assert growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew {growth} KiB over {ROUNDS} discarded sessions"
