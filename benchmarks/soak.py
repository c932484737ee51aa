#!/usr/bin/env python3
"""Soak: one node under mixed traffic for a given time, watched for leaks.

    python3 benchmarks/soak.py --duration 3600 --json benchmarks/results/soak.json
    python3 benchmarks/soak.py --duration 120             # what tests/benchmarks/test_soak.py runs

Traffic (all on 127.0.0.1, MQTT 3.1.1 with paho-mqtt, the API with urllib):
QoS 0, 1 and 2 publishers; a clean subscriber on `soak/#`; persistent sessions
that connect, subscribe, leave and come back (their queued messages counted);
retained messages set and cleared, read by short-lived subscribers; clients with
a will that vanish without DISCONNECT (their wills counted); two rules (a
republish on the QoS 1 topics, a do-nothing on `client.connected`); and the
management API polled every second, the recon summary included.

Every `--interval` seconds the node's RSS, open file descriptors, asyncio tasks
and connections are sampled. Before the traffic starts and after it has stopped
(every client gone, `--settle` seconds later) the descriptors and tasks are
compared: a difference is a leak. Event-loop lag comes from emqx_recon's
sampler (every second, its default `recon.lag_interval`), read with the polling. The report is printed
and, with `--json`, written with every sample.

Needs paho-mqtt (the test extra). Starts and stops its own node; stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_ID, APP_SECRET = "soak", "soak-secret"
NODE_NAME = "soak@127.0.0.1"
LISTENER_LINE = re.compile(r"listener (\S+) on (\S+):(\d+)")


# ----------------------------------------------------------------------------- the node

class SoakNode:
    """`python -m starling start` on free ports, in a temp data dir."""

    def __init__(self, data_dir: Path, extra: list[str]) -> None:
        self.data_dir = data_dir
        self.listeners: dict[str, tuple[str, int]] = {}
        self.log: list[str] = []
        self._started = threading.Event()
        args = [sys.executable, "-m", "starling", "start", "--data-dir", str(data_dir),
                "--node-name", NODE_NAME]
        for key, value in {
            "listeners.tcp.default.bind": "127.0.0.1:0", "listeners.tcp.internal.bind": "off",
            "listeners.ws.default.bind": "off", "listeners.ssl.default.bind": "off",
            "listeners.wss.default.bind": "off", "dashboard.bind": "off",
            "management.bind": "127.0.0.1:0", "api.default_app_id": APP_ID,
            "api.default_app_secret": APP_SECRET, "log.level": "warning",
            "listeners.tcp.default.max_connections": "10000",
        }.items():
            args += ["--set", f"{key}={value}"]
        for setting in extra:
            args += ["--set", setting]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                     cwd=REPO_ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._started.wait(30) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("node did not start:\n" + "\n".join(self.log[-20:]))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            match = LISTENER_LINE.search(line)
            if match:
                self.listeners[match.group(1)] = (match.group(2), int(match.group(3)))
            if "node started" in line:
                self._started.set()
        self._started.set()

    @property
    def mqtt(self) -> tuple[str, int]:
        return self.listeners["mqtt:tcp:default"]

    @property
    def api_base(self) -> str:
        host, port = self.listeners["http:management"]
        return f"http://{host}:{port}/api/v3"

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        token = base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        if isinstance(answer, dict) and answer.get("code", 0) != 0:
            raise RuntimeError(f"{method} {path}: {answer}")
        return answer.get("data") if isinstance(answer, dict) else answer


# ----------------------------------------------------------------------------- traffic

class Stats:
    """Counters shared by the traffic threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def error(self, what: str) -> None:
        with self.lock:
            self.counts["errors"] += 1
            if len(self.errors) < 50:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {what}")


def new_client(client_id: str, clean: bool = True) -> paho.Client:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean, protocol=paho.MQTTv311)
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    return client


def connect(client: paho.Client, addr: tuple[str, int], timeout: float = 10.0) -> bool:
    done = threading.Event()
    result: list[Any] = []

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        result.append(rc)
        done.set()

    client.on_connect = on_connect
    client.connect(addr[0], addr[1], keepalive=30)
    client.loop_start()
    ok = done.wait(timeout) and not result[0].is_failure
    return bool(ok)


