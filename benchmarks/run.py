#!/usr/bin/env python3
"""Side-by-side MQTT broker benchmark: Starling against Mosquitto (and amqtt).

For every selected scenario, run and broker this starts a fresh broker pinned to
CPU 0, drives it with the C load generator (`loadgen.c`, built on demand) pinned
to CPU 1, stops the broker, and finally prints one table with the median of the
runs and the ratios starling/<other>.  Standard library only.

    python benchmarks/run.py                       # starling,mosquitto, everything
    python benchmarks/run.py --quick               # smoke run, a few seconds per scenario
    python benchmarks/run.py --brokers mosquitto,amqtt --scenarios fanin,latency --runs 3

A fresh broker per measurement keeps scenarios independent: memory freed by one
run cannot be reused by the next (which would hide RSS growth), and a broker that
fell over in one scenario does not spoil the others.  Brokers are interleaved run by run so that slow drift
of the machine affects all of them alike.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
LOADGEN_SRC = BENCH_DIR / "loadgen.c"
LOADGEN_BIN = BUILD_DIR / "loadgen"
CFLAGS = ["-O2", "-Wall", "-Wextra"]
AMQTT_VENV = BENCH_DIR / ".venv-amqtt"
AMQTT_REQUIREMENT = "amqtt==0.12.1"  # pinned so figures stay comparable over time
BROKER_CPU = 0
LOADGEN_CPU = 1
QUIET_BUSY_PCT = 15.0  # a CPU busier than this (before we start anything) is "not quiet"
BROKER_START_TIMEOUT = 30.0
BROKER_STOP_TIMEOUT = 10.0
IDLE_CONCURRENCY = 50  # above ~100 the listen backlog overflows and SYN retries skew it
#: A figure is "generator-bound" when loadgen used at least this share of the broker's CPU
#: over the measured window: the generator is then no longer well under the broker it
#: measures, and may have set the broker's pace (see benchmarks/README.md).
GENERATOR_BOUND_SHARE = 0.5
#: Publishers refill their windows only once this many messages fit (loadgen --min-batch),
#: and subscribers are woken once 4 PUBLISHes are there (--sub-batch): several messages
#: per write and per read where the scenario allows it, so that the generator spends far
#: fewer system calls per message than the broker it measures.  `--plain-generator`
#: leaves them out (loadgen then answers every packet as it comes).
BATCH_QOS0 = ["--min-batch", "25", "--sub-batch", "4"]  # of a window of 100
BATCH_QOS12 = ["--min-batch", "5", "--sub-batch", "4"]  # of an in-flight window of 10
BATCH_OPTIONS = ("--min-batch", "--sub-batch")
IOT_PUBLISHERS = 1000

# ----------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Metric:
    """One row of the result table, read from the loadgen JSON at `path`."""

    key: str
    label: str
    path: tuple[str, ...]
    higher_is_better: bool
    fmt: str  # "rate", "us", "kib" or "num" (two decimals)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    loadgen_args: Callable[[argparse.Namespace], list[str]]
    metrics: tuple[Metric, ...]
    budget: Callable[[argparse.Namespace], float]  # seconds loadgen may take
    noisy_pct: float = 25.0  # other processes' CPU % that makes a measurement noisy
    #: The broker runs as fast as it can (closed loop, or connects): loadgen's CPU share
    #: is checked against the broker's ("generator-bound").  Not for the fixed-rate latency.
    throughput: bool = True
    default: bool = True  # run when --scenarios is not given


def _traffic_budget(a: argparse.Namespace) -> float:
    return float(a.warmup + a.duration + 30 + 15)  # setup limit + watchdog slack


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "fanin", "10 publishers -> 1 subscriber on a wildcard filter, QoS 0, 64-byte payloads",
        lambda a: ["--scenario", "fanin", "--publishers", "10", "--payload", "64", *BATCH_QOS0],
        (Metric("fanin", "fan-in QoS0 10->1, msg/s received", ("receive_rate",), True, "rate"),
         Metric("fanin_cpu", "fan-in QoS0: msg per broker CPU-second", ("receive_per_cpu_s",),
                True, "rate")),
        _traffic_budget,
    ),
    Scenario(
        "iot", f"{IOT_PUBLISHERS:,} publishers -> 1 subscriber on a wildcard filter, QoS 0, "
        "each with one message outstanding: every PUBLISH is its own send() (small devices)",
        lambda a: ["--scenario", "fanin", "--publishers", str(IOT_PUBLISHERS), "--payload", "64",
                   "--window", "1", "--per-write", "1"],
        (Metric("iot", f"IoT fan-in QoS0 {IOT_PUBLISHERS:,}->1, 1 msg per write, msg/s",
                ("receive_rate",), True, "rate"),),
        _traffic_budget,
    ),
    Scenario(
        "fanout", "1 publisher -> 100 subscribers on one topic, QoS 0, 64-byte payloads",
        lambda a: ["--scenario", "fanout", "--subscribers", "100", "--payload", "64",
                   *BATCH_QOS0],
        (Metric("fanout", "fan-out QoS0 1->100, deliveries/s", ("receive_rate",), True, "rate"),
         Metric("fanout_cpu", "fan-out QoS0: deliveries per broker CPU-second",
                ("receive_per_cpu_s",), True, "rate")),
        _traffic_budget,
    ),
    Scenario(
        "fanoutw", "1 publisher -> 100 subscribers on the wildcard filter <prefix>/+, QoS 0: "
        "every delivery passes Starling's delivery-time ACL check (acl_deliver_check)",
        lambda a: ["--scenario", "fanout", "--subscribers", "100", "--payload", "64",
                   "--wildcard", *BATCH_QOS0],
        (Metric("fanoutw", "fan-out QoS0 1->100 on <prefix>/+, deliveries/s", ("receive_rate",),
                True, "rate"),),
        _traffic_budget,
    ),
    Scenario(
        "qos1", "10 publisher->subscriber pairs, own topic each, QoS 1, inflight 10",
        lambda a: ["--scenario", "pairs", "--qos", "1", "--publishers", "10", "--inflight", "10",
                   *BATCH_QOS12],
        (Metric("qos1", "QoS1 10 pairs, msg/s received", ("receive_rate",), True, "rate"),),
        _traffic_budget,
    ),
    Scenario(
        "qos1p", "QoS 1 pairs as qos1, subscribers on persistent sessions (clean session 0): "
        "Starling's store keeps every message until acknowledged",
        lambda a: ["--scenario", "pairs", "--qos", "1", "--publishers", "10", "--inflight", "10",
                   "--persistent", *BATCH_QOS12],
        (Metric("qos1p", "QoS1 10 pairs, persistent subs, msg/s", ("receive_rate",), True,
                "rate"),),
        _traffic_budget,
    ),
    Scenario(
        "qos2", "10 publisher->subscriber pairs, own topic each, QoS 2, inflight 10",
        lambda a: ["--scenario", "pairs", "--qos", "2", "--publishers", "10", "--inflight", "10",
                   *BATCH_QOS12],
        (Metric("qos2", "QoS2 10 pairs, msg/s received", ("receive_rate",), True, "rate"),),
        _traffic_budget,
    ),
    Scenario(
        "idle", "open N idle connections: CONNECT->CONNACK rate and broker RSS growth",
        lambda a: ["--scenario", "idle", "--connections", str(a.idle_connections),
                   "--concurrency", str(IDLE_CONCURRENCY), "--settle", "1",
                   "--connect-timeout", str(a.idle_timeout)],
        (
            Metric("idle_rate", "idle conns: connect rate, conn/s", ("connect_rate",), True, "rate"),
            Metric("idle_rss", "idle conns: broker RSS, KiB/conn (lower=better)",
                   ("rss_per_conn_kib",), False, "kib"),
        ),
        lambda a: float(a.idle_timeout + 1 + 30),
    ),
    Scenario(
        "latency", "1 publisher -> 1 subscriber at a fixed 1,000 msg/s, QoS 0",
        lambda a: ["--scenario", "latency", "--rate", "1000"],
        (
            Metric("lat_p50", "latency @1k msg/s p50, us (lower=better)", ("latency_us", "p50"),
                   False, "us"),
            Metric("lat_p99", "latency @1k msg/s p99, us (lower=better)", ("latency_us", "p99"),
                   False, "us"),
        ),
        _traffic_budget,
        noisy_pct=10.0,  # a p99 moves with any neighbour that wakes up
        throughput=False,  # open loop at a fixed rate: both sides mostly idle
    ),
    Scenario(
        "fairness", "a heavy publisher (16 KiB QoS 0, as fast as the broker takes them) to a "
        "reading subscriber and a stuck one, beside a QoS 1 probe pair at 200 msg/s",
        lambda a: ["--scenario", "fairness", "--payload", "16384", "--rate", "200",
                   "--stuck", "1"],
        (
            Metric("fair_p50", "probe latency beside a heavy publisher p50, us (lower=better)",
                   ("latency_us", "p50"), False, "us"),
            Metric("fair_p99", "probe latency beside a heavy publisher p99, us (lower=better)",
                   ("latency_us", "p99"), False, "us"),
            Metric("fair_heavy", "heavy publisher's MiB/s to the reading subscriber",
                   ("heavy_mib_s",), True, "num"),
            Metric("fair_rss", "broker RSS growth with a stuck subscriber, MiB (lower=better)",
                   ("rss_growth_mib",), False, "num"),
        ),
        _traffic_budget,
    ),
    Scenario(
        "scale", "open --scale-connections connections, hold them --scale-hold s with "
        "keepalive traffic (60 s keepalive: a PINGREQ every 30 s each), then all send "
        "DISCONNECT at once and, once closed, all reconnect at once",
        lambda a: ["--scenario", "idle", "--connections", str(a.scale_connections),
                   "--concurrency", str(IDLE_CONCURRENCY), "--settle", str(a.scale_hold),
                   "--keepalive", "60", "--storm", "--connect-timeout", str(a.idle_timeout)],
        (
            Metric("scale_rate", "scale: connect rate, conn/s", ("connect_rate",), True, "rate"),
            Metric("scale_rss", "scale: broker RSS, KiB/conn (lower=better)",
                   ("rss_per_conn_kib",), False, "kib"),
            Metric("scale_cpu", "scale: broker CPU % holding them (lower=better)",
                   ("hold_broker_cpu_pct",), False, "num"),
            Metric("scale_drop", "scale: disconnect storm, s for all (lower=better)",
                   ("disconnect_seconds",), False, "num"),
            Metric("scale_storm", "scale: reconnect storm, s for all (lower=better)",
                   ("storm_seconds",), False, "num"),
        ),
        lambda a: float(2 * a.idle_timeout + a.scale_hold + 1 + 30),
        default=False,
    ),
)
SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}

# ----------------------------------------------------------------------------- children

_children: set[subprocess.Popen[Any]] = set()
_children_lock = threading.Lock()
_pdeathsig_prefix: list[str] | None = None


def die_with_parent_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL --`: the child gets SIGKILL if the runner dies, even by kill -9.

    setpriv (util-linux) sets PR_SET_PDEATHSIG and execs, so the pid stays the
    broker's; it replaces a preexec_fn, which is unsafe once we have threads.
    """
    global _pdeathsig_prefix
    if _pdeathsig_prefix is None:
        _pdeathsig_prefix = []
        setpriv = shutil.which("setpriv")
        if setpriv and subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"],
                                      capture_output=True, timeout=10).returncode == 0:
            _pdeathsig_prefix = [setpriv, "--pdeathsig", "KILL", "--"]
    return _pdeathsig_prefix


