"""Command line: ``starling start`` runs a node in the foreground; ``starling ctl``
operates a running one through its management API (`starling.ctl`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__, compiled
from .cluster import ClusterUnavailable, run_workers
from .config import Config, ConfigError
from .store import StoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starling", description="Starling MQTT broker")
    parser.add_argument("--version", action="version", version=f"starling {__version__}, hot path: {compiled.describe()}")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="run a node in the foreground")
    start.add_argument("--config", type=Path, help="TOML configuration file")
    start.add_argument("--data-dir", help="directory for persistent data (node.data_dir)")
    start.add_argument("--node-name", help="node name, e.g. starling@127.0.0.1 (node.name)")
    start.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="set any configuration key (repeatable)")
    start.add_argument("--workers", type=int, default=0, metavar="N",
                       help="run N nodes as one cluster on this machine, sharing its ports "
                            "(docs/cluster.md); starts a local nats-server when "
                            "cluster.discovery is not nats")
    # Parsed by starling.ctl itself (main() hands it everything after "ctl").
    sub.add_parser("ctl", add_help=False,
                   help="operate a running node through its management API "
                        "(starling ctl --help)")
    return parser


def _setup_logging(level: str, clients: bool = True) -> None:
    # Records carry only what the format shows: no caller lookup (a frame walk per
    # record), thread, process or task names: a client's connect line costs an eighth
    # less.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # Python >= 3.12
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # log.clients = off: nothing about single clients (starling/client_log.py).
    logging.getLogger("starling.clients").disabled = not clients
    # Listener addresses and "node started" are shown at any level.
    logging.getLogger("starling.startup").setLevel(logging.INFO)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _run(config: Config) -> None:
    from .node import Node

    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    # What the start made (modules, config, plugins) lives as long as the process:
    # out of the cyclic GC's sight, its full collections stop walking it.
    gc.collect()
    gc.freeze()
    try:
        await stop.wait()
    finally:
        await node.stop()


def _without_workers(args: list[str]) -> list[str]:
    """The `start` arguments minus `--workers N` (what each worker is started with)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        from .ctl import main as ctl_main

        return ctl_main(argv[1:])
    args = _parser().parse_args(argv)
    extra: dict[str, Any] = {}
    if args.data_dir:
        extra["node.data_dir"] = args.data_dir
    if args.node_name:
        extra["node.name"] = args.node_name
    try:
        config = Config.load(args.config, args.set, extra)
    except ConfigError as exc:
        print(f"starling: configuration error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config["log.level"], config["log.clients"])
    # What the node writes (store, secrets, traces) is its owner's alone.
    os.umask(0o077)
    from .datadir import DataDirError
    from .node import StartError

    log = logging.getLogger("starling")
    if args.workers:
        if args.workers < 1:
            print("starling: --workers must be at least 1", file=sys.stderr)
            return 2
        return run_workers(_without_workers(argv[1:]), config, args.workers)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_run(config))
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    except StoreError as exc:
        log.error("cannot open the store: %s", exc)
        return 2
    except (DataDirError, StartError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    except ClusterUnavailable as exc:
        log.error("cannot join the cluster: %s", exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", exc.strerror or exc)
        return 1
    return 0