class Traffic:
    """The mixed traffic, each part a thread that ends when `stop` is set."""

    def __init__(self, addr: tuple[str, int], api: Api, rate: float, stats: Stats,
                 lag: list[float]) -> None:
        self.addr, self.api, self.rate, self.stats, self.lag = addr, api, rate, stats, lag
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.clients: list[paho.Client] = []
        self.tag = f"{os.getpid()}"

    def start(self) -> None:
        watcher = new_client(f"soak-watch-{self.tag}")
        watcher.on_message = self._watched
        if not connect(watcher, self.addr):
            raise RuntimeError("the soak/# subscriber could not connect")
        watcher.subscribe("soak/#", 2)
        self.clients.append(watcher)
        parts: list[Callable[[], None]] = [
            lambda: self._publisher(0), lambda: self._publisher(1), lambda: self._publisher(2),
            self._retained, self._retained_reader, self._wills, self._api_poller,
            *[(lambda i=i: self._persistent(i)) for i in range(5)],
        ]
        for part in parts:
            thread = threading.Thread(target=self._guard, args=(part,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _guard(self, part: Callable[[], None]) -> None:
        try:
            part()
        except Exception as exc:  # a traffic part that dies is an error of the run
            self.stats.error(f"{getattr(part, '__name__', 'part')}: {type(exc).__name__}: {exc}")

    def _watched(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        kind = message.topic.split("/")[1]
        self.stats.add(f"watch_{kind}")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        for client in self.clients:
            client.disconnect()
            client.loop_stop()

    def _sleep(self, seconds: float) -> bool:
        """False once the run is over."""
        return not self.stop.wait(seconds)

    def _publisher(self, qos: int) -> None:
        client = new_client(f"soak-pub{qos}-{self.tag}")
        if not connect(client, self.addr):
            raise RuntimeError(f"QoS {qos} publisher could not connect")
        self.clients.append(client)
        seq = 0
        interval = 1.0 / self.rate
        while self._sleep(interval):
            payload = json.dumps({"x": seq, "pad": "p" * random.randint(10, 900)})
            info = client.publish(f"soak/q{qos}/{seq % 10}", payload, qos)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                self.stats.error(f"QoS {qos} publish: rc {info.rc}")
            else:
                self.stats.add(f"published_q{qos}")
            seq += 1

    def _persistent(self, index: int) -> None:
        """A persistent session that comes and goes; every fourth visit ends it
        (a clean-session connect discards it), so sessions are made and dropped."""
        client_id = f"soak-persist{index}-{self.tag}"
        visit = 0
        while not self.stop.is_set():
            visit += 1
            clean = visit % 4 == 0
            client = new_client(client_id, clean=clean)
            client.on_message = lambda _c, _u, m: self.stats.add("persistent_received")
            if not connect(client, self.addr):
                self.stats.error(f"{client_id} could not connect")
                client.loop_stop()
                self._sleep(1)
                continue
            client.subscribe("soak/q1/#", 1)
            self.stats.add("persistent_visits")
            self._sleep(random.uniform(3, 10))
            client.disconnect()
            client.loop_stop()
            self._sleep(random.uniform(2, 6))

    def _retained(self) -> None:
        client = new_client(f"soak-retain-{self.tag}")
        if not connect(client, self.addr):
            raise RuntimeError("retained publisher could not connect")
        self.clients.append(client)
        n = 0
        while self._sleep(0.2):
            topic = f"soak/retained/{n % 50}"
            payload = b"" if n % 7 == 0 else f"r{n}".encode()  # empty clears it
            client.publish(topic, payload, 1, retain=True)
            self.stats.add("retained_set")
            n += 1

    def _retained_reader(self) -> None:
        n = 0
        while self._sleep(2):
            got = Counter[str]()
            client = new_client(f"soak-rread{n % 3}-{self.tag}")
            client.on_message = lambda _c, _u, m, got=got: got.update(
                ["retained" if m.retain else "live"])
            if connect(client, self.addr):
                client.subscribe("soak/retained/#", 0)
                self._sleep(0.5)
                client.disconnect()
                self.stats.add("retained_read", got["retained"])
            client.loop_stop()
            n += 1

    def _wills(self) -> None:
        """A raw client with a will that vanishes (socket closed, no DISCONNECT)."""
        n = 0
        while self._sleep(1):
            client_id = f"soak-will{n % 5}-{self.tag}".encode()
            topic, message = f"soak/will/{n % 5}".encode(), b"gone"
            body = (b"\x00\x04MQTT\x04" + bytes([0x02 | 0x04 | 0x08]) + struct.pack("!H", 30)
                    + struct.pack("!H", len(client_id)) + client_id
                    + struct.pack("!H", len(topic)) + topic
                    + struct.pack("!H", len(message)) + message)
            try:
                with socket.create_connection(self.addr, timeout=10) as sock:
                    sock.sendall(bytes([0x10, len(body)]) + body)
                    connack = sock.recv(4)
                    if connack[:2] != b"\x20\x02" or connack[3:4] != b"\x00":
                        self.stats.error(f"will client refused: {connack!r}")
                        continue
                    # RST instead of FIN: the broker sees the connection lost.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.stats.add("wills_sent")
            except OSError as exc:
                self.stats.error(f"will client: {exc}")
            n += 1

    def _api_poller(self) -> None:
        paths = ["/stats", "/metrics", "/connections?_page=1&_limit=50", "/routes?_limit=50",
                 "/rules", "/alarms/present", "/nodes", "/subscriptions?_limit=50"]
        n = 0
        while self._sleep(1):
            try:
                recon = self.api.call("GET", f"/nodes/{NODE_NAME}/recon")
                lag = recon["loop"]["lag_ms"]
                if lag is not None:
                    self.lag.append(float(lag))
                self.api.call("GET", paths[n % len(paths)])
                self.stats.add("api_calls", 2)
            except Exception as exc:
                self.stats.error(f"API: {exc}")
            n += 1


def create_rules(api: Api) -> list[str]:
    made = []
    for body in (
        {"rawsql": 'SELECT payload.x as x, topic FROM "soak/q1/#" WHERE x > 0',
         "actions": [{"name": "built_in:republish_action", "params": {"target_topic": "soak/rule/out",
                                                      "target_qos": 0}}],
         "description": "soak: republish"},
        {"rawsql": 'SELECT client_id FROM "client.connected"',
         "actions": [{"name": "built_in:do_nothing_action", "params": {}}], "description": "soak: events"},
    ):
        made.append(api.call("POST", "/rules", body)["id"])
    return made


# ----------------------------------------------------------------------------- the run

def sample(node: SoakNode, api: Api, started: float) -> dict[str, Any]:
    recon = api.call("GET", f"/nodes/{NODE_NAME}/recon")
    return {"t": round(time.monotonic() - started, 1), "rss_kib": node.rss_kib(),
            "fds": node.fds(), "tasks": recon["tasks"]["total"],
            "connections": recon["connections"], "sessions": recon["sessions"],
            "cpu_s": round(node.cpu_seconds(), 2)}


def quiet_point(node: SoakNode, api: Api, started: float, settle: float,
                baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """A sample once connections are gone and the node has had `settle` s to tidy up.
    Against a `baseline`, descriptors or tasks above it are looked at again for up to
    15 s more: a leak stays, a socket still closing on a loaded machine does not."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if api.call("GET", f"/nodes/{NODE_NAME}/recon")["connections"] == 0:
            break
        time.sleep(0.2)
    time.sleep(settle)
    point = sample(node, api, started)
    deadline = time.monotonic() + 15
    while (baseline is not None and time.monotonic() < deadline
           and (point["fds"] > baseline["fds"] or point["tasks"] > baseline["tasks"])):
        time.sleep(0.5)
        point = sample(node, api, started)
    return point


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="starling-soak-") as tmp:
        node = SoakNode(Path(tmp) / "data", args.set)
        try:
            return soak(node, args)
        finally:
            code = node.stop()
            if code not in (0, -signal.SIGTERM):
                print(f"soak: node exited with {code}", file=sys.stderr)


def soak(node: SoakNode, args: argparse.Namespace) -> dict[str, Any]:
    api = Api(node.api_base)
    started = time.monotonic()
    rules = create_rules(api)
    baseline = quiet_point(node, api, started, args.settle)
    stats = Stats()
    lag: list[float] = []
    traffic = Traffic(node.mqtt, api, args.rate, stats, lag)
    samples = [baseline]
    traffic.start()
    end = time.monotonic() + args.duration
    try:
        while time.monotonic() < end and node.proc.poll() is None:
            time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
            samples.append(sample(node, api, started))
            if args.progress:
                s = samples[-1]
                print(f"soak: t={s['t']:.0f}s rss={s['rss_kib'] / 1024:.1f}MiB fds={s['fds']} "
                      f"tasks={s['tasks']} conns={s['connections']} errors={stats.counts['errors']}",
                      file=sys.stderr, flush=True)
    finally:
        traffic.finish()
    final = quiet_point(node, api, started, args.settle, baseline)
    samples.append(final)
    rule_views = {r["id"]: r for r in api.call("GET", "/rules")}
    matched = {rid: rule_views[rid]["metrics"][0]["matched"] for rid in rules}
    return report(args, baseline, final, samples, stats, lag, matched)


def report(args: argparse.Namespace, baseline: dict[str, Any], final: dict[str, Any],
           samples: list[dict[str, Any]], stats: Stats, lag: list[float],
           matched: dict[str, int]) -> dict[str, Any]:
    loaded = [s for s in samples[1:-1]]
    warm = [s for s in loaded if s["t"] >= baseline["t"] + args.warmup] or loaded[-1:]
    rss_warm = warm[0]["rss_kib"] if warm else baseline["rss_kib"]
    rss_end = warm[-1]["rss_kib"] if warm else final["rss_kib"]
    hours = max((warm[-1]["t"] - warm[0]["t"]) / 3600, 1e-9) if len(warm) > 1 else None
    slope = None
    if len(warm) > 2:
        ts = [s["t"] for s in warm]
        rs = [s["rss_kib"] for s in warm]
        slope = statistics.linear_regression(ts, rs).slope * 3600 / 1024  # MiB per hour
    cpu = None
    if len(loaded) > 1:
        span = loaded[-1]["t"] - loaded[0]["t"]
        cpu = round(100 * (loaded[-1]["cpu_s"] - loaded[0]["cpu_s"]) / span, 1) if span else None
    return {
        "duration_s": args.duration, "rate_per_publisher": args.rate,
        "baseline": baseline, "final": final,
        "fd_leak": final["fds"] - baseline["fds"], "task_leak": final["tasks"] - baseline["tasks"],
        "rss_kib": {"baseline": baseline["rss_kib"], "after_warmup": rss_warm, "end": rss_end,
                    "max": max(s["rss_kib"] for s in samples), "after_traffic": final["rss_kib"]},
        "rss_growth_after_warmup_kib": rss_end - rss_warm,
        "rss_slope_mib_per_hour": None if slope is None else round(slope, 2),
        "warm_hours": hours,
        "node_cpu_pct": cpu,
        "loop_lag_ms": {"samples": len(lag), "p50": percentile(lag, 0.5),
                        "p99": percentile(lag, 0.99), "max": max(lag) if lag else None},
        "counts": dict(stats.counts), "errors": stats.errors, "rules_matched": matched,
        "samples": samples,
    }


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def print_report(result: dict[str, Any]) -> None:
    rss = result["rss_kib"]
    lag = result["loop_lag_ms"]
    counts = result["counts"]
    print(f"soak: {result['duration_s']:g} s of mixed traffic")
    print(f"  RSS: baseline {mib(rss['baseline'])}, after warm-up {mib(rss['after_warmup'])}, "
          f"end {mib(rss['end'])}, max {mib(rss['max'])}, after the traffic "
          f"{mib(rss['after_traffic'])}; slope after warm-up "
          f"{result['rss_slope_mib_per_hour']} MiB/h")
    print(f"  fds: {result['baseline']['fds']} before, {result['final']['fds']} after "
          f"(leak {result['fd_leak']}); asyncio tasks: {result['baseline']['tasks']} before, "
          f"{result['final']['tasks']} after (leak {result['task_leak']})")
    print(f"  event-loop lag: p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms "
          f"({lag['samples']} samples); node CPU {result['node_cpu_pct']}%")
    print("  traffic: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"  rules matched: {result['rules_matched']}")
    for error in result["errors"]:
        print(f"  error: {error}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=3600, help="seconds of traffic (3600)")
    p.add_argument("--interval", type=float, default=10, help="seconds between samples (10)")
    p.add_argument("--warmup", type=float, default=60,
                   help="seconds of traffic before RSS is expected flat (60)")
    p.add_argument("--settle", type=float, default=3,
                   help="seconds after the last client left before counting fds and tasks (3)")
    p.add_argument("--rate", type=float, default=20, help="messages/s per QoS publisher (20)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a node setting (repeatable)")
    p.add_argument("--json", type=Path, help="write the result, every sample included")
    p.add_argument("--progress", action="store_true", help="a line per sample on stderr")
    args = p.parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the node is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 1 if result["counts"].get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
