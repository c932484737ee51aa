#!/usr/bin/env python3
"""Per-connection cost of a Starling node, measured so that a busy machine
cannot change the answer: bytes (RSS, tracemalloc) and instructions
(callgrind), not seconds.

The node runs in this process (as `starling start` builds it, uvloop, the
benchmark's settings); `loadgen --scenario idle` opens the connections from a
child process.  Modes:

    python benchmarks/profile_conn.py memory   -n 10000   # RSS per idle connection
    python benchmarks/profile_conn.py trace    -n 10000   # tracemalloc: bytes per connection, by line
    python benchmarks/profile_conn.py cprofile -n 3000    # cProfile of the connect phase, calls per connect
    python benchmarks/profile_conn.py callgrind -n 2000   # instructions per CONNECT→CONNACK (valgrind)

`callgrind` re-runs this script under `valgrind --tool=callgrind` with
instrumentation off until the node is up; it is switched on for the connect
phase only (client requests from a small C helper), so the count is per
connection and independent of load and of how long the node took to start.
Extra node settings: `--set key=value` (repeatable), as for `starling start`.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCH_DIR))

from run import build_loadgen  # noqa: E402

BUILD_DIR = BENCH_DIR / "build"
CG_SRC = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("connect"); }
"""
SETTINGS = [
    "listeners.tcp.default.bind=127.0.0.1:0", "listeners.tcp.internal.bind=off",
    "listeners.ws.default.bind=off", "management.bind=off", "dashboard.bind=off",
    "log.level=warning",
]


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def callgrind_helper() -> Any:
    BUILD_DIR.mkdir(exist_ok=True)
    src, lib = BUILD_DIR / "cgctl.c", BUILD_DIR / "cgctl.so"
    if not lib.exists():
        src.write_text(CG_SRC)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return ctypes.CDLL(str(lib))


async def connected(broker: Any, n: int) -> None:
    while len(broker.channels) < n:
        await asyncio.sleep(0.01)


async def measure(args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    import logging

    from starling.cli import _setup_logging
    from starling.config import Config
    from starling.node import Node

    config = Config.load(None, [*SETTINGS, *args.set], {"node.data_dir": data_dir})
    _setup_logging(config["log.level"], config["log.clients"])
    logging.getLogger("starling.startup").setLevel(logging.WARNING)
    node = Node(config)
    await node.start()
    gc.collect()
    gc.freeze()  # as `starling start` does (starling/cli.py)
    broker = node.broker
    port = node.listeners[0].bound[1]
    loadgen = build_loadgen()
    pin = ["taskset", "-c", str(args.pin_loadgen)] if args.pin_loadgen is not None else []
    cmd = [*pin, str(loadgen), "--scenario", "idle", "--port", str(port),
           "--connections", str(args.connections), "--settle", str(args.settle),
           "--connect-timeout", "600"]
    if args.load:
        cmd = [*pin, str(loadgen), "--port", str(port), "--connect-timeout", "600",
               *shlex.split(args.load)]
        return await measure_load(args, node, cmd)
    out: dict[str, Any] = {"mode": args.mode, "connections": args.connections}
    gc.collect()
    cg = callgrind_helper() if args.mode == "callgrind" else None
    profiler = None
    if args.mode == "trace":
        import tracemalloc
        tracemalloc.start(args.frames)
        before = tracemalloc.take_snapshot()
    rss0 = rss_kib()
    gc0 = [g["collections"] for g in gc.get_stats()]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.mode == "cprofile":
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    if cg is not None:
        cg.cg_start()
    # Started synchronously: no loop turn (and no accept) before the window opens.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    t0 = time.perf_counter()
    await connected(broker, args.connections)
    if cg is not None:
        cg.cg_stop()
    if profiler is not None:
        profiler.disable()
    out["connect_s"] = round(time.perf_counter() - t0, 3)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_us_per_conn"] = {
        "user": round((ru1.ru_utime - ru0.ru_utime) * 1e6 / args.connections, 1),
        "sys": round((ru1.ru_stime - ru0.ru_stime) * 1e6 / args.connections, 1)}
    out["gc_collections"] = [g["collections"] - c for g, c in zip(gc.get_stats(), gc0, strict=True)]
    await asyncio.sleep(min(0.2, args.settle / 2))
    gc.collect()
    out["rss_delta_kib"] = rss_kib() - rss0
    out["rss_per_conn_kib"] = round(out["rss_delta_kib"] / args.connections, 3)
    if args.mode == "trace":
        after = tracemalloc.take_snapshot()
        stats = after.compare_to(before, "traceback" if args.frames > 1 else "lineno")
        total = sum(s.size_diff for s in stats)
        out["traced_bytes_per_conn"] = round(total / args.connections, 1)
        print(f"# traced bytes per connection: {total / args.connections:.1f}", file=sys.stderr)
        print(f"# {'bytes/conn':>10} {'blocks/conn':>11}  where", file=sys.stderr)
        for s in stats[:args.top]:
            where = " < ".join(f"{_short(f.filename)}:{f.lineno}" for f in s.traceback)
            print(f"  {s.size_diff / args.connections:10.1f} "
                  f"{s.count_diff / args.connections:11.2f}  {where}", file=sys.stderr)
        if args.sizes:
            _print_sizes(before, after, stats[:args.sizes], args)
        tracemalloc.stop()
    stdout, _ = await asyncio.get_running_loop().run_in_executor(None, proc.communicate)
    try:
        out["loadgen"] = {k: v for k, v in json.loads(stdout).items()
                          if k in ("ok", "error", "connect_rate", "connected")}
    except ValueError:
        out["loadgen"] = stdout.decode(errors="replace")[-500:]
    await node.stop()
    if profiler is not None:
        _print_profile(profiler, args)
    return out


