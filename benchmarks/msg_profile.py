#!/usr/bin/env python3
"""Instructions per message through a whole Starling node, and where they go:
figures a busy machine cannot change (callgrind counts instructions, not seconds).

The node runs in this process (as `starling start` builds it: uvloop, the
benchmark's settings); loadgen drives it from a child process with one of
run.py's scenarios, as run.py runs it (same arguments).  Callgrind counts
only a window of a fixed number of PUBLISH packets received by the broker
(`-n`), opened once the load is flowing (`--skip` messages later), so
connecting and subscribing are not in it.  System calls count only as the
user-space instructions around them (callgrind does not see the kernel).

    python benchmarks/msg_profile.py                        # fanin,iot,qos1,qos2,fanout
    python benchmarks/msg_profile.py --scenarios qos1 -n 20000
    python benchmarks/msg_profile.py --no-breakdown         # totals only (no wrappers)
    python benchmarks/msg_profile.py --scenarios qos1p --set store.backend=memory

Breakdown: each stage's entry point is wrapped in a small C function of its
own (`zone_<stage>`, in a helper built here), so callgrind's inclusive count
of that symbol is the stage's cost.  With the compiled hot path (mypyc), the
stages are the compiled functions themselves (`CPyDef_...`), and the helper
wraps only what stays Python.  Rows (per message received by the broker):

  event loop   uvloop: epoll, the read and write callbacks, timers, GC outside
               the rest (total - recv - flush)
  read         `data_received` itself (counters, the decoder hand-off)
  decode       `Decoder.feed`
  handle       `Channel.handle` (dispatch on the packet type)
  publish in   `_on_publish` less what is below: checks, ACL, the Message
  route        `Router.match`
  deliver      `Session.deliver` less encoding: the in-flight window,
               `send_publish`, the write into the connection's buffer
  encode       `Message.parts` (once per message and variant; cached after)
  write        `WriteBatcher.flush`: joining a connection's packets, `transport.write`
  acknowledge  PUBACK/PUBREC/PUBCOMP sent for a PUBLISH, and those received
               for a delivery (session bookkeeping)

The wrappers cost instructions of their own: the totals are also measured
without them (`--no-breakdown` does only that), and the difference is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(BENCH_DIR))

from profile_conn import SETTINGS, callgrind_helper, under_callgrind, window_dumps  # noqa: E402
from run import SCENARIO_BY_NAME, build_loadgen  # noqa: E402

BUILD_DIR = BENCH_DIR / "build"
SCENARIOS = ("fanin", "iot", "qos1", "qos2", "fanout")
STAGES = ("recv", "decode", "handle", "publish_in", "route", "deliver", "encode", "flush",
          "ack_out", "ack_in")

# One C function per stage: callgrind's inclusive cost of `zone_<stage>` is what the
# wrapped callable cost.  A Zone is a descriptor, so it replaces a method on its class.
ZONES_SRC = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

typedef struct { PyObject_HEAD PyObject *func; vectorcallfunc vectorcall; } Zone;

#define ZONE(name) \
    __attribute__((noinline)) static PyObject *zone_##name(PyObject *self, \
            PyObject *const *args, size_t nargsf, PyObject *kwnames) { \
        return PyObject_Vectorcall(((Zone *)self)->func, args, nargsf, kwnames); }
%(zones)s

static const struct { const char *name; vectorcallfunc call; } ZONES[] = {
%(table)s
    {NULL, NULL}};

static PyObject *zone_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    const char *name; PyObject *func;
    if (!PyArg_ParseTuple(args, "sO", &name, &func)) return NULL;
    for (int i = 0; ZONES[i].name; i++) {
        if (strcmp(ZONES[i].name, name) == 0) {
            Zone *z = (Zone *)type->tp_alloc(type, 0);
            if (!z) return NULL;
            Py_INCREF(func);
            z->func = func;
            z->vectorcall = ZONES[i].call;
            return (PyObject *)z;
        }
    }
    PyErr_Format(PyExc_ValueError, "no zone %%s", name);
    return NULL;
}
static void zone_dealloc(Zone *z) { Py_XDECREF(z->func); Py_TYPE(z)->tp_free(z); }
static PyObject *zone_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) { Py_INCREF(self); return self; }
    return PyMethod_New(self, obj);
}
static PyObject *zone_func(Zone *z, void *c) { Py_INCREF(z->func); return z->func; }
static PyGetSetDef zone_getset[] = {{"__wrapped__", (getter)zone_func, NULL, NULL, NULL},
                                    {NULL}};
static PyTypeObject ZoneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cgzones.Zone", .tp_basicsize = sizeof(Zone),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Zone, vectorcall), .tp_call = PyVectorcall_Call,
    .tp_new = zone_new, .tp_dealloc = (destructor)zone_dealloc, .tp_descr_get = zone_get,
    .tp_getset = zone_getset,
};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "cgzones", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_cgzones(void) {
    if (PyType_Ready(&ZoneType) < 0) return NULL;
    PyObject *m = PyModule_Create(&mod);
    if (m == NULL) return NULL;
    Py_INCREF(&ZoneType);
    PyModule_AddObject(m, "Zone", (PyObject *)&ZoneType);
    return m;
}
"""


