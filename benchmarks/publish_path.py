#!/usr/bin/env python3
"""Instructions per PUBLISH through the broker core, in one process, no sockets:
a figure a busy machine cannot change (docs/architecture.md, "The hot path").

Channels run on an in-memory connection that only counts what is written; the
packets are made before the measured window, so the window holds
`Channel.handle` → ACL (the default ACL file, cached) → `Broker.publish` → `Router.match` →
`Session.deliver` → `Channel.send_publish`, and the acknowledgements.

    python benchmarks/publish_path.py                       # every scenario, callgrind
    python benchmarks/publish_path.py --scenarios qos0 -n 20000
    python benchmarks/publish_path.py --plain               # no valgrind: a smoke run
    python benchmarks/publish_path.py --deliver-check off   # acl_deliver_check off

Scenarios: `qos0` (one publisher, one subscriber on `bench/+`), `fanout`
(one publisher, ten subscribers, QoS 0), `qos1` (QoS 1 both ways, the
subscriber acknowledges each delivery), `connect` (a new channel, its CONNECT
and CONNACK; the figure is per connection: the broker's side of
`profile_conn.py callgrind` without sockets and event loop), `decode` (one
QoS 1 PUBLISH's bytes, 3.1.1, a 27-character topic, through `Decoder.feed`:
what the codec's checks cost, since the other scenarios hand the channel
packets already decoded).  Each runs in its
own valgrind process, instrumented only around the loop; the figure is
instructions per message.  The subscriptions are wildcards, so the delivery-time
ACL check (`acl_deliver_check`, on by default) is on the path; `--deliver-check
off` measures without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

SCENARIOS = ("qos0", "fanout", "qos1", "connect", "decode")


class CountingConnection:
    """The `Connection` a channel writes through: counts bytes, sends nothing."""

    peercert = None
    cert_username = None
    cert_clientid = None

    def __init__(self) -> None:
        self.peerhost = "127.0.0.1"
        self.written = 0

    @property
    def peername(self) -> tuple[str, int]:
        return (self.peerhost, 40000)

    @property
    def listener(self) -> str:
        return "mqtt:tcp:bench"

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def write_ahead(self, data: bytes, later: int) -> None:
        self.written += len(data)

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def io_stats(self) -> dict[str, int]:
        return {"recv_oct": 0, "recv_cnt": 0, "send_oct": self.written, "send_cnt": 0,
                "send_pend": 0}


async def run(scenario: str, n: int, cg: Any, deliver_check: bool = True) -> dict[str, Any]:
    from starling.broker import DEFAULT_ACL_CONF, Broker, BrokerOptions, Channel, parse_acl
    from starling.mqtt import Connect, Puback, Publish, Subscribe, SubscriptionOptions

    if scenario == "decode":
        return run_decode(n, cg)
    broker = Broker(BrokerOptions(acl_deliver_check=deliver_check))
    broker.acl.replace(parse_acl(DEFAULT_ACL_CONF))  # as a node has it: the ACL file
    broker.acl.attach(broker.hooks)
    if scenario == "connect":
        return await run_connects(broker, n, cg)
    await broker.start()
    qos = 1 if scenario == "qos1" else 0
    subscribers = 10 if scenario == "fanout" else 1

    def client(client_id: str) -> Any:
        channel = Channel(broker, CountingConnection())
        channel.handle(Connect(client_id=client_id, keepalive=0))
        return channel

    subs = []
    for i in range(subscribers):
        sub = client(f"sub{i}")
        sub.handle(Subscribe(1, [("bench/+", SubscriptionOptions(qos))]))
        subs.append(sub)
    pub = client("pub")
    payload = b"x" * 64
    packets = [Publish("bench/t", payload, qos, False, False, (i % 65535) + 1 if qos else None)
               for i in range(n + 100)]
    acks = [Puback((i % 65535) + 1) for i in range(n + 100)]
    for i in range(100):  # warm-up: ACL cache, code paths
        pub.handle(packets[i])
        if qos:
            subs[0].handle(acks[i])
    if cg is not None:
        cg.cg_start()
    if qos:
        sub = subs[0]
        for i in range(100, n + 100):
            pub.handle(packets[i])
            sub.handle(acks[i])
    else:
        handle = pub.handle
        for i in range(100, n + 100):
            handle(packets[i])
    if cg is not None:
        cg.cg_stop()
    written = sum(s.conn.written for s in subs)
    await broker.stop()
    return {"scenario": scenario, "messages": n, "deliver_check": deliver_check,
            "bytes_to_subscribers": written}


async def run_connects(broker: Any, n: int, cg: Any) -> dict[str, Any]:
    from starling.broker import Channel
    from starling.mqtt import Connect

    packets = [Connect(client_id=f"client-{i:08d}", keepalive=60) for i in range(n + 100)]
    channels = []
    for i in range(100):  # warm-up
        channel = Channel(broker, CountingConnection())
        channel.handle(packets[i])
        channels.append(channel)
    if cg is not None:
        cg.cg_start()
    for i in range(100, n + 100):
        channel = Channel(broker, CountingConnection())
        channel.handle(packets[i])
        channels.append(channel)
    if cg is not None:
        cg.cg_stop()
    connected = len(broker.channels)
    written = sum(c.conn.written for c in channels)
    await broker.stop()
    return {"scenario": "connect", "messages": n, "connected": connected,
            "bytes_to_clients": written}


def run_decode(n: int, cg: Any) -> dict[str, Any]:
    from starling.mqtt import Decoder, Publish, encode

    data = encode(Publish("bench/sensor/42/temperature", b"x" * 64, 1, packet_id=7), 4)
    feed = Decoder(protocol_level=4).feed
    for _ in range(100):  # warm-up
        feed(data)
    if cg is not None:
        cg.cg_start()
    for _ in range(n):
        feed(data)
    if cg is not None:
        cg.cg_stop()
    return {"scenario": "decode", "messages": n, "bytes_decoded": n * len(data)}


def inner(args: argparse.Namespace) -> int:
    cg = None
    if not args.plain:
        from profile_conn import callgrind_helper
        cg = callgrind_helper()
    print(json.dumps(asyncio.run(run(args.scenarios, args.messages, cg,
                                     args.deliver_check == "on"))))
    return 0


def outer(args: argparse.Namespace) -> int:
    results = []
    for scenario in args.scenarios.split(","):
        if scenario not in SCENARIOS:
            raise SystemExit(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
        if args.plain:
            res = subprocess.run([sys.executable, __file__, "--inner", "--plain", "-n",
                                  str(args.messages), "--scenarios", scenario,
                                  "--deliver-check", args.deliver_check],
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
            continue
        from profile_conn import under_callgrind
        res, out_dir = under_callgrind(__file__, [
            "--inner", "-n", str(args.messages), "--scenarios", scenario,
            "--deliver-check", args.deliver_check])
        result = json.loads(res.stdout.strip().splitlines()[-1])
        total = 0
        for dump in out_dir.glob("callgrind.out*"):
            match = re.search(r"^totals:\s+(\d+)", dump.read_text(errors="replace"), re.M)
            if match:
                total += int(match.group(1))
        result["instructions_per_message"] = round(total / args.messages)
        results.append(result)
        shutil.rmtree(out_dir, ignore_errors=True)
    for result in results:
        print(json.dumps(result))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--messages", type=int, default=20000)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--plain", action="store_true", help="no valgrind (check it runs)")
    p.add_argument("--deliver-check", choices=("on", "off"), default="on",
                   help="acl_deliver_check (the delivery-time ACL check): default on")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