def _print_sizes(before: Any, after: Any, top: list[Any], args: argparse.Namespace) -> None:
    """Block sizes (new blocks only) at the top allocation sites: which objects they are."""
    from collections import Counter

    old = Counter((t.traceback, t.size) for t in before.traces)
    for stat in top:
        sizes: Counter[int] = Counter()
        for trace in after.traces:
            if trace.traceback == stat.traceback:
                if old[(trace.traceback, trace.size)] > 0:
                    old[(trace.traceback, trace.size)] -= 1
                else:
                    sizes[trace.size] += 1
        where = _short(stat.traceback[0].filename) + f":{stat.traceback[0].lineno}"
        common = ", ".join(f"{size} B x{n / args.connections:.2f}"
                           for size, n in sizes.most_common(6) if n >= args.connections / 10)
        print(f"# {where}: {common}", file=sys.stderr)


async def measure_load(args: argparse.Namespace, node: Any, cmd: list[str]) -> dict[str, Any]:
    """--load: profile a whole loadgen run; figures per message received."""
    cg = callgrind_helper() if args.mode == "callgrind" else None
    profiler = None
    gc.collect()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.mode == "cprofile":
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    if cg is not None:
        cg.cg_start()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    stdout, _ = await asyncio.get_running_loop().run_in_executor(None, proc.communicate)
    if cg is not None:
        cg.cg_stop()
    if profiler is not None:
        profiler.disable()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    result = json.loads(stdout)
    # Messages received in the measured window; run with `-w 0` so that (setup
    # aside, which is small) the window is the whole run.
    units = int(result.get("received", 0)) or 1
    args.connections = units
    out: dict[str, Any] = {
        "mode": args.mode, "load": args.load, "units": units,
        "loadgen": {k: result.get(k) for k in ("ok", "error", "receive_rate", "received")},
        "cpu_us_per_msg": {
            "user": round((ru1.ru_utime - ru0.ru_utime) * 1e6 / units, 2),
            "sys": round((ru1.ru_stime - ru0.ru_stime) * 1e6 / units, 2)}}
    await node.stop()
    if profiler is not None:
        _print_profile(profiler, args)
    return out


def _short(filename: str) -> str:
    for marker in ("/starling/", "/asyncio/", "/uvloop/"):
        i = filename.rfind(marker)
        if i >= 0:
            return filename[i + 1:]
    return Path(filename).name


def _print_profile(profiler: Any, args: argparse.Namespace) -> None:
    import pstats

    stats = pstats.Stats(profiler)
    rows: list[tuple[float, float, int, str]] = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{_short(filename)}:{line}({func})"))
    total_calls = sum(r[2] for r in rows)
    print(f"# function calls per connection (--load: per message): "
          f"{total_calls / args.connections:.1f}",
          file=sys.stderr)
    print(f"# {'calls/conn':>10} {'tottime us/conn':>15} {'cumtime us/conn':>15}  function",
          file=sys.stderr)
    key = {"tottime": 0, "cumtime": 1, "calls": 2}[args.sort]
    for tt, ct, nc, name in sorted(rows, key=lambda r: -float(r[key]))[:args.top]:
        print(f"  {nc / args.connections:10.2f} {tt * 1e6 / args.connections:15.2f} "
              f"{ct * 1e6 / args.connections:15.2f}  {name}", file=sys.stderr)


