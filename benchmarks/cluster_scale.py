#!/usr/bin/env python3
"""Connection scale across a cluster: 100,000 connections on N Starling nodes of this machine.

One process may hold at most 20,000 open files here (a hard limit), and one destination
address:port at most ~28,000 connections from 127.0.0.1 (the ephemeral ports 32768-60999),
so the connections are spread over N nodes (default 6, ~16,700 each), each on its own MQTT
port, joined through one `nats-server -js` this script starts.  One loadgen process per node
runs the `idle` scenario with `--storm` (the `scale` scenario of run.py, per node): connect
its share, hold them with keepalive traffic, then all send DISCONNECT and reconnect at once.
All loadgens start together; each storms its node when its own hold ends.

While the connections are held, GET /api/v3/nodes on the first node must list every node
with the connections its loadgen opened (the cluster-wide view).  Afterwards each node's
listener `shutdown_count` tells whether any connection was closed for another reason than
the clients' DISCONNECTs.

    python3 benchmarks/cluster_scale.py                          # 6 nodes, 100,000, 300 s hold
    python3 benchmarks/cluster_scale.py --nodes 3 --connections 3000 --hold 10 --json out.json

Everything started here (nats-server, nodes, loadgens) is stopped at the end, on Ctrl-C
and on SIGTERM.  Standard library only; the loadgen build, process handling and node start
are run.py's, the nats-server is the one `starling start --workers` starts (LocalNats).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import math
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
#: From 127.0.0.1 to one address:port, at most this many connections (ports 32768-60999).
EPHEMERAL_PORTS = 60999 - 32768 + 1
#: Descriptors a node or a loadgen needs besides its connections.
FD_MARGIN = 300
API_APP, API_SECRET = "scale", "scale-secret"
MANAGEMENT = re.compile(r"listener http:management on ([0-9.]+):(\d+)")


def load_runner() -> ModuleType:
    """benchmarks/run.py as a module: its loadgen build, process handling, node start."""
    spec = importlib.util.spec_from_file_location("starling_benchmarks_run", BENCH_DIR / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


run = load_runner()
sys.path.insert(0, str(REPO_ROOT))
from starling.cluster import LocalNats  # noqa: E402


def split(total: int, parts: int) -> list[int]:
    """`total` over `parts` as evenly as possible (the first ones get the remainder)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class Api:
    """GET on one node's management API (basic auth with the app the nodes are given)."""

    def __init__(self, host: str, port: int) -> None:
        self.base = f"http://{host}:{port}/api/v3"
        token = base64.b64encode(f"{API_APP}:{API_SECRET}".encode()).decode()
        self.auth = f"Basic {token}"

    def get(self, path: str, timeout: float = 10.0) -> Any:
        req = urllib.request.Request(self.base + path, headers={"authorization": self.auth})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.load(resp)
        if body.get("code") != 0:
            raise RuntimeError(f"GET {path}: {body}")
        return body.get("data")


def node_counts(api: Api) -> dict[str, tuple[str, int]]:
    """GET /nodes: name -> (node_status, connections)."""
    return {row.get("node") or row.get("name"): (row.get("node_status", "?"),
                                                  int(row.get("connections", 0) or 0))
            for row in api.get("/nodes")}


def mqtt_shutdowns(api: Api, node: str) -> dict[str, int]:
    """The MQTT TCP listener's `shutdown_count` on `node`: why connections were closed."""
    out: dict[str, int] = {}
    for listener in api.get(f"/nodes/{node}/listeners"):
        if listener.get("protocol") == "mqtt:tcp" and isinstance(listener.get("shutdown_count"),
                                                                 dict):
            for reason, count in listener["shutdown_count"].items():
                out[reason] = out.get(reason, 0) + int(count)
    return out


