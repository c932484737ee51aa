#!/usr/bin/env python3
"""CPU time per message of each process of a two-node cluster (node A, node B,
nats-server) beside a lone node, in run.py's fan-in scenario: where the cost of
a message that crosses nodes goes, and a before/after measure that a busy
machine disturbs far less than a rate (it counts CPU time the processes used,
not how much of the CPU they got).

    python benchmarks/cluster_cost.py                           # the working tree
    python benchmarks/cluster_cost.py --starling-ref HEAD --compiled
    python benchmarks/cluster_cost.py --layouts cross --runs 5 --duration 10

Each run starts fresh processes as run.py does (`starling`, `starling-cross`,
`starling-spread`), runs loadgen's fan-in (10 publishers, 1 subscriber, QoS 0,
64-byte payloads), and reads each process's CPU time (``/proc/<pid>/task/*/schedstat``,
nanoseconds, every thread) at the start and the end of loadgen's measured window.  The figure
is microseconds of CPU per message received by the subscriber; the median of
the runs is printed, per process and in total.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import run  # noqa: E402

LAYOUTS = {"lone": "starling", "cross": "starling-cross", "spread": "starling-spread"}


def cpu_ns(pid: int) -> int:
    """Nanoseconds the threads of `pid` have run on a CPU (0 if it is gone)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total


def measure(broker: run.Broker, args: argparse.Namespace, loadgen: Path,
            workdir: Path) -> dict[str, Any]:
    """One run: loadgen's result and each process's CPU ns over its measured window."""
    scenario = run.SCENARIO_BY_NAME["fanin"]
    with broker.running(workdir) as rb:
        pids = rb.pids
        names = ["A", "B", "nats"] if len(pids) == 3 else ["node"]
        marks: dict[str, list[int]] = {}

        def mark(at: float, key: str) -> None:
            time.sleep(max(0.0, at - time.monotonic()))
            marks[key] = [cpu_ns(pid) for pid in pids]

        # loadgen connects in a few milliseconds, then warms up, then measures.
        start = time.monotonic()
        first = threading.Thread(target=mark, args=(start + args.warmup, "start"))
        last = threading.Thread(target=mark, args=(start + args.warmup + args.duration, "end"))
        first.start()
        last.start()
        res = run.run_loadgen(loadgen, rb.port, pids, scenario.loadgen_args(args),
                              scenario.budget(args), args.duration, args.warmup,
                              pub_ports=rb.pub_ports, sub_ports=rb.sub_ports)
        first.join()
        last.join()
    if not res.get("ok") or not res.get("received"):
        raise SystemExit(f"cluster_cost.py: loadgen failed: {res.get('error')}")
    received = float(res["received"]) * (args.duration / float(res["measured_s"]))
    per_msg = {name: (marks["end"][i] - marks["start"][i]) / 1e3 / received
               for i, name in enumerate(names)}
    per_msg["total"] = sum(per_msg.values())
    return {"rate": float(res["receive_rate"]), "us_per_msg": per_msg,
            "lost": res.get("lost", 0), "reordered": res.get("reordered", 0)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layouts", default="lone,cross,spread",
                   help="comma-separated, from " + ",".join(LAYOUTS) + " (default: %(default)s)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--starling-ref", metavar="REF",
                   help="run Starling as committed at REF (exported), not the working tree")
    p.add_argument("--compiled", action="store_true",
                   help="with --starling-ref: compile the exported hot path (mypyc)")
    args = p.parse_args()
    args.plain_generator = False
    layouts = [name.strip() for name in args.layouts.split(",") if name.strip()]
    for name in layouts:
        if name not in LAYOUTS:
            p.error(f"unknown layout {name!r}")
    loadgen = run.build_loadgen()
    run.raise_nofile_limit()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in layouts}
    with tempfile.TemporaryDirectory(prefix="starling-cluster-cost-") as tmp:
        workdir = Path(tmp)
        brokers = {}
        for name in layouts:
            broker = run.BROKERS[LAYOUTS[name]](args)
            assert isinstance(broker, run.Starling)
            broker.compiled = args.compiled  # whichever layout exports the tree builds it
            broker.export(workdir / "export")
            brokers[name] = broker
        print(f"cluster_cost.py: Starling {brokers[layouts[0]].version()}", file=sys.stderr)
        try:
            for i in range(args.runs):  # interleaved, run by run
                for name in layouts:
                    res = measure(brokers[name], args, loadgen, workdir)
                    results[name].append(res)
                    cost = ", ".join(f"{k} {v:.2f}" for k, v in res["us_per_msg"].items())
                    print(f"cluster_cost.py: {name} run {i + 1}: {res['rate']:,.0f} msg/s; "
                          f"CPU us per message: {cost}", file=sys.stderr)
        finally:
            run.stop_all_children()
    print(f"\nCPU microseconds per message received (median of {args.runs}; fan-in QoS 0 10->1)")
    for name in layouts:
        keys = results[name][0]["us_per_msg"].keys()
        med = {k: statistics.median(r["us_per_msg"][k] for r in results[name]) for k in keys}
        rate = statistics.median(r["rate"] for r in results[name])
        print(f"  {name:7s} {rate:10,.0f} msg/s  "
              + "  ".join(f"{k} {v:6.2f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