def window_dumps(out_dir: Path) -> list[tuple[Path, int]]:
    """(file, instructions) of each callgrind dump of the counted window: those the
    script's own client request wrote (`callgrind_helper`'s toggle), not the rest of
    the process."""
    found = []
    for dump in sorted(out_dir.glob("callgrind.out*")):
        text = dump.read_text(errors="replace")
        if "Trigger: Client Request: connect" not in text[:2000]:
            continue
        match = re.search(r"^totals:\s+(\d+)", text, re.M)
        if match:
            found.append((dump, int(match.group(1))))
    return found


def under_callgrind(script: str, argv: list[str], env: dict[str, str] | None = None
                    ) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run `script` with `argv` under callgrind, counting only the windows its
    `callgrind_helper` toggles (`--instr-atstart=no`), hash seed fixed: the finished
    process and the directory of its dumps (the caller removes it).  A failed run
    exits with the end of its stderr."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    callgrind_helper()  # built outside valgrind
    out_dir = Path(tempfile.mkdtemp(prefix="starling-cg-"))
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
           f"--callgrind-out-file={out_dir / 'callgrind.out'}", sys.executable,
           str(Path(script).resolve()), *argv]
    res = subprocess.run(cmd, capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "0", **os.environ, **(env or {})})
    if res.returncode != 0:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise SystemExit(f"{Path(script).name}: the callgrind run failed:\n{res.stderr[-3000:]}")
    return res, out_dir


def run_callgrind(args: argparse.Namespace) -> int:
    argv = [a for a in sys.argv[1:] if a != "callgrind"]
    res, out_dir = under_callgrind(__file__, ["callgrind-inner", *argv], {
        "PYTHONMALLOC": "malloc" if args.plain_malloc else "pymalloc"})
    print(res.stdout.strip())
    dumps = sorted(out_dir.glob("callgrind.out*"))
    total = sum(count for _, count in window_dumps(out_dir))
    units = args.connections
    for line in res.stdout.splitlines():
        if line.startswith("{") and '"units"' in line:
            units = json.loads(line)["units"]
    print(json.dumps({"instructions": total,
                      "instructions_per_unit": round(total / units),
                      "callgrind_files": [str(d) for d in dumps]}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["memory", "trace", "cprofile", "callgrind",
                                    "callgrind-inner"])
    p.add_argument("-n", "--connections", type=int, default=10000)
    p.add_argument("--settle", type=float, default=1.0, help="loadgen --settle (s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--load", metavar="LOADGEN_ARGS",
                   help="cprofile/callgrind a loadgen run instead of idle connects, e.g. "
                        "'--scenario pairs --qos 1 --persistent -d 3 -w 0'; per message")
    p.add_argument("--pin-loadgen", type=int, metavar="CPU",
                   help="run loadgen on this CPU (run the script itself under taskset -c 0)")
    p.add_argument("--frames", type=int, default=1, help="trace: traceback depth")
    p.add_argument("--sizes", type=int, default=0, metavar="N",
                   help="trace: block sizes at the N top sites")
    p.add_argument("--sort", choices=["tottime", "cumtime", "calls"], default="tottime")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                   help="the event loop (asyncio: its default selector loop, to compare "
                   "transports with --set listeners.tcp.default.transport=loop)")
    p.add_argument("--plain-malloc", action="store_true",
                   help="callgrind: PYTHONMALLOC=malloc")
    args = p.parse_args()
    if args.mode == "callgrind":
        return run_callgrind(args)
    if args.mode == "callgrind-inner":
        args.mode = "callgrind"
    import uvloop

    factory = uvloop.new_event_loop if args.loop == "uvloop" else asyncio.new_event_loop
    with (tempfile.TemporaryDirectory(prefix="starling-prof-") as data_dir,
          asyncio.Runner(loop_factory=factory) as runner):
        result = runner.run(measure(args, data_dir))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