class ViewWatcher(threading.Thread):
    """Polls GET /nodes on the first node until it shows every node Running with the
    connections its loadgen opened: the cluster-wide view, recorded once it is right."""

    def __init__(self, api: Api, expected: dict[str, int], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.api, self.expected, self.stop_event = api, expected, stop
        self.t0 = time.monotonic()
        self.matched: dict[str, Any] | None = None
        self.last: dict[str, tuple[str, int]] = {}
        self.errors = 0

    def run(self) -> None:
        while not self.stop_event.is_set() and self.matched is None:
            try:
                view = node_counts(self.api)
            except (OSError, ValueError, RuntimeError):
                self.errors += 1
            else:
                self.last = view
                if all(view.get(n) == ("Running", k) for n, k in self.expected.items()):
                    self.matched = {"after_s": round(time.monotonic() - self.t0, 1),
                                    "nodes": {n: {"status": s, "connections": c}
                                              for n, (s, c) in view.items()}}
            self.stop_event.wait(1.0)


def loadgen_args(connections: int, args: argparse.Namespace) -> list[str]:
    return ["--scenario", "idle", "--connections", str(connections),
            "--concurrency", str(args.concurrency), "--settle", str(args.hold),
            "--keepalive", "60", "--storm", "--connect-timeout", str(args.connect_timeout),
            *(["--storm-concurrency", str(args.storm_concurrency)] if args.storm_concurrency else [])]


def run_cluster(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    shares = split(args.connections, args.nodes)
    loadgen = run.build_loadgen()
    nats = LocalNats(workdir / "nats")
    nodes: list[Any] = []
    try:
        nats.start()
        starling = run.Starling(args.starling_ref, "starling", pinned=False)
        starling.export(workdir / "src")
        settings = [
            "cluster.discovery=nats", f"cluster.nats.servers={nats.url}", "cluster.name=scale",
            f"store.backend={args.store}",
            "management.bind=127.0.0.1:0", f"api.default_app_id={API_APP}",
            f"api.default_app_secret={API_SECRET}", *args.set]
        for i, share in enumerate(shares, 1):
            extra = [*settings, f"listeners.tcp.default.max_connections={share + 100}"]
            nodes.append(starling.start(workdir, f"n{i}", extra))
            print(f"node n{i}@127.0.0.1: MQTT port {nodes[-1].port}, pid {nodes[-1].pid}",
                  file=sys.stderr)
        api = next(Api(m.group(1), int(m.group(2))) for line in nodes[0].log_tail
                   if (m := MANAGEMENT.search(line)))
        names = [f"n{i}@127.0.0.1" for i in range(1, args.nodes + 1)]
        deadline = time.monotonic() + 30
        while True:  # every node has joined and is seen by the first
            try:
                view = node_counts(api)
            except (OSError, ValueError, RuntimeError):
                view = {}
            if all(view.get(n, ("?", 0))[0] == "Running" for n in names):
                break
            if time.monotonic() > deadline:
                raise run.BrokerError(f"the first node sees {view}, not all {args.nodes} nodes")
            time.sleep(0.5)

        stop_watch = threading.Event()
        watcher = ViewWatcher(api, dict(zip(names, shares, strict=True)), stop_watch)
        results: list[dict[str, Any]] = [{} for _ in nodes]
        timeout = 2 * args.connect_timeout + args.hold + 60

        def drive(i: int) -> None:
            results[i] = run.run_loadgen(loadgen, nodes[i].port, [nodes[i].pid],
                                         loadgen_args(shares[i], args), timeout=timeout,
                                         duration=1, warmup=0, cpu=None)

        threads = [threading.Thread(target=drive, args=(i,), daemon=True)
                   for i in range(len(nodes))]
        t0 = time.monotonic()
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        wall = time.monotonic() - t0
        stop_watch.set()
        watcher.join(15)

        per_node = []
        for name, node, share, res in zip(names, nodes, shares, results, strict=True):
            try:
                shutdowns = mqtt_shutdowns(api, name)
            except (OSError, ValueError, RuntimeError) as exc:
                shutdowns = {"unreadable": -1}
                print(f"{name}: listeners not readable: {exc}", file=sys.stderr)
            per_node.append({"node": name, "port": node.port, "pid": node.pid,
                             "connections": share, "alive_after": node.alive(),
                             "shutdown_count": shutdowns, "loadgen": res})
        return {"wall_s": round(wall, 1), "nodes": per_node, "view": watcher.matched,
                "view_last": {n: list(v) for n, v in watcher.last.items()},
                "view_errors": watcher.errors}
    finally:
        for node in reversed(nodes):
            node.stop()
        nats.stop()


def summarize(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per node and in total: the figures the README reports."""
    rows = []
    for node in raw["nodes"]:
        lg = node["loadgen"]
        shut = node["shutdown_count"]
        not_normal = sum(c for reason, c in shut.items() if reason != "normal")
        rows.append({
            "node": node["node"], "connections": node["connections"],
            "connected": lg.get("connected", 0), "ok": bool(lg.get("ok")),
            "error": lg.get("error"),
            "connect_seconds": lg.get("connect_seconds"), "connect_rate": lg.get("connect_rate"),
            "rss_before_kib": lg.get("rss_before_kib"), "rss_after_kib": lg.get("rss_after_kib"),
            "rss_per_conn_kib": lg.get("rss_per_conn_kib"),
            "hold_cpu_pct": lg.get("hold_broker_cpu_pct"),
            "pings": lg.get("pings", 0), "pongs": lg.get("pongs", 0),
            "closed_not_by_client": not_normal, "shutdown_count": shut,
            "disconnect_seconds": lg.get("disconnect_seconds"),
            "storm_connected": lg.get("storm_connected", 0),
            "storm_seconds": lg.get("storm_seconds"),
            "view_connections": (raw["view"] or {}).get("nodes", {}).get(node["node"], {})
            .get("connections"),
        })

    def values(key: str) -> list[float]:
        return [r[key] for r in rows if isinstance(r[key], int | float)]

    connected = sum(r["connected"] for r in rows)
    grown = [r["rss_after_kib"] - r["rss_before_kib"] for r in rows
             if isinstance(r["rss_after_kib"], int) and isinstance(r["rss_before_kib"], int)
             and r["rss_after_kib"] >= 0 and r["rss_before_kib"] >= 0]
    connect_s = max(values("connect_seconds"), default=0.0)
    total = {
        "connections": args.connections, "connected": connected,
        "ok": all(r["ok"] for r in rows) and raw["view"] is not None,
        # All loadgens run at once: the cluster's rate is everything over the slowest.
        "connect_seconds": connect_s,
        "connect_rate": round(connected / connect_s, 1) if connect_s else None,
        "rss_per_conn_kib": round(sum(grown) / connected, 3)
        if connected and len(grown) == len(rows) else None,
        "hold_cpu_pct": round(sum(values("hold_cpu_pct")), 2),
        "pings": sum(r["pings"] for r in rows), "pongs": sum(r["pongs"] for r in rows),
        "closed_not_by_client": sum(r["closed_not_by_client"] for r in rows),
        "disconnect_seconds": max(values("disconnect_seconds"), default=None),
        "storm_connected": sum(r["storm_connected"] for r in rows),
        "storm_seconds": max(values("storm_seconds"), default=None),
        "view_ok": raw["view"] is not None,
        "view_after_s": (raw["view"] or {}).get("after_s"),
    }
    return {"nodes": rows, "total": total}


def fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: dict[str, Any], args: argparse.Namespace) -> None:
    head = ["node", "conns", "connect/s", "KiB/conn", "CPU hold %", "PINGREQ answered",
            "closed by node", "disconnect s", "reconnect s", "/nodes view"]
    lines = []
    for r in [*summary["nodes"], {**summary["total"], "node": "total"}]:
        view = (r.get("view_connections") if r["node"] != "total"
                else ("all right" if r["view_ok"] else "NOT SEEN"))
        lines.append([
            r["node"], f"{r['connected']:,}/{r['connections']:,}", fmt(r["connect_rate"]),
            fmt(r["rss_per_conn_kib"], ".2f"), fmt(r["hold_cpu_pct"], ".2f"),
            f"{r['pongs']:,}/{r['pings']:,}", fmt(r["closed_not_by_client"], ","),
            fmt(r["disconnect_seconds"], ".2f"),
            f"{fmt(r['storm_seconds'], '.1f')} ({r['storm_connected']:,})", str(view)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    print(f"\n{args.connections:,} connections on {args.nodes} nodes, {args.hold:g} s hold")
    for line in [head, *lines]:
        print("  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True)))
    for r in summary["nodes"]:
        if r["error"]:
            print(f"{r['node']}: loadgen failed: {r['error']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=6, help="Starling nodes (default %(default)s)")
    p.add_argument("--connections", type=int, default=100_000,
                   help="connections in total, spread evenly (default %(default)s)")
    p.add_argument("--hold", type=float, default=300.0,
                   help="seconds to hold them with keepalive traffic (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=run.IDLE_CONCURRENCY,
                   help="handshakes in flight per loadgen while connecting (default %(default)s)")
    p.add_argument("--storm-concurrency", type=int, default=0,
                   help="handshakes in flight per loadgen in the reconnect storm "
                        "(default 0: all of its share at once)")
    p.add_argument("--connect-timeout", type=float, default=None,
                   help="seconds each loadgen may take to connect its share, and again for "
                        "the reconnect storm (default: 60 + 10 ms per connection)")
    p.add_argument("--store", choices=("memory", "sqlite"), default="memory",
                   help="the nodes' store.backend (default %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another setting for every node (repeatable)")
    p.add_argument("--starling-ref", default=None,
                   help="run the nodes from this git commit (exported), not the working tree")
    p.add_argument("--json", type=Path, help="write the figures and the raw results here")
    args = p.parse_args(argv)
    if args.nodes < 1 or args.connections < args.nodes:
        p.error("--nodes must be >= 1 and --connections >= --nodes")
    share = math.ceil(args.connections / args.nodes)
    limit = run.raise_nofile_limit()
    if share + FD_MARGIN > limit:
        p.error(f"{share:,} connections per node: more than the open-file limit {limit:,} "
                f"allows one process (node or loadgen); use more --nodes")
    if share > EPHEMERAL_PORTS:
        p.error(f"{share:,} connections per node: more than the {EPHEMERAL_PORTS:,} "
                "ephemeral ports to one address:port; use more --nodes")
    if args.connect_timeout is None:
        args.connect_timeout = 60 + share / 100
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if run.nats_server_binary() is None:
        print("cluster_scale.py: nats-server is not installed (apt-get install nats-server)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, run._sigterm)
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="starling-cluster-scale-") as tmp:
            raw = run_cluster(args, Path(tmp))
    except KeyboardInterrupt:
        print("cluster_scale.py: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except run.BrokerError as exc:
        print(f"cluster_scale.py: {exc}", file=sys.stderr)
        return 1
    finally:
        run.stop_all_children()
    summary = summarize(raw, args)
    print_table(summary, args)
    if args.json:
        doc = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "wall_s": raw["wall_s"], **summary, "view": raw["view"],
               "view_last": raw["view_last"], "raw": raw["nodes"]}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if summary["total"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
