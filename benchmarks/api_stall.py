#!/usr/bin/env python3
"""Does the management API stall the broker?  Event-loop lag of a node holding
thousands of idle MQTT connections while a dashboard-like poller reads the API.

    python3 benchmarks/api_stall.py                          # 19,000 connections, 30 s per phase
    python3 benchmarks/api_stall.py --connections 15000 --duration 20
    python3 benchmarks/api_stall.py --starling-src /path/to/other/checkout   # "before"
    python3 benchmarks/api_stall.py --steps 1000,5000,10000,19000 --duration 10

The node runs in a child process started from `--starling-src` (default: this
checkout) with a lag probe inside its event loop: a task sleeps 5 ms over and over
and records how late each wake-up is.  That lateness is what every MQTT client of
the node waits on top of its own work, so its p99 and max are the figures.  The
idle connections come from the C load generator (`loadgen.c --scenario idle`, one
process per step, each keeping its connections open), the poller is a thread here
that sends, once a second, ``GET`` to each of `--paths` over one keep-alive HTTP
connection, and records each answer's time.

Two figures per phase, from the probe: `lag`, how late each wake-up is (wall clock:
what a client sees, including time the OS gave the CPU to other processes on a
shared machine), and `held`, the CPU time the loop's thread spent between two
wake-ups (how long callbacks held the loop, whatever else runs on the machine).
Phases at each step: `quiet` (no API calls) then `polled` (the poller running).
Standard library only; the node and loadgen are stopped on exit.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import run as bench  # noqa: E402  (benchmarks/run.py: loadgen build, children)

DEFAULT_PATHS = ("/connections?_page=1&_limit=100", "/sessions?_page=1&_limit=100",
                 "/subscriptions?_page=1&_limit=100", "/stats", "/metrics")
SECRET = "stall-bench-secret"

#: Runs in the node's process: start a node, probe its loop, answer commands on stdin
#: ("start": clear the samples, "report": print their summary as JSON).
NODE_SCRIPT = r"""
import asyncio, gc, json, sys, time
import starling
from starling.cli import _loop_factory
from starling.config import Config
from starling.node import Node

PERIOD = 0.005

def summary(samples):
    if not samples:
        return {"samples": 0}
    s = sorted(samples)
    pick = lambda q: round(s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))] * 1e3, 3)
    return {"samples": len(s), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "p999_ms": pick(0.999), "max_ms": round(s[-1] * 1e3, 3)}

async def main():
    config = Config.load(None, sys.argv[1:], {})
    node = Node(config)
    await node.start()
    loop = asyncio.get_running_loop()
    mqtt = node.listeners[0].bound
    http = next(h.bound for h in node.http_listeners if h.name == "http:management")
    print(json.dumps({"mqtt": list(mqtt), "http": list(http), "starling": starling.__file__}),
          flush=True)
    lags, held, gc_pauses = [], [], {0: [], 1: [], 2: []}
    gc_started = [0.0]

    def on_gc(phase, info):
        # the garbage collector's pauses, by generation: a stall no handler shows
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses[info["generation"]].append(time.perf_counter() - gc_started[0])

    gc.callbacks.append(on_gc)
    done = asyncio.Event()

    def command():
        line = sys.stdin.readline().strip()
        if line == "start":
            lags.clear()
            held.clear()
            for pauses in gc_pauses.values():
                pauses.clear()
        elif line == "report":
            print(json.dumps({"lag": summary(lags), "held": summary(held),
                              "gc": {f"gen{g}": {"count": len(p), "max_ms":
                                                 round(max(p, default=0) * 1e3, 3)}
                                     for g, p in gc_pauses.items()}}), flush=True)
        elif line in ("", "quit"):
            done.set()

    loop.add_reader(sys.stdin.fileno(), command)

    async def probe():
        # lag: how late the wake-up is (wall clock; includes time the OS gave the CPU to
        # other processes).  held: CPU time this thread spent between the two ticks, i.e.
        # how long other callbacks held the loop, whatever else runs on the machine.
        while True:
            before = time.perf_counter()  # uvloop's loop.time() only has milliseconds
            cpu = time.thread_time()
            await asyncio.sleep(PERIOD)
            lags.append(max(0.0, time.perf_counter() - before - PERIOD))
            held.append(time.thread_time() - cpu)

    task = asyncio.ensure_future(probe())
    await done.wait()
    task.cancel()
    await node.stop()

with asyncio.Runner(loop_factory=_loop_factory()) as runner:
    runner.run(main())