def spawn(args: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
    """Popen in its own session (Ctrl-C reaches only us; we stop children in order)."""
    proc: subprocess.Popen[Any] = subprocess.Popen(
        [*die_with_parent_prefix(), *args], start_new_session=True, **kw
    )
    with _children_lock:
        _children.add(proc)
    return proc


def stop_process(proc: subprocess.Popen[Any], timeout: float = BROKER_STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaps."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    finally:
        with _children_lock:
            _children.discard(proc)


def stop_all_children() -> None:
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        stop_process(proc, timeout=3.0)


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE := hard, here and so in every broker we start (inherited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_busy_pct(cpus: Sequence[int], seconds: float = 1.0) -> dict[int, float]:
    """How busy each CPU is right now (from /proc/stat), before we add any load."""

    def snapshot() -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        try:
            with open("/proc/stat", encoding="ascii") as f:
                for line in f:
                    name, *fields = line.split()
                    if name.startswith("cpu") and name[3:].isdigit():
                        v = [int(x) for x in fields[:8]]
                        out[int(name[3:])] = (sum(v), v[3] + v[4])  # total, idle+iowait
        except OSError:
            pass
        return out

    before = snapshot()
    time.sleep(seconds)
    after = snapshot()
    busy: dict[int, float] = {}
    for cpu in cpus:
        if cpu in before and cpu in after:
            total = after[cpu][0] - before[cpu][0]
            idle = after[cpu][1] - before[cpu][1]
            busy[cpu] = 100.0 * (total - idle) / total if total > 0 else 0.0
    return busy


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies summed over all CPUs, from the first line of /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return sum(v) - v[3] - v[4], sum(v)


def _proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@contextmanager
def other_cpu_meter(broker_pids: Sequence[int], box: dict[str, float]) -> Iterator[None]:
    """CPU used by everything but the broker and loadgen while the block runs.

    Sets box["other_cpu_pct"], in percent of one CPU.  A busy neighbour (a test
    suite, a compiler) shows up here and marks the measurement as noisy.
    """
    busy0, _ = _cpu_jiffies()
    broker0 = sum(_proc_cpu_seconds(pid) for pid in broker_pids)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        yield
    finally:
        wall = time.monotonic() - t0
        busy1, _ = _cpu_jiffies()
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # loadgen, reaped by now
        loadgen = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        broker = sum(_proc_cpu_seconds(pid) for pid in broker_pids) - broker0
        total = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
        if wall > 0:
            box["other_cpu_pct"] = max(0.0, 100.0 * (total - loadgen - broker) / wall)


def wait_for_quiet(cpus: Sequence[int], max_wait: float) -> bool:
    """Wait (at most `max_wait` s) until no CPU we use is busy with someone else's work."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy_pct(cpus, 0.5)
        if all(pct < QUIET_BUSY_PCT for pct in busy.values()):
            return True
        if time.monotonic() >= deadline:
            return False


def pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"not listening on port {port} after {timeout:.0f}s")


# ----------------------------------------------------------------------------- loadgen


def build_loadgen(force: bool = False, out: Path = LOADGEN_BIN) -> Path:
    """gcc -O2 loadgen.c, unless the binary is newer than the source."""
    if not force and out.exists() and out.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return out
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("run.py: gcc is needed to build the load generator")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [gcc, *CFLAGS, "-o", str(out), str(LOADGEN_SRC)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0 or res.stderr.strip():
        # Warnings count as failures: the source is meant to build clean.
        raise SystemExit(f"run.py: building loadgen failed:\n{' '.join(cmd)}\n{res.stderr}")
    return out


def run_loadgen(
    loadgen: Path, port: int, broker_pids: Sequence[int], extra: list[str], timeout: float,
    duration: float, warmup: float, cpu: int | None = LOADGEN_CPU,
    pub_ports: Sequence[int] = (), sub_ports: Sequence[int] = (),
) -> dict[str, Any]:
    """Run one measurement; the loadgen JSON, plus 'error' if it failed.  A cluster
    gives several pids (CPU summed) and the ports its publishers / subscribers use."""
    cmd = [*pin(cpu), str(loadgen), "--port", str(port),
           "--broker-pid", ",".join(str(pid) for pid in broker_pids),
           "--duration", str(duration), "--warmup", str(warmup), *extra]
    if pub_ports:
        cmd += ["--pub-ports", ",".join(str(p) for p in pub_ports)]
    if sub_ports:
        cmd += ["--sub-ports", ",".join(str(p) for p in sub_ports)]
    proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc, timeout=1.0)
        return {"ok": False, "error": f"loadgen did not finish within {timeout:.0f}s"}
    finally:
        with _children_lock:
            _children.discard(proc)
    result: dict[str, Any] = {}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            result = {}
    if proc.returncode != 0 or not result.get("ok"):
        result["ok"] = False
        result.setdefault("error", err.strip().splitlines()[-1] if err.strip()
                          else f"loadgen exit status {proc.returncode}")
    if err.strip():
        result["stderr"] = err.strip()[-2000:]
    return result


# ----------------------------------------------------------------------------- brokers


class BrokerError(Exception):
    """A broker could not be installed or started."""


@dataclass
class RunningBroker:
    name: str
    proc: subprocess.Popen[Any]
    port: int
    log_path: Path
    log_tail: list[str] = field(default_factory=list)
    #: A cluster: its other processes (nodes, nats-server), stopped after `proc`.
    others: list[subprocess.Popen[Any]] = field(default_factory=list)
    #: Every process whose CPU counts as the broker's (default: `proc`).
    cpu_pids: list[int] = field(default_factory=list)
    #: Where publishers / subscribers connect, in turn (default: `port`).
    pub_ports: list[int] = field(default_factory=list)
    sub_ports: list[int] = field(default_factory=list)
    #: Sockets held open for the run (a subscriber that gives a node a route).
    holds: list[socket.socket] = field(default_factory=list)

    @property
    def pid(self) -> int:
        # setpriv and `taskset -c N cmd` exec what follows, so the pid is the broker's own.
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        return self.cpu_pids or [self.proc.pid]

    def alive(self) -> bool:
        return self.proc.poll() is None and all(p.poll() is None for p in self.others)

    def stop(self) -> None:
        for sock in self.holds:
            sock.close()
        stop_process(self.proc)
        for other in self.others:
            stop_process(other)


class Broker:
    name = "?"

    def available(self) -> str | None:
        """None if the broker can be run here, else why not."""
        return None

    def version(self) -> str:
        return "?"

    def start(self, workdir: Path) -> RunningBroker:
        raise NotImplementedError

    @contextmanager
    def running(self, workdir: Path) -> Iterator[RunningBroker]:
        broker = self.start(workdir)
        try:
            yield broker
        finally:
            broker.stop()


def _drain(stream: Any, log_path: Path, tail: list[str],
           on_line: Callable[[str], None] | None = None) -> None:
    """Copy a child's output to its log file so the pipe never fills up."""
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        for line in stream:
            log.write(line)
            tail.append(line.rstrip("\n"))
            del tail[:-40]
            if on_line is not None:
                on_line(line)
    stream.close()


class Mosquitto(Broker):
    """Debian's Mosquitto, with `set_tcp_nodelay true` as Starling has it (uvloop sets
    TCP_NODELAY on every socket) unless `nagle`: then Mosquitto's small writes (a PUBACK)
    wait for the peer's ACK of the previous one, and a client that sends again only
    after several PUBACKs waits for its own delayed ACK (40 ms) each time."""

    name = "mosquitto"

    def __init__(self, nagle: bool = False) -> None:
        self.nagle = nagle
        self.name = "mosquitto-nagle" if nagle else "mosquitto"

    def _binary(self) -> str | None:
        return shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)),
            None)

    def available(self) -> str | None:
        return None if self._binary() else "mosquitto is not installed (apt-get install mosquitto)"

    def version(self) -> str:
        binary = self._binary()
        if not binary:
            return "?"
        res = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
        match = re.search(r"mosquitto version (\S+)", res.stdout + res.stderr)
        return match.group(1) if match else "?"

    def start(self, workdir: Path) -> RunningBroker:
        binary = self._binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed")
        port = free_port()
        log_path = workdir / "mosquitto.log"
        conf = workdir / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "max_queued_messages 100000",
            *([] if self.nagle else ["set_tcp_nodelay true"]),
            f"log_dest file {log_path}",
            # Same verbosity as Starling's log.level=warning: no line per connection.
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would switch to user "mosquitto", who cannot write
            # the log into our private temp dir.
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        proc = spawn([*pin(BROKER_CPU), binary, "-c", str(conf)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        broker = RunningBroker(self.name, proc, port, log_path)
        try:
            wait_port(port, proc, BROKER_START_TIMEOUT)
        except BrokerError:
            stop_process(proc)
            raise
        return broker


class Starling(Broker):
    """`python -m starling start` from the repo root, or from a commit (`ref`).

    With a ref, the `starling` package of that commit is exported (git archive)
    into the run's temp dir and started from there, so edits made to the working
    tree while the benchmark runs cannot change or break the broker under test.
    """

    name = "starling"
    LISTENER = re.compile(r"listener mqtt:tcp:default on ([0-9.]+):(\d+)")

    def __init__(self, ref: str | None = None, name: str = "starling",
                 settings: Sequence[str] = (), compiled: bool = False,
                 pinned: bool = True) -> None:
        self.ref = ref
        self.root = REPO_ROOT
        self.name = name
        #: Build the hot path (mypyc, setup.py) in the exported tree.
        self.compiled = compiled
        #: Extra `--set KEY=VALUE` settings: the store variants below.
        self.settings = list(settings)
        #: On BROKER_CPU (a lone node); a cluster's nodes float over the CPUs.
        self.pinned = pinned

    def _git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, timeout=60)

    def available(self) -> str | None:
        if self.ref is None:
            if not (REPO_ROOT / "starling" / "__main__.py").exists():
                return "starling/__main__.py does not exist yet (`python -m starling start` fails)"
            return None
        if self._git("cat-file", "-e", f"{self.ref}:starling/__main__.py").returncode != 0:
            return f"{self.ref}:starling/__main__.py does not exist"
        return None

    def export(self, dest: Path) -> None:
        """Unpack the `starling` package of `ref` under `dest` and run from there;
        with `compiled`, build its hot path in place there first."""
        if self.ref is None:
            return
        if (dest / "starling").is_dir():  # another variant of the same ref exported it
            self.root = dest
            return
        files = ["starling", "setup.py", "pyproject.toml"] if self.compiled else ["starling"]
        res = self._git("archive", "--format=tar", self.ref, "--", *files)
        if res.returncode != 0:
            raise BrokerError(f"git archive {self.ref} failed: {res.stderr.decode(errors='replace')}")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(dest)
        self.root = dest
        if self.compiled:
            print(f"run.py: compiling the hot path of {self.ref} (mypyc) ...", file=sys.stderr)
            build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                                   cwd=dest, capture_output=True, text=True, timeout=1800)
            if build.returncode != 0:
                raise BrokerError(f"building the hot path failed:\n{build.stderr[-2000:]}")

    def hot_path(self) -> str:
        """Which hot path the node will run (starling/compiled.py), or '?'."""
        res = subprocess.run([sys.executable, "-c", "import starling.compiled as c; "
                              "print(c.describe())"], cwd=self.root, capture_output=True,
                             text=True, timeout=60)
        return res.stdout.strip() or "?"

    def version(self) -> str:
        if self.ref is not None:
            out = self._git("rev-parse", "--short", self.ref).stdout.decode().strip()
            return f"{out} ({self.ref}), hot path {self.hot_path()}"
        out = self._git("describe", "--always", "--dirty").stdout.decode().strip()
        return f"{out or 'uncommitted'} (working tree), hot path {self.hot_path()}"

    def start(self, workdir: Path, node: str = "starling", extra: Sequence[str] = (),
              ) -> RunningBroker:
        data_dir = workdir / f"{node}-data"
        data_dir.mkdir(exist_ok=True)
        cmd = [*pin(BROKER_CPU if self.pinned else None), sys.executable, "-m", "starling",
               "start", "--node-name", f"{node}@127.0.0.1",
               "--data-dir", str(data_dir),
               "--set", "listeners.tcp.default.bind=127.0.0.1:0",
               "--set", "listeners.tcp.internal.bind=off", "--set", "listeners.ws.default.bind=off",
               "--set", "management.bind=off",
               "--set", "dashboard.bind=off",
               "--set", "log.level=warning"]
        for setting in [*self.settings, *extra]:
            cmd += ["--set", setting]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = spawn(cmd, cwd=self.root, env=env, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)
        log_path = workdir / f"{node}.log"
        port_box: list[int] = []
        started = threading.Event()

        def on_line(line: str) -> None:
            match = self.LISTENER.search(line)
            if match:
                port_box.append(int(match.group(2)))
            if "node started" in line:
                started.set()

        broker = RunningBroker(self.name, proc, 0, log_path)
        reader = threading.Thread(target=_drain, args=(proc.stderr, log_path, broker.log_tail, on_line),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + BROKER_START_TIMEOUT
        while not started.is_set() and proc.poll() is None and time.monotonic() < deadline:
            started.wait(0.1)
        if not started.is_set() or not port_box:
            stop_process(proc)
            reader.join(2)
            why = (f"exited with status {proc.returncode}" if proc.returncode is not None
                   else "no 'node started' line" if not started.is_set()
                   else "no 'listener mqtt:tcp:default on ...' line")
            tail = "\n    ".join(broker.log_tail[-15:])
            raise BrokerError(f"did not start ({why}); last output:\n    {tail}")
        broker.port = port_box[-1]
        return broker


class StarlingRules(Starling):
    """Starling with `RULES` rule-engine rules that match every message (FROM "#", a
    WHERE that holds, three selected fields, the do-nothing action), created through the REST API
    once the node is up: `starling/starling-rules` in the fan-in row is the cost of
    running rules on the publish path."""

    RULES = 10
    SECRET = "bench-secret"
    MANAGEMENT = re.compile(r"listener http:management on ([0-9.]+):(\d+)")

    def __init__(self, ref: str | None = None, compiled: bool = False) -> None:
        super().__init__(ref, "starling-rules", [
            "management.bind=127.0.0.1:0", "api.default_app_id=bench",
            f"api.default_app_secret={self.SECRET}"], compiled)

    def start(self, workdir: Path, node: str = "starling", extra: Sequence[str] = (),
              ) -> RunningBroker:
        broker = super().start(workdir, node, extra)
        try:
            match = next(m for line in broker.log_tail if (m := self.MANAGEMENT.search(line)))
            base = f"http://{match.group(1)}:{match.group(2)}/api/v3"
            auth = "Basic " + base64.b64encode(f"bench:{self.SECRET}".encode()).decode()
            for i in range(self.RULES):
                body = json.dumps({
                    "name": f"bench{i}",
                    # Ten different statements (no two rules share work).
                    "rawsql": f'SELECT payload, topic, clientid() as c{i} FROM "#" '
                              f"WHERE qos < {i + 3}",
                    "actions": [{"name": "built_in:do_nothing_action", "params": {}}]}).encode()
                req = urllib.request.Request(f"{base}/rules", body, method="POST", headers={
                    "authorization": auth, "content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as resp:
                    if json.load(resp).get("code") != 0:
                        raise BrokerError(f"rule {i} not created")
        except (StopIteration, OSError, ValueError) as exc:
            stop_process(broker.proc)
            raise BrokerError(f"could not create the rules: {exc!r}") from exc
        return broker


def nats_server_binary() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.path.exists(p)), None)


def hold_subscription(port: int, topic_filter: str) -> socket.socket:
    """A raw MQTT 3.1.1 client subscribed to `topic_filter`, kept open: it gives the
    node a route (an open socket the caller closes)."""
    def packet(kind: int, body: bytes) -> bytes:
        size, out = len(body), bytearray([kind])
        while True:
            byte, size = size % 128, size // 128
            out.append(byte | (128 if size else 0))
            if not size:
                return bytes(out) + body
    client_id = f"bench-route-{os.getpid()}-{port}".encode()
    connect = (b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big")
               + client_id)
    topic = topic_filter.encode()
    subscribe = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x00"
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(packet(0x10, connect))
    sock.recv(4)  # CONNACK
    sock.sendall(packet(0x82, subscribe))
    sock.recv(5)  # SUBACK
    return sock


class StarlingCluster(Starling):
    """Two Starling nodes, A and B, joined through a local `nats-server -js`, not
    pinned (the nodes and NATS share the CPUs with loadgen; for ``local`` A is on
    the broker CPU, as a lone node is).  `layout`:

    - ``cross``: every publisher on A, every subscriber on B: all traffic crosses;
    - ``local``: every client on A, while B holds a subscription of its own (A knows a
      remote route, no message matches it): the cost of being in a cluster;
    - ``spread``: publishers and subscribers alternate between A and B (the first
      subscriber on B, the first publisher on A): about half the traffic crosses.

    The broker CPU is A's and B's and NATS's (only A's for ``local``)."""

    def __init__(self, ref: str | None, name: str, layout: str) -> None:
        super().__init__(ref, name, ["log.level=warning"], pinned=False)
        self.layout = layout

    def available(self) -> str | None:
        if nats_server_binary() is None:
            return "nats-server is not installed (apt-get install nats-server)"
        return super().available()

    def start(self, workdir: Path, node: str = "a", extra: Sequence[str] = ()) -> RunningBroker:
        binary = nats_server_binary()
        assert binary is not None
        nats_port = free_port()
        nats = spawn([binary, "-js", "-a", "127.0.0.1", "-p", str(nats_port),
                      "-sd", str(workdir / "nats")], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        started: list[RunningBroker] = []
        try:
            wait_port(nats_port, nats, BROKER_START_TIMEOUT)
            join = ["cluster.discovery=nats", f"cluster.nats.servers=nats://127.0.0.1:{nats_port}",
                    "cluster.name=bench"]
            for name in ("a", "b"):
                # local: A alone works, pinned like a lone node, for a fair comparison.
                self.pinned = self.layout == "local" and name == "a"
                started.append(super().start(workdir, name, join))
            a, b = started
            holds: list[socket.socket] = []
            if self.layout == "local":
                holds.append(hold_subscription(b.port, "elsewhere/#"))
            time.sleep(1.0)  # routes announced and known
        except BaseException:
            for broker in started:
                broker.stop()
            stop_process(nats)
            raise
        a.others = [b.proc, nats]
        a.holds = holds
        if self.layout == "local":
            a.cpu_pids = [a.proc.pid]
        else:
            a.cpu_pids = [a.proc.pid, b.proc.pid, nats.pid]
        if self.layout == "cross":
            a.pub_ports, a.sub_ports = [a.port], [b.port]
        elif self.layout == "spread":
            a.pub_ports, a.sub_ports = [a.port, b.port], [b.port, a.port]
        return a


class StarlingWorkers(Starling):
    """`starling start --workers 2`: two nodes sharing one port (SO_REUSEPORT spreads
    the connections), with the nats-server the command starts.  Not pinned.  The
    broker CPU is the supervisor's children: both workers and nats-server."""

    def __init__(self, ref: str | None) -> None:
        super().__init__(ref, "starling-workers2", ["log.level=warning"], pinned=False)

    def available(self) -> str | None:
        if nats_server_binary() is None:
            return "nats-server is not installed (apt-get install nats-server)"
        return super().available()

    def start(self, workdir: Path, node: str = "starling", extra: Sequence[str] = (),
              ) -> RunningBroker:
        data_dir = workdir / "workers-data"
        data_dir.mkdir(exist_ok=True)
        port = free_port()
        cmd = [sys.executable, "-m", "starling", "start", "--workers", "2",
               "--data-dir", str(data_dir),
               "--set", f"listeners.tcp.default.bind=127.0.0.1:{port}",
               "--set", "listeners.tcp.internal.bind=off", "--set", "listeners.ws.default.bind=off",
               "--set", "management.bind=off", "--set", "dashboard.bind=off",
               *(arg for setting in self.settings for arg in ("--set", setting))]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = spawn(cmd, cwd=self.root, env=env, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)
        log_path = workdir / "workers.log"
        broker = RunningBroker(self.name, proc, port, log_path)
        started = threading.Semaphore(0)

        def on_line(line: str) -> None:
            if "node started" in line:
                started.release()

        threading.Thread(target=_drain, args=(proc.stderr, log_path, broker.log_tail, on_line),
                         daemon=True).start()
        deadline = time.monotonic() + BROKER_START_TIMEOUT
        for _ in range(2):
            if not started.acquire(timeout=max(0.1, deadline - time.monotonic())):
                stop_process(proc)
                tail = "\n    ".join(broker.log_tail[-15:])
                raise BrokerError(f"workers did not start; last output:\n    {tail}")
        time.sleep(1.0)  # the workers know each other
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        broker.cpu_pids = [int(pid) for pid in children]
        return broker


AMQTT_WRAPPER = '''\
"""amqtt's own CLI logs every connection at INFO; run it at WARNING like the others."""
import asyncio, json, logging, signal, sys

from amqtt.broker import Broker

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


async def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


asyncio.run(main())
'''


class Amqtt(Broker):
    name = "amqtt"

    @property
    def python(self) -> Path:
        return AMQTT_VENV / "bin" / "python"

    def ensure_installed(self) -> None:
        """Create benchmarks/.venv-amqtt and pip install amqtt into it, once."""
        if self.python.exists() and subprocess.run(
                [str(self.python), "-c", "import amqtt.broker"], capture_output=True,
                timeout=60).returncode == 0:
            return
        print(f"run.py: installing {AMQTT_REQUIREMENT} into {AMQTT_VENV} ...", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(AMQTT_VENV)], check=True,
                           capture_output=True, timeout=300)
            res = subprocess.run([str(self.python), "-m", "pip", "install", "-q", AMQTT_REQUIREMENT],
                                 capture_output=True, text=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            raise BrokerError(f"could not create {AMQTT_VENV}: {exc}") from exc
        if res.returncode != 0:
            raise BrokerError(f"pip install {AMQTT_REQUIREMENT} failed:\n{res.stderr[-2000:]}")

    def available(self) -> str | None:
        try:
            self.ensure_installed()
        except BrokerError as exc:
            return str(exc)
        return None

    def version(self) -> str:
        res = subprocess.run([str(self.python), "-c", "import amqtt; print(amqtt.__version__)"],
                             capture_output=True, text=True, timeout=60)
        return res.stdout.strip() or "?"

    def start(self, workdir: Path) -> RunningBroker:
        port = free_port()
        conf = workdir / "amqtt.json"
        conf.write_text(json.dumps({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            # Only anonymous auth: no $SYS publisher, no packet/event logging plugins.
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }))
        wrapper = workdir / "amqtt_broker.py"
        wrapper.write_text(AMQTT_WRAPPER)
        log_path = workdir / "amqtt.log"
        proc = spawn([*pin(BROKER_CPU), str(self.python), str(wrapper), str(conf)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        broker = RunningBroker(self.name, proc, port, log_path)
        threading.Thread(target=_drain, args=(proc.stderr, log_path, broker.log_tail),
                         daemon=True).start()
        try:
            wait_port(port, proc, BROKER_START_TIMEOUT)
        except BrokerError as exc:
            stop_process(proc)
            raise BrokerError(f"{exc}; last output:\n    " + "\n    ".join(broker.log_tail[-15:])) from exc
        return broker


BROKERS: dict[str, Callable[[argparse.Namespace], Broker]] = {
    "starling": lambda a: Starling(a.starling_ref, compiled=a.compiled),
    # The store's modes, for the cost of durability (docs/durability.md):
    # "starling" is the default, durable; these two trade it away.
    "starling-relaxed": lambda a: Starling(a.starling_ref, "starling-relaxed",
                                           ["store.durability=relaxed"], a.compiled),
    "starling-memory": lambda a: Starling(a.starling_ref, "starling-memory",
                                          ["store.backend=memory"], a.compiled),
    # The delivery-time ACL check's cost (on by default): the same node without it.
    "starling-nodeliver": lambda a: Starling(a.starling_ref, "starling-nodeliver",
                                             ["acl_deliver_check=false"], a.compiled),
    # The rule engine's cost: 10 rules matching every message.
    "starling-rules": lambda a: StarlingRules(a.starling_ref, a.compiled),
    # Starling at another commit (--base-ref, default main): before/after a change in
    # one interleaved run (the `starling/starling-base` column is the ratio).
    "starling-base": lambda a: Starling(a.base_ref, "starling-base", compiled=a.compiled),
    # Clusters (docs/cluster.md): two nodes and NATS on this machine.
    "starling-cross": lambda a: StarlingCluster(a.starling_ref, "starling-cross", "cross"),
    "starling-local": lambda a: StarlingCluster(a.starling_ref, "starling-local", "local"),
    "starling-spread": lambda a: StarlingCluster(a.starling_ref, "starling-spread", "spread"),
    "starling-workers2": lambda a: StarlingWorkers(a.starling_ref),
    "mosquitto": lambda a: Mosquitto(),
    # Mosquitto's own default: Nagle's algorithm on (see Mosquitto's docstring).
    "mosquitto-nagle": lambda a: Mosquitto(nagle=True),
    "amqtt": lambda a: Amqtt(),
}

# ----------------------------------------------------------------------------- results


def dig(obj: Any, path: Sequence[str]) -> float | None:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return float(obj) if isinstance(obj, int | float) else None


def fmt_value(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "us":
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def render_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ) + " |"

    sep = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def summarize(
    scenarios: list[Scenario], brokers: list[str], results: dict[str, dict[str, list[dict[str, Any]]]],
) -> tuple[dict[str, Any], str, str]:
    """Medians and ratios as JSON, the main table and the diagnostics table."""
    others = [b for b in brokers if b != "starling"] if "starling" in brokers else []
    header = ["scenario", *brokers, *(f"starling/{o}" for o in others)]
    rows: list[list[str]] = []
    summary: dict[str, Any] = {}
    for sc in scenarios:
        for metric in sc.metrics:
            medians: dict[str, float | None] = {}
            only_noisy: set[str] = set()
            generator_bound: set[str] = set()
            for b in brokers:
                ok = [r for r in results.get(b, {}).get(sc.name, []) if r.get("ok")]
                # Disturbed runs count only when there is nothing better.
                clean = [r for r in ok if not r.get("noisy")]
                if ok and not clean:
                    only_noisy.add(b)
                used = clean or ok
                values = [v for r in used if (v := dig(r, metric.path)) is not None]
                medians[b] = statistics.median(values) if values else None
                if metric.fmt == "rate" and used and \
                        2 * sum(1 for r in used if r.get("generator_bound")) > len(used):
                    generator_bound.add(b)
            ratios: dict[str, float | None] = {}
            for o in others:
                s, m = medians.get("starling"), medians.get(o)
                ratios[f"starling/{o}"] = s / m if s is not None and m else None
            summary[metric.key] = {"label": metric.label, "higher_is_better": metric.higher_is_better,
                                   "median": medians, "ratios": ratios,
                                   "only_noisy_runs": sorted(only_noisy),
                                   "generator_bound": sorted(generator_bound)}
            rows.append([metric.label,
                         *(fmt_value(medians[b], metric.fmt) + ("*" if b in only_noisy else "")
                           + ("!" if b in generator_bound else "") for b in brokers),
                         *(f"{r:.3f}x" if r is not None else "n/a" for r in ratios.values())])
    table = render_table(header, rows)
    if any(v["only_noisy_runs"] for v in summary.values()):
        table += ("\n* every run of this one was disturbed by other processes (see 'other CPU %')"
                  "; the median is of those")
    if any(v["generator_bound"] for v in summary.values()):
        table += (f"\n! generator-bound: loadgen used >= {GENERATOR_BOUND_SHARE:.0%} of the "
                  "broker's CPU in most runs (see 'loadgen/broker CPU'): a faster generator "
                  "might get more out of this broker")

    # Diagnostics: who was busy, and did anything go wrong.
    dheader = ["broker", "scenario", "ok runs", "noisy (left out)", "broker CPU %", "loadgen CPU % (user)",
               "loadgen/broker CPU", "CPU us/msg broker (loadgen)", "syscalls/msg broker r+w",
               "loadgen send+recv+wait", "other CPU %", "lost", "reordered", "errors"]
    drows: list[list[str]] = []
    for b in brokers:
        for sc in scenarios:
            runs = results.get(b, {}).get(sc.name, [])
            if not runs:
                continue
            ok = [r for r in runs if r.get("ok")]
            # The same runs the table's medians come from: clean ones if there are any.
            used = [r for r in ok if not r.get("noisy")] or ok

            def med(key: str, used: list[dict[str, Any]] = used, digits: int = 0) -> str:
                vals = [float(r[key]) for r in used if isinstance(r.get(key), int | float)]
                return f"{statistics.median(vals):.{digits}f}" if vals else "n/a"

            def syscalls(key: str, fields: tuple[str, ...],
                         used: list[dict[str, Any]] = used) -> str:
                vals = [sum(float(r[key].get(f, 0)) for f in fields) for r in used
                        if isinstance(r.get(key), dict)]
                return f"{statistics.median(vals):.2f}" if vals else "n/a"

            share = med("generator_share", digits=2)
            if any(r.get("generator_bound") for r in used):
                share += " !"

            lost = sum(int(r.get("lost", 0)) + int(r.get("timed_out", 0)) for r in runs)
            reordered = sum(int(r.get("reordered", 0)) for r in runs)
            noisy = sum(1 for r in runs if r.get("noisy"))
            errors = "; ".join(sorted({str(r.get("error")) for r in runs if not r.get("ok")}))
            drows.append([b, sc.name, f"{len(ok)}/{len(runs)}", str(noisy), med("broker_cpu_pct"),
                          f"{med('loadgen_cpu_pct')} ({med('loadgen_user_cpu_pct')})", share,
                          f"{med('broker_cpu_us_per_msg', digits=2)} "
                          f"({med('loadgen_cpu_us_per_msg', digits=2)})",
                          syscalls("broker_syscalls_per_msg", ("read", "write")),
                          syscalls("loadgen_syscalls_per_msg", ("send", "recv", "epoll_wait")),
                          med("other_cpu_pct"), str(lost), str(reordered),
                          errors[:100] or "-"])
    diag = render_table(dheader, drows) if drows else ""
    return summary, table, diag


def mark_generator_bound(res: dict[str, Any], sc: Scenario) -> None:
    """loadgen's CPU as a share of the broker's over the measured window, and whether
    that makes the figure generator-bound (`GENERATOR_BOUND_SHARE`)."""
    lg, br = res.get("loadgen_cpu_pct"), res.get("broker_cpu_pct")
    if not isinstance(lg, int | float) or not isinstance(br, int | float) or br <= 0:
        return
    res["generator_share"] = round(lg / br, 3)
    res["generator_bound"] = sc.throughput and lg / br >= GENERATOR_BOUND_SHARE
    received, seconds = res.get("received"), res.get("measured_s")
    if isinstance(received, int) and received > 0 and isinstance(seconds, int | float):
        res["broker_cpu_us_per_msg"] = round(br / 100 * seconds * 1e6 / received, 2)
        res["loadgen_cpu_us_per_msg"] = round(lg / 100 * seconds * 1e6 / received, 2)


@dataclass(frozen=True)
class Target:
    """One of the performance issue's targets (#22): `metric`'s starling/`other` ratio
    (or, with `other` None, Starling's own figure) against `bound`."""

    text: str
    metric: str
    other: str | None
    bound: float
    at_least: bool  # the figure must be >= bound (else <=)


TARGETS: tuple[Target, ...] = (
    Target("fan-in >= 0.8x Mosquitto", "fanin", "mosquitto", 0.8, True),
    Target("QoS 1 >= 0.9x Mosquitto", "qos1", "mosquitto", 0.9, True),
    Target("QoS 2 >= 1.0x Mosquitto", "qos2", "mosquitto", 1.0, True),
    Target("fan-out >= 2.5x Mosquitto", "fanout", "mosquitto", 2.5, True),
    Target("p99 at 1,000 msg/s <= 1.5x Mosquitto's", "lat_p99", "mosquitto", 1.5, False),
    Target("<= 1.5 KiB per idle connection", "idle_rss", None, 1.5, False),
    Target("durable QoS 1 to persistent sessions >= 0.6x the memory store", "qos1p",
           "starling-memory", 0.6, True),
)
#: The scenarios `--targets` runs each broker in (the variants only where a target needs them).
TARGET_BROKERS = {"starling": None, "mosquitto": None, "starling-memory": {"qos1p"}}


def render_targets(summary: dict[str, Any]) -> str:
    """Each target with its figure from this run, and whether it is met."""
    rows: list[list[str]] = []
    for t in TARGETS:
        entry = summary.get(t.metric)
        figure: float | None = None
        if entry is not None:
            figure = (entry["ratios"].get(f"starling/{t.other}") if t.other
                      else entry["median"].get("starling"))
        if entry is None or figure is None:
            rows.append([t.text, "not measured", "-"])
            continue
        met = figure >= t.bound if t.at_least else figure <= t.bound
        text = f"{figure:.3f}x" if t.other else f"{figure:.2f}"
        notes = [f"{b} generator-bound" for b in entry["generator_bound"]
                 if b in ("starling", t.other)]
        notes += [f"{b} only disturbed runs" for b in entry["only_noisy_runs"]
                  if b in ("starling", t.other)]
        rows.append([t.text, text + (f" ({'; '.join(notes)})" if notes else ""),
                     "yes" if met else "NO"])
    return render_table(["target (issue #22)", "figure", "met"], rows)


# ----------------------------------------------------------------------------- main


def measure(broker: Broker, sc: Scenario, args: argparse.Namespace, loadgen: Path,
            workdir: Path) -> dict[str, Any]:
    """One measurement on a fresh broker, repeated if another process disturbed it.

    Returns the first clean attempt, or, if every attempt was noisy, the least
    disturbed one (marked "noisy").  A failed attempt is returned as it is:
    retrying must not hide a broker that fails under load.
    """
    attempts: list[dict[str, Any]] = []
    for attempt in range(args.noise_retries + 1):
        quiet = args.quiet_wait <= 0 or wait_for_quiet([BROKER_CPU, LOADGEN_CPU], args.quiet_wait)
        with broker.running(workdir) as rb:
            box: dict[str, float] = {}
            extra = sc.loadgen_args(args)
            if args.plain_generator:
                extra = [a for i, a in enumerate(extra) if a not in BATCH_OPTIONS
                         and (i == 0 or extra[i - 1] not in BATCH_OPTIONS)]
            with other_cpu_meter(rb.pids, box):
                res = run_loadgen(loadgen, rb.port, rb.pids, extra,
                                  sc.budget(args), args.duration, args.warmup,
                                  pub_ports=rb.pub_ports, sub_ports=rb.sub_ports)
            res.update(box)
            cpu = res.get("broker_cpu_pct")
            if res.get("receive_rate") and cpu:
                # What one broker CPU-second carries: comparable across process counts.
                res["receive_per_cpu_s"] = 100.0 * float(res["receive_rate"]) / float(cpu)
            if not rb.alive():
                res["ok"] = False
                res["error"] = f"broker died (status {rb.proc.returncode})"
        res["attempt"] = attempt + 1
        res["noisy"] = not quiet or box.get("other_cpu_pct", 0.0) > sc.noisy_pct
        mark_generator_bound(res, sc)
        if not res["noisy"] or not res.get("ok"):
            return res
        attempts.append(res)
        print(f"run.py:   other processes used {box.get('other_cpu_pct', 0):.0f}% CPU meanwhile; "
              + ("measuring again" if attempt < args.noise_retries else "keeping the least noisy"),
              file=sys.stderr)
    return min(attempts, key=lambda r: float(r.get("other_cpu_pct", 0.0)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark Starling side by side with Mosquitto (and amqtt).",
        epilog="scenarios: " + "; ".join(f"{s.name}: {s.description}" for s in SCENARIOS))
    p.add_argument("--brokers", default="starling,mosquitto",
                   help="comma-separated, from starling,mosquitto,amqtt (default: %(default)s)")
    p.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS if s.default),
                   help="comma-separated (default: %(default)s; also: "
                   + ",".join(s.name for s in SCENARIOS if not s.default) + ")")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 5, quick 1)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before it (default 1, quick 0.3)")
    p.add_argument("--runs", type=int, help="runs per scenario and broker; the median is reported "
                   "(default 1)")
    p.add_argument("--idle-connections", type=int,
                   help="connections in the idle scenario (default 10000, quick 1000)")
    p.add_argument("--scale-connections", type=int, default=19000,
                   help="connections in the scale scenario (default %(default)s)")
    p.add_argument("--scale-hold", type=float, default=300.0,
                   help="seconds the scale scenario holds them (default %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=180.0,
                   help="limit for opening all idle connections, seconds (default %(default)s)")
    p.add_argument("--quiet-wait", type=float, default=60.0,
                   help="before each measurement wait up to this many seconds for CPUs "
                   f"{BROKER_CPU},{LOADGEN_CPU} to be <{QUIET_BUSY_PCT:.0f}%% busy; 0 = don't "
                   "(default %(default)s)")
    p.add_argument("--noise-retries", type=int, default=2,
                   help="measure again (up to N times) when other processes used more than "
                   "25%% CPU meanwhile (10%% for latency) (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 s measurements, 0.3 s warm-up, 1,000 idle connections")
    p.add_argument("--starling-ref", metavar="REF",
                   help="benchmark Starling as committed at REF (e.g. HEAD), exported to the "
                   "temp dir, instead of the live working tree")
    p.add_argument("--targets", action="store_true",
                   help="the performance issue's side-by-side run: brokers "
                   + ",".join(TARGET_BROKERS) + " (starling-memory in qos1p only), every "
                   "default scenario, 3 runs unless --runs; the targets table at the end")
    p.add_argument("--compiled", action="store_true",
                   help="with --starling-ref: compile the exported tree's hot path (mypyc, "
                   "setup.py build_ext --inplace; needs gcc and mypy) before running it")
    p.add_argument("--plain-generator", action="store_true",
                   help="no --min-batch/--sub-batch: loadgen answers every packet as it comes "
                   "(the generator before issue #22, to compare)")
    p.add_argument("--base-ref", metavar="REF", default="main",
                   help="the commit the starling-base broker runs (default %(default)s)")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write all results as JSON")
    p.add_argument("--from-json", metavar="FILE", type=Path,
                   help="measure nothing: print the tables of a run saved with --json")
    p.add_argument("--keep-temp", action="store_true", help="keep broker configs and logs")
    p.add_argument("--rebuild", action="store_true", help="rebuild loadgen even if up to date")
    a = p.parse_args(argv)
    a.duration = a.duration if a.duration is not None else (1.0 if a.quick else 5.0)
    a.warmup = a.warmup if a.warmup is not None else (0.3 if a.quick else 1.0)
    if a.targets:
        a.brokers = ",".join(TARGET_BROKERS)
        a.compiled = a.compiled or a.starling_ref is not None
    if a.compiled and a.starling_ref is None:
        p.error("--compiled needs --starling-ref (the live tree runs as it is built)")
    a.runs = a.runs if a.runs is not None else (3 if a.targets else 1)
    a.idle_connections = a.idle_connections or (1000 if a.quick else 10000)
    if a.duration <= 0 or a.warmup < 0 or a.runs < 1 or a.idle_connections < 1:
        p.error("--duration, --runs and --idle-connections must be positive, --warmup >= 0")
    a.broker_names = [b.strip() for b in a.brokers.split(",") if b.strip()]
    a.scenario_names = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    for b in a.broker_names:
        if b not in BROKERS:
            p.error(f"unknown broker {b!r}; choose from {','.join(BROKERS)}")
    for s in a.scenario_names:
        if s not in SCENARIO_BY_NAME:
            p.error(f"unknown scenario {s!r}; choose from {','.join(SCENARIO_BY_NAME)}")
    if len(set(a.broker_names)) != len(a.broker_names) or not a.broker_names:
        p.error("--brokers: give each broker once")
    return a


def print_tables(scenarios: list[Scenario], brokers: list[str],
                 results: dict[str, dict[str, list[dict[str, Any]]]], heading: str) -> dict[str, Any]:
    summary, table, diag = summarize(scenarios, brokers, results)
    print()
    print(heading)
    print(table)
    if diag:
        print()
        print(diag)
    if "starling" in brokers and any(t.other is None or t.other in brokers
                                     for t in TARGETS if t.metric in summary):
        print()
        print(render_targets(summary))
    return summary


def reprint(path: Path) -> int:
    """--from-json: the tables of an earlier run."""
    doc = json.loads(path.read_text())
    meta = doc["meta"]
    scenarios = [SCENARIO_BY_NAME[n] for n in doc["scenarios"] if n in SCENARIO_BY_NAME]
    brokers = list(doc["results"])
    for per_broker in doc["results"].values():  # runs saved before the generator check
        for name, runs in per_broker.items():
            if name in SCENARIO_BY_NAME:
                for res in runs:
                    mark_generator_bound(res, SCENARIO_BY_NAME[name])
    print_tables(scenarios, brokers, doc["results"],
                 f"{meta['started']}: duration {meta['duration']:g}s after {meta['warmup']:g}s "
                 f"warm-up, median of {meta['runs']} run(s); versions: "
                 + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return reprint(args.from_json)
    # Interruptible even when started with SIGINT ignored (e.g. as a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    nofile = raise_nofile_limit()
    if "idle" in args.scenario_names and nofile < args.idle_connections + 100:
        print(f"run.py: warning: open-file limit {nofile} is below {args.idle_connections} "
              "idle connections; lower --idle-connections or raise the hard limit", file=sys.stderr)
    if "scale" in args.scenario_names and nofile < args.scale_connections + 100:
        print(f"run.py: warning: open-file limit {nofile} is below {args.scale_connections} "
              "connections; lower --scale-connections or raise the hard limit", file=sys.stderr)
    global BROKER_CPU, LOADGEN_CPU
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        BROKER_CPU, LOADGEN_CPU = cpus[0], cpus[1]
    else:
        print("run.py: warning: fewer than 2 CPUs; broker and loadgen share one", file=sys.stderr)
    if not shutil.which("taskset"):
        print("run.py: warning: taskset not found; processes are not pinned", file=sys.stderr)

    loadgen = build_loadgen(force=args.rebuild)
    # Anything else running on these CPUs skews every figure: say so up front.
    idle_check = cpu_busy_pct([BROKER_CPU, LOADGEN_CPU])
    busy = {cpu: pct for cpu, pct in idle_check.items() if pct > 10.0}
    if busy:
        print("run.py: warning: the machine is not idle before starting ("
              + ", ".join(f"CPU {c} {p:.0f}% busy" for c, p in busy.items())
              + "); results will be skewed", file=sys.stderr)
    scenarios = [SCENARIO_BY_NAME[n] for n in args.scenario_names]
    brokers: dict[str, Broker] = {}
    unavailable: dict[str, str] = {}
    versions: dict[str, str] = {}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {b: {} for b in args.broker_names}
    interrupted = False
    start_failures: list[str] = []
    started_at = time.time()
    workroot = Path(tempfile.mkdtemp(prefix="starling-bench-"))
    try:
        for name in args.broker_names:
            broker = BROKERS[name](args)
            why = broker.available()
            if not why and isinstance(broker, Starling):
                try:
                    broker.export(workroot / "starling-src")
                except BrokerError as exc:
                    why = str(exc)
            if why:
                unavailable[name] = why
                print(f"run.py: skipping {name}: {why}", file=sys.stderr)
            else:
                brokers[name] = broker
                versions[name] = broker.version()

        for sc in scenarios:
            for run in range(args.runs):
                for name, broker in list(brokers.items()):
                    if name in unavailable:
                        continue
                    only = TARGET_BROKERS.get(name) if args.targets else None
                    if only is not None and sc.name not in only:
                        continue
                    workdir = workroot / f"{name}-{sc.name}-{run}"
                    workdir.mkdir()
                    print(f"run.py: {sc.name} run {run + 1}/{args.runs} on {name} ...",
                          file=sys.stderr, flush=True)
                    try:
                        res = measure(broker, sc, args, loadgen, workdir)
                    except BrokerError as exc:
                        # A broker that cannot start will not start for the next scenario either.
                        unavailable[name] = f"failed to start: {exc}"
                        start_failures.append(name)
                        print(f"run.py: {name} {unavailable[name]}", file=sys.stderr)
                        continue
                    results[name].setdefault(sc.name, []).append(res)
                    if not res.get("ok"):
                        print(f"run.py:   {name} {sc.name} failed: {res.get('error')}", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        print("\nrun.py: interrupted; stopping brokers and printing what was measured",
              file=sys.stderr)
    finally:
        stop_all_children()
        if args.keep_temp:
            print(f"run.py: broker configs and logs kept in {workroot}", file=sys.stderr)
        else:
            shutil.rmtree(workroot, ignore_errors=True)

    summary = print_tables(
        scenarios, args.broker_names, results,
        f"duration {args.duration:g}s after {args.warmup:g}s warm-up, median of {args.runs} "
        f"run(s); broker on CPU {BROKER_CPU}, loadgen on CPU {LOADGEN_CPU}; versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for name, why in unavailable.items():
        print(f"{name}: not measured: {why.splitlines()[0]}")

    if args.json:
        doc = {
            "meta": {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started_at)),
                "seconds": round(time.time() - started_at, 1),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                            "python": platform.python_version()},
                "versions": versions,
                "broker_cpu": BROKER_CPU, "loadgen_cpu": LOADGEN_CPU,
                "cpu_busy_before_pct": idle_check,
                "duration": args.duration, "warmup": args.warmup, "runs": args.runs,
                "plain_generator": args.plain_generator,
                "idle_connections": args.idle_connections, "interrupted": interrupted,
                "unavailable": unavailable,
            },
            "scenarios": {s.name: s.description for s in scenarios},
            "summary": summary,
            "results": results,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {args.json}")
    if interrupted:
        return 130
    # A broker that is not installed (or, for Starling, not runnable yet) is reported
    # above but is not a failure; one that would not start or a failed run is.
    failed = any(not r.get("ok") for per in results.values() for runs in per.values() for r in runs)
    return 1 if failed or start_failures else 0


if __name__ == "__main__":
    sys.exit(main())