def zones_module() -> Any:
    """Build (once) and import the helper with one `zone_<stage>` function per stage."""
    BUILD_DIR.mkdir(exist_ok=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    lib = BUILD_DIR / f"cgzones{suffix}"
    src = BUILD_DIR / "cgzones.c"
    text = ZONES_SRC % {
        "zones": "\n".join(f"ZONE({s})" for s in STAGES),
        "table": "\n".join(f'    {{"{s}", zone_{s}}},' for s in STAGES)}
    if not lib.exists() or not src.exists() or src.read_text() != text:
        src.write_text(text)
        include = sysconfig.get_paths()["include"]
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", f"-I{include}", "-o", str(lib),
                        str(src)], check=True)
    sys.path.insert(0, str(BUILD_DIR))
    import cgzones  # type: ignore[import-not-found]

    return cgzones


# What each stage wraps: (module, class, method).  A target that does not exist (the
# code moved) or cannot be replaced (a compiled class) is reported and left alone.
TARGETS: dict[str, list[tuple[str, str, str]]] = {
    "recv": [("starling.transport.connection", "MQTTConnection", "data_received")],
    "decode": [("starling.mqtt.decoder", "Decoder", "feed")],
    "handle": [("starling.broker.channel", "Channel", "handle")],
    "publish_in": [("starling.broker.channel.publish", "PublishFlow", "_on_publish")],
    "route": [("starling.broker.router", "Router", "match")],
    "deliver": [("starling.broker.session", "Session", "deliver")],
    "encode": [("starling.broker.message", "Message", "parts")],
    "flush": [("starling.transport.connection", "WriteBatcher", "flush")],
    "ack_out": [("starling.broker.channel.publish", "PublishFlow", "_ack_publish")],
    "ack_in": [("starling.broker.channel.deliver", "DeliveryFlow", m)
               for m in ("_on_puback", "_on_pubrec", "_on_pubcomp")]
              + [("starling.broker.channel.publish", "PublishFlow", "_on_pubrel")],
}


#: With the compiled hot path the wrappers cannot replace the compiled classes' methods;
#: these stages are then read from mypyc's own function (`CPyDef_<module>___<Class>___<m>`).
COMPILED_SYMBOLS: dict[str, str] = {
    "decode": "CPyDef_decoder___Decoder___feed",
    "route": "CPyDef_router___Router___match",
    "encode": "CPyDef_message___Message___parts",
}


