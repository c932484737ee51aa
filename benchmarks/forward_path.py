#!/usr/bin/env python3
"""Instructions per message of the cross-node path, in one process, no sockets
and no NATS: a figure a busy machine cannot change (docs/cluster.md, "How a
message crosses nodes").

Two nodes, A and B, are built as a clustered node builds them (a `Broker` and
its `starling.cluster` link), without connecting to NATS: B's route table is
handed to A directly, and what A's outbox would publish is handed to B's
forward handler directly.  The windows, each counted by callgrind:

  send     on A: `Channel.handle(PUBLISH)` → ACL → `Broker.publish` → the
           cluster's forward (routes matched, the message encoded) → the
           outbox's batch for B, closed every `--turn` messages as a loop turn
           closes it;
  receive  on B: each batch through the forward handler: decoded, dispatched
           to B's subscriber (`bench/+`), PUBLISH encoded and written to an
           in-memory connection.

Not counted: the NATS client's work per batch (one PUB command out, one MSG
parsed in, per batch of `--turn` messages) and nats-server.

    python benchmarks/forward_path.py                     # callgrind, 20,000 messages
    python benchmarks/forward_path.py --plain             # no valgrind: a smoke run
    python benchmarks/forward_path.py --turn 1            # one message per batch
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

from publish_path import CountingConnection  # noqa: E402

WINDOWS = ("send", "receive")


def settings(node: str) -> Any:
    from starling.cluster import ClusterSettings
    from starling.cluster.settings import NatsSettings

    return ClusterSettings(node, "bench", 60.0, 1.0, 5.0, 2.0, 64 * 1024 * 1024,
                           NatsSettings(("nats://127.0.0.1:1",), 1.0))


class Connection(CountingConnection):
    """A connection whose CONNECT waits for the cluster's claim (an asynchronous step)."""

    def auth_done(self) -> None:
        pass


class Delivered:
    """What NATS would deliver to B's forward subscription: a `Msg` with `data`."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def node(name: str, qos: int) -> tuple[Any, Any]:
    from starling.broker import DEFAULT_ACL_CONF, Broker, BrokerOptions, parse_acl
    from starling.cluster.link import Cluster

    broker = Broker(BrokerOptions())
    broker.acl.replace(parse_acl(DEFAULT_ACL_CONF))
    broker.acl.attach(broker.hooks)
    cluster = Cluster(settings(name), broker, "bench")
    broker.attach_cluster(cluster)
    return broker, cluster


async def run(n: int, turn: int, qos: int, cg: Any) -> dict[str, Any]:
    from starling.broker import Channel
    from starling.mqtt import Connect, Puback, Publish, Subscribe, SubscriptionOptions

    broker_a, cluster_a = node("a@bench", qos)
    broker_b, cluster_b = node("b@bench", qos)
    await broker_a.start()
    await broker_b.start()

    async def client(broker: Any, client_id: str) -> Any:
        channel = Channel(broker, Connection())
        channel.handle(Connect(client_id=client_id, keepalive=0))
        while client_id not in broker.channels:  # the cluster's claim (no NATS: at once)
            await asyncio.sleep(0)
        return channel

    sub = await client(broker_b, "sub")
    sub.handle(Subscribe(1, [("bench/+", SubscriptionOptions(qos))]))
    cluster_a.remote.replace(cluster_b.node, cluster_b.local.snapshot())
    pub = await client(broker_a, "pub")
    payload = b"x" * 64
    packets = [Publish("bench/t", payload, qos, False, False, (i % 65535) + 1 if qos else None)
               for i in range(n + 100)]
    acks = [Puback((i % 65535) + 1) for i in range(n + 100)]
    outbox = cluster_a.outbox
    close = getattr(outbox, "close_turn", None) or outbox._close_batches

    def send(first: int, last: int) -> None:
        handle = pub.handle
        for i in range(first, last):
            handle(packets[i])
            if (i + 1) % turn == 0:
                close()
        close()

    async def receive(first: int, count: int) -> None:
        on_forward = cluster_b._on_forward
        sub_handle = sub.handle
        batches = [Delivered(payload) for _, payload, _ in outbox._queue]
        outbox._queue.clear()
        outbox._queued_bytes = 0
        for i, batch in enumerate(batches):
            await on_forward(batch)
            if qos:
                for j in range(first + i * turn, first + min(count, (i + 1) * turn)):
                    sub_handle(acks[j])

    send(0, 100)  # warm-up: ACL cache, code paths
    await receive(0, 100)
    written = sub.conn.written
    if cg is not None:
        cg.cg_start()
    send(100, n + 100)
    if cg is not None:
        cg.cg_stop()
        cg.cg_start()
    await receive(100, n)
    if cg is not None:
        cg.cg_stop()
    written = sub.conn.written - written
    await broker_a.stop()
    await broker_b.stop()
    return {"messages": n, "turn": turn, "qos": qos, "bytes_to_subscriber": written,
            "received_on_b": broker_b.counters["messages/forward/received"]}


def inner(args: argparse.Namespace) -> int:
    cg = None
    if not args.plain:
        from profile_conn import callgrind_helper
        cg = callgrind_helper()
    print(json.dumps(asyncio.run(run(args.messages, args.turn, args.qos, cg))))
    return 0


def outer(args: argparse.Namespace) -> int:
    argv = ["--inner", "-n", str(args.messages), "--turn", str(args.turn), "--qos",
            str(args.qos)]
    if args.plain:
        res = subprocess.run([sys.executable, __file__, *argv, "--plain"], capture_output=True,
                             text=True, check=True)
        print(res.stdout.strip().splitlines()[-1])
        return 0
    from profile_conn import under_callgrind, window_dumps
    res, out_dir = under_callgrind(__file__, argv)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    dumps = window_dumps(out_dir)
    if len(dumps) != len(WINDOWS):
        raise SystemExit(f"forward_path.py: {len(dumps)} callgrind windows, not {len(WINDOWS)}")
    for window, (dump, total) in zip(WINDOWS, dumps, strict=True):
        result[f"{window}_instructions_per_message"] = round(total / args.messages)
        if args.keep:
            print(f"forward_path.py: {window}: {dump}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(out_dir, ignore_errors=True)
    print(json.dumps(result))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--messages", type=int, default=20000)
    p.add_argument("--turn", type=int, default=100,
                   help="messages per loop turn, so per batch (default %(default)s)")
    p.add_argument("--qos", type=int, choices=(0, 1), default=0)
    p.add_argument("--plain", action="store_true", help="no valgrind (check it runs)")
    p.add_argument("--keep", action="store_true", help="keep the callgrind dumps")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
