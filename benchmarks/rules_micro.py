#!/usr/bin/env python3
"""In-process microbenchmark of the rule engine's per-message cost.

Wall-clock broker throughput on a shared machine is noisy; this runs only the
engine, in one process, on CPU time (`time.process_time`), so two versions can
be compared deterministically.  A real `Broker` and `RuleEngine` get the
rules of `benchmarks/run.py`'s `starling-rules` variant (ten statements
``SELECT payload, topic, clientid() as c<i> FROM "#" WHERE qos < <i+3>`` with
the do-nothing action); then N messages go through the publish hook (what
`Broker.publish` runs) and the engine's drain, in batches as on the loop.

    PYTHONPATH=$PWD python benchmarks/rules_micro.py                 # 10 rules, 50,000 messages
    PYTHONPATH=$PWD python benchmarks/rules_micro.py --json-where    # WHERE on a JSON payload field
    PYTHONPATH=$PWD python benchmarks/rules_micro.py --profile       # plus the top of cProfile

Reported: µs of CPU per message for the hook side (on the publish path), the
drain (columns, SQL, actions) and both together; the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import time

from starling.broker import Broker, HookPoint, Message
from starling.plugins import PluginStore
from starling.rules.engine import RuleEngine


def loadgen_payload(seq: int) -> bytes:
    """64 bytes shaped like loadgen's: magic, publisher, sequence, pad, ns stamp, filler."""
    return struct.pack("<IIIIQ", 0x51A7E11, seq % 10, seq, 0, time.time_ns()) + b"x" * 40


def json_payload(seq: int) -> bytes:
    return b'{"temp": %d, "unit": "C", "seq": %d, "pad": "xxxxxxxxxxxx"}' % (seq % 40, seq)


def statements(rules: int, json_where: bool) -> list[str]:
    if json_where:
        return [f'SELECT payload.temp as t, topic, clientid() as c{i} FROM "#" '
                f"WHERE payload.temp < {i + 100}" for i in range(rules)]
    return [f'SELECT payload, topic, clientid() as c{i} FROM "#" WHERE qos < {i + 3}'
            for i in range(rules)]


async def measure(args: argparse.Namespace) -> dict[str, float]:
    broker = Broker()
    store = PluginStore()
    engine = RuleEngine(broker, "bench@127.0.0.1", store.table("rules"),
                        store.table("resources"), max_pending=10 ** 9)
    await engine.start()
    for i, sql in enumerate(statements(args.rules, args.json_where)):
        engine.create_rule({"name": f"bench{i}", "rawsql": sql,
                            "actions": [{"name": "built_in:do_nothing_action", "params": {}}]})
    make = json_payload if args.json_where else loadgen_payload
    messages = [Message(f"bench/fanin/{i % 10}", make(i), 0, False, f"pub{i % 10}", None,
                        "127.0.0.1") for i in range(args.messages)]
    hooks = broker.hooks
    point = HookPoint.MESSAGE_PUBLISH
    drain = engine._drain
    batch = args.batch
    hook_s = drain_s = 0.0
    for start in range(0, len(messages), batch):
        chunk = messages[start:start + batch]
        t0 = time.process_time()
        for message in chunk:
            hooks.run_fold(point, (), message)
        t1 = time.process_time()
        while engine._queue:
            drain()
        t2 = time.process_time()
        hook_s += t1 - t0
        drain_s += t2 - t1
    passed = sum(rule.metrics.passed for rule in engine.rules.values())
    await engine.stop()
    expected = args.rules * len(messages)
    if passed != expected:
        raise SystemExit(f"rules passed {passed} times, expected {expected}")
    n = len(messages)
    return {"hook": hook_s / n * 1e6, "drain": drain_s / n * 1e6,
            "total": (hook_s + drain_s) / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256, help="messages per drain round")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json-where", action="store_true",
                        help="JSON payloads, rules reading payload.temp in SELECT and WHERE")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 25")
    args = parser.parse_args()
    best: dict[str, float] | None = None
    for _ in range(args.repeat):
        result = asyncio.run(measure(args))
        if best is None or result["total"] < best["total"]:
            best = result
    assert best is not None
    print(f"{args.rules} rules, {args.messages} messages"
          f"{' (JSON WHERE)' if args.json_where else ''}: "
          f"hook {best['hook']:.2f} µs + drain {best['drain']:.2f} µs = "
          f"{best['total']:.2f} µs CPU per message (best of {args.repeat})")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(measure(args))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