def install_zones() -> dict[str, list[str]]:
    """Wrap every target; also replace the plain function wherever a module keeps it in
    a dict (the channel's table of packet handlers).  Returns what was wrapped."""
    import importlib

    cg = zones_module()
    done: dict[str, list[str]] = {}
    for stage, targets in TARGETS.items():
        for module_name, cls_name, attr in targets:
            where = f"{module_name}.{cls_name}.{attr}"
            try:
                module = importlib.import_module(module_name)
                cls = getattr(module, cls_name)
                func = cls.__dict__[attr]
                zone = cg.Zone(stage, func)
                setattr(cls, attr, zone)
            except (ImportError, AttributeError, KeyError, TypeError) as exc:
                print(f"# not wrapped: {where} ({exc!r})", file=sys.stderr)
                continue
            for mod in list(sys.modules.values()):
                if getattr(mod, "__name__", "").startswith("starling"):
                    for value in vars(mod).values():
                        if isinstance(value, dict):
                            for key, item in list(value.items()):
                                if item is func:
                                    value[key] = zone
            done.setdefault(stage, []).append(where)
    return done


async def drive(args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    import logging

    from starling.broker import metrics as m
    from starling.cli import _setup_logging
    from starling.config import Config
    from starling.node import Node

    wrapped = install_zones() if args.zones else {}
    config = Config.load(None, [*SETTINGS, *args.set], {"node.data_dir": data_dir})
    _setup_logging(config["log.level"])
    logging.getLogger("starling.startup").setLevel(logging.WARNING)
    node = Node(config)
    await node.start()
    gc.collect()
    gc.freeze()  # as `starling start` does (starling/cli.py)
    counters = node.broker.counters
    port = node.listeners[0].bound[1]
    sc = SCENARIO_BY_NAME[args.scenario]
    ns = SimpleNamespace(idle_connections=0, idle_timeout=0)
    cmd = [str(build_loadgen()), "--port", str(port), *sc.loadgen_args(ns),
           "--duration", "86400", "--warmup", "0", "--connect-timeout", "3600",
           "--loss-timeout", "3600"]
    cg = callgrind_helper() if args.callgrind else None
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        received = m.MESSAGES_RECEIVED
        while counters[received] < args.skip:
            if proc.poll() is not None:
                raise SystemExit(f"loadgen exited early ({proc.returncode}): {' '.join(cmd)}")
            await asyncio.sleep(0.05)
        start_msgs = counters[received]
        start_sent = counters[m.MESSAGES_SENT]
        t0 = time.process_time()
        if cg is not None:
            cg.cg_start()
        while counters[received] < start_msgs + args.messages:
            await asyncio.sleep(0.02)
        if cg is not None:
            cg.cg_stop()
        cpu = time.process_time() - t0
        msgs = counters[received] - start_msgs
        sent = counters[m.MESSAGES_SENT] - start_sent
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    await node.stop()
    import starling

    try:
        from starling.compiled import describe
        hot_path = describe()
    except ImportError:  # a tree from before the compiled hot path (a "before" profile)
        hot_path = "pure Python (no compiled hot path in this tree)"
    return {"scenario": args.scenario, "messages": msgs, "deliveries": sent,
            "hot_path": hot_path, "package": os.path.dirname(starling.__file__),
            "cpu_us_per_msg": round(cpu * 1e6 / msgs, 2), "wrapped": wrapped}


def inner(args: argparse.Namespace) -> int:
    import uvloop

    if args.installed:  # the installed package (e.g. compiled), not this checkout's
        while str(REPO_ROOT) in sys.path:
            sys.path.remove(str(REPO_ROOT))

    with (tempfile.TemporaryDirectory(prefix="starling-msgprof-") as data_dir,
          asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner):
        result = runner.run(drive(args, data_dir))
    print(json.dumps(result))
    return 0


def inclusive_costs(path: Path) -> dict[str, int]:
    """Inclusive instructions per symbol, from callgrind_annotate."""
    res = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                          str(path)], capture_output=True, text=True, check=True)
    costs: dict[str, int] = {}
    for line in res.stdout.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(?:\S*:)?(\S+)", line)
        if match:
            name = match.group(2).split("'")[0]
            costs[name] = max(costs.get(name, 0), int(match.group(1).replace(",", "")))
    return costs