"""


class NodeProcess:
    def __init__(self, src: Path, data_dir: Path) -> None:
        settings = {
            "node.data_dir": str(data_dir),
            "listeners.tcp.default.bind": "127.0.0.1:0",
            "listeners.tcp.default.max_connections": "1000000",
            "listeners.tcp.internal.bind": "off",
            "listeners.ws.default.bind": "off",
            "management.bind": "127.0.0.1:0",
            "dashboard.bind": "off",
            "api.default_app_secret": SECRET,
            "log.level": "warning",
        }
        args = [sys.executable, "-c", NODE_SCRIPT, *(f"{k}={v}" for k, v in settings.items())]
        env = dict(os.environ, PYTHONPATH=str(src), PYTHONUNBUFFERED="1")
        # cwd=src: `python -c` puts the working directory first on sys.path.
        self.proc = bench.spawn(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env, cwd=str(src))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("api_stall: the node did not start")
        ports = json.loads(line)
        self.mqtt = (ports["mqtt"][0], ports["mqtt"][1])
        self.http = (ports["http"][0], ports["http"][1])
        self.package = ports["starling"]
        if not Path(self.package).resolve().is_relative_to(src):
            raise SystemExit(f"api_stall: the node imported {self.package}, not {src}")

    def command(self, line: str) -> dict[str, Any] | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        if line != "report":
            return None
        result: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # already gone
            self.command("quit")
        bench.stop_process(self.proc)


class Api:
    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        token = base64.b64encode(f"admin:{SECRET}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def request(self, method: str, path: str, body: Any = None) -> tuple[float, Any]:
        """(seconds, parsed JSON); one retry on a keep-alive connection the server
        closed while idle (uvicorn's keep-alive timeout is 5 s)."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request(method, "/api/v3" + path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
            except (http.client.RemoteDisconnected, ConnectionError) as exc:
                self.conn.close()
                if attempt == 2:
                    raise SystemExit(f"api_stall: {method} {path}: {exc}") from None
                continue
            elapsed = time.perf_counter() - started
            if resp.status != 200:
                raise SystemExit(f"api_stall: {method} {path} answered {resp.status}: "
                                 f"{raw[:200]!r}")
            return elapsed, json.loads(raw)
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[float, Any]:
        return self.request("GET", path)


def node_name_and_connections(api: Api) -> tuple[str, int]:
    _, body = api.get("/nodes")
    info = body["data"][0]
    return info["node"], int(info["connections"])


class Poller(threading.Thread):
    def __init__(self, host: str, port: int, paths: list[str], interval: float) -> None:
        super().__init__(daemon=True)
        self.api = Api(host, port)
        self.paths = paths
        self.interval = interval
        self.times: dict[str, list[float]] = {p: [] for p in paths}
        self.stop_event = threading.Event()

    def run(self) -> None:
        next_round = time.monotonic()
        while not self.stop_event.is_set():
            for path in self.paths:
                self.times[path].append(self.api.get(path)[0])
            next_round += self.interval
            self.stop_event.wait(max(0.0, next_round - time.monotonic()))

    def summary(self) -> dict[str, dict[str, float]]:
        return {p: {"calls": len(t), "median_ms": round(statistics.median(t) * 1e3, 2),
                    "max_ms": round(max(t) * 1e3, 2)} for p, t in self.times.items() if t}


def open_idle(loadgen: Path, node: NodeProcess, count: int, hold: float) -> subprocess.Popen[Any]:
    args = [str(loadgen), "--scenario", "idle", "--host", node.mqtt[0],
            "--port", str(node.mqtt[1]), "--connections", str(count),
            "--concurrency", str(bench.IDLE_CONCURRENCY), "--settle", str(hold),
            "--connect-timeout", "120", "--keepalive", "600"]
    return bench.spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def subscribe_all(api: Api, count: int, batch: int = 500) -> None:
    """One subscription per connected client (`bench/<client id>/#`, QoS 1), made over
    the API before anything is measured, so /subscriptions and /routes have rows."""
    _, body = api.get(f"/connections?_page=1&_limit={count}")
    ids = [row["client_id"] for row in body["data"]]
    for i in range(0, len(ids), batch):
        items = [{"client_id": cid, "topic": f"bench/{cid}/#", "qos": 1}
                 for cid in ids[i:i + batch]]
        api.request("POST", "/mqtt/subscribe_batch", items)


def wait_connections(api: Api, target: int, timeout: float = 180.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        _, count = node_name_and_connections(api)
        if count >= target or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


def measure(node: NodeProcess, seconds: float, poller: Poller | None) -> dict[str, Any]:
    node.command("start")
    if poller is not None:
        poller.start()
    time.sleep(seconds)
    if poller is not None:
        poller.stop_event.set()
        poller.join()
    out: dict[str, Any] = node.command("report") or {}
    if poller is not None:
        out["api"] = poller.summary()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=19000)
    parser.add_argument("--steps", default="",
                        help="comma-separated connection counts measured in turn "
                             "(default: just --connections)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                        help="comma-separated API paths (under /api/v3) polled each round")
    parser.add_argument("--starling-src", type=Path, default=bench.REPO_ROOT,
                        help="directory whose `starling` package runs the node")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",") if s] or [args.connections]
    paths = [p for p in args.paths.split(",") if p]
    limit = bench.raise_nofile_limit()
    if max(steps) + 200 > limit:
        raise SystemExit(f"api_stall: {max(steps)} connections need more than the "
                         f"open-files limit {limit} allows a process")
    loadgen = bench.build_loadgen()
    hold = 3 * 2 * args.duration * len(steps) + 600
    commit = subprocess.run(["git", "-C", str(args.starling_src), "describe", "--always",
                             "--dirty"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {"src": str(args.starling_src), "commit": commit, "paths": paths,
                               "interval": args.interval, "duration": args.duration,
                               "load_before": os.getloadavg(), "steps": []}
    with tempfile.TemporaryDirectory(prefix="api-stall-") as tmp:
        node = NodeProcess(args.starling_src.resolve(), Path(tmp) / "data")
        generators: list[subprocess.Popen[Any]] = []
        try:
            results["starling_package"] = node.package
            api = Api(*node.http)
            opened = 0
            for target in steps:
                generators.append(open_idle(loadgen, node, target - opened, hold))
                opened = target
                reached = wait_connections(api, target)
                print(f"{reached} connections open", file=sys.stderr, flush=True)
                subscribe_all(api, reached)
                time.sleep(2.0)
                step: dict[str, Any] = {"connections": reached}
                step["quiet"] = measure(node, args.duration, None)
                step["polled"] = measure(node, args.duration,
                                         Poller(*node.http, paths, args.interval))
                print(json.dumps(step), file=sys.stderr, flush=True)
                results["steps"].append(step)
        finally:
            for proc in generators:
                bench.stop_process(proc, timeout=5.0)
            node.stop()
    results["load_after"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