def callgrind_run(args: argparse.Namespace, scenario: str, zones: bool) -> dict[str, Any]:
    argv = ["--inner", "--callgrind", "--scenario", scenario, "-n", str(args.messages),
            "--skip", str(args.skip)]
    for setting in args.set:
        argv += ["--set", setting]
    if zones:
        argv.append("--zones")
    if args.installed:
        argv.append("--installed")
    res, out_dir = under_callgrind(__file__, argv)
    for line in res.stderr.splitlines():
        if line.startswith("# not wrapped"):
            print(line, file=sys.stderr)
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"# {scenario}: starling {result['hot_path']} ({result['package']})", file=sys.stderr)
    total = 0
    costs: dict[str, int] = {}
    for dump, count in window_dumps(out_dir):
        total += count
        if zones:
            for name, cost in inclusive_costs(dump).items():
                costs[name] = costs.get(name, 0) + cost
    shutil.rmtree(out_dir, ignore_errors=True)
    result["instructions"] = total
    result["zone_costs"] = {k: v for k, v in costs.items() if k.startswith("zone_")}
    for stage, symbol in COMPILED_SYMBOLS.items():
        if f"zone_{stage}" not in result["zone_costs"] and symbol in costs:
            result["zone_costs"][f"zone_{stage}"] = costs[symbol]
    return result


def breakdown(zoned: dict[str, Any]) -> dict[str, float]:
    """Per-message instructions by stage, from the zones' inclusive costs."""
    n = zoned["messages"]
    z = {s: zoned["zone_costs"].get(f"zone_{s}", 0) / n for s in STAGES}
    total = zoned["instructions"] / n
    return {
        "event loop": total - z["recv"] - z["flush"],
        "read": z["recv"] - z["decode"] - z["handle"],
        "decode": z["decode"],
        "handle": z["handle"] - z["publish_in"] - z["ack_in"],
        "publish in": z["publish_in"] - z["route"] - z["deliver"] - z["ack_out"],
        "route": z["route"],
        "deliver": z["deliver"] - z["encode"],
        "encode": z["encode"],
        "write": z["flush"],
        "acknowledge": z["ack_out"] + z["ack_in"],
    }


def outer(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    callgrind_helper()
    build_loadgen()
    if args.zones_wanted:
        zones_module()
    rows: list[dict[str, Any]] = []
    for scenario in args.scenarios.split(","):
        if scenario not in SCENARIO_BY_NAME:
            raise SystemExit(f"unknown scenario {scenario!r}")
        plain = callgrind_run(args, scenario, zones=False)
        row: dict[str, Any] = {"scenario": scenario, "messages": plain["messages"],
                               "deliveries": plain["deliveries"],
                               "per_message": round(plain["instructions"] / plain["messages"])}
        if args.zones_wanted:
            zoned = callgrind_run(args, scenario, zones=True)
            row["breakdown"] = {k: round(v) for k, v in breakdown(zoned).items()}
            row["wrappers"] = round(zoned["instructions"] / zoned["messages"]
                                    - plain["instructions"] / plain["messages"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.zones_wanted:
        print_table(rows)
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    stages = list(rows[0]["breakdown"])
    print("\n| instructions per message | " + " | ".join(r["scenario"] for r in rows) + " |")
    print("|---|" + "--:|" * len(rows))
    for stage in stages:
        print(f"| {stage} | " + " | ".join(f"{r['breakdown'][stage]:,}" for r in rows) + " |")
    print("| **total** (no wrappers) | "
          + " | ".join(f"**{r['per_message']:,}**" for r in rows) + " |")
    print("| (the wrappers' own cost, in the rows above) | "
          + " | ".join(f"{r['wrappers']:,}" for r in rows) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--messages", type=int, default=20000,
                   help="PUBLISH packets received in the counted window (default %(default)s)")
    p.add_argument("--skip", type=int, default=3000,
                   help="messages received before the window opens (default %(default)s)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a node setting, as for `starling start` (repeatable), e.g. "
                   "store.backend=memory or listeners.tcp.default.transport=loop")
    p.add_argument("--no-breakdown", dest="zones_wanted", action="store_false",
                   help="totals only: no second run with the stage wrappers")
    p.add_argument("--installed", action="store_true",
                   help="profile the starling package installed for this Python (e.g. the "
                   "compiled one in a virtualenv), not this checkout")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scenario", help=argparse.SUPPRESS)
    p.add_argument("--zones", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--callgrind", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
