"""`starling start --workers N`: N nodes as one cluster on one machine.

Python runs one thread of Python at a time, so one node uses one core; N
nodes sharing the machine's MQTT port (SO_REUSEPORT: the kernel spreads new
connections over them) use N.  This supervisor:

- starts a local ``nats-server -js`` on a free port, its JetStream files in
  ``<data_dir>/nats``, unless ``cluster.discovery = nats`` names servers
  already;
- picks the real port of every listener bound to port 0, so all workers
  share the same ports;
- runs ``python -m starling start`` N times with the same arguments plus, for
  worker i: ``node.name`` with ``-i`` added to its name part
  (``starling@127.0.0.1`` -> ``starling-1@127.0.0.1``), ``node.data_dir`` =
  ``<data_dir>/worker-i``, ``node.reuse_port = on`` and the cluster keys;
- restarts a worker that dies (after a second), passes SIGTERM/SIGINT on to
  all of them, and stops nats-server once they are gone.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger("starling.workers")

#: Seconds to wait before restarting a worker that died.
RESTART_DELAY = 1.0
#: Seconds workers get to stop before they are killed.
STOP_TIMEOUT = 30.0
#: Exit status of a node refused at start (bad configuration): not restarted.
CONFIG_ERROR = 2


class ConfigLike(Protocol):
    def __getitem__(self, key: str) -> Any: ...

    def items(self) -> Any: ...


def worker_name(name: str, index: int) -> str:
    """`starling@host` -> `starling-<index>@host`."""
    local, at, host = name.partition("@")
    return f"{local}-{index}{at}{host}"


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _fixed_binds(config: ConfigLike) -> list[str]:
    """`--set KEY=HOST:PORT` for every listener bound to port 0: one real port for all."""
    out = []
    for key, value in config.items():
        if not (key.endswith(".bind") and (key.startswith("listeners.")
                                           or key in ("management.bind", "dashboard.bind"))):
            continue
        text = str(value).strip()
        if text == "off":
            continue
        host, _, port = text.rpartition(":")
        if port == "0" or text == "0":
            host = host.strip("[]") or "0.0.0.0"
            out.append(f"{key}={text[:-1]}{_free_port(host)}")
    return out


def find_nats_server() -> str | None:
    """Debian's nats-server (on PATH, or in /usr/sbin, /usr/bin)."""
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).is_file()),
        None)


class LocalNats:
    """A `nats-server -js` on 127.0.0.1 (a free port), its JetStream files in
    `store_dir`; `extra` options are passed on (e.g. ``--user``)."""

    def __init__(self, store_dir: Path, *extra: str, program: str | None = None) -> None:
        program = program or find_nats_server()
        if program is None:
            raise RuntimeError("starling start --workers needs nats-server "
                               "(apt-get install nats-server), or cluster.discovery = nats "
                               "with cluster.nats.servers")
        self.program = program
        self.store_dir = store_dir
        self.extra = list(extra)
        self.port = _free_port("127.0.0.1")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.program, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.store_dir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not start on port {self.port}") \
                        from None
                time.sleep(0.05)
        log.info("nats-server started on %s (JetStream files in %s)", self.url, self.store_dir)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            log.info("nats-server stopped")


class Supervisor:
    def __init__(self, argv: Sequence[str], config: ConfigLike, workers: int) -> None:
        self.argv = list(argv)
        self.config = config
        self.count = workers
        self.data_dir = Path(config["node.data_dir"])
        self.nats: LocalNats | None = None
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def _args(self, index: int, shared: list[str]) -> list[str]:
        sets = [f"node.name={worker_name(self.config['node.name'], index)}",
                f"node.data_dir={self.data_dir / f'worker-{index}'}",
                "node.reuse_port=on", *shared]
        args = [sys.executable, "-m", "starling", "start", *self.argv]
        for item in sets:
            args += ["--set", item]
        return args

    def _stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        shared = _fixed_binds(self.config)
        if self.config["cluster.discovery"] == "manual":
            self.nats = LocalNats(self.data_dir / "nats")
            self.nats.start()
            shared += ["cluster.discovery=nats", f"cluster.nats.servers={self.nats.url}"]
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop_signal)
        status = 0
        try:
            for index in range(1, self.count + 1):
                self.procs[index] = subprocess.Popen(self._args(index, shared))
            log.info("started %d workers as one cluster", self.count)
            status = self._watch(shared)
        finally:
            self._stop_workers()
            if self.nats is not None:
                self.nats.stop()
        return status

    def _watch(self, shared: list[str]) -> int:
        """Restart workers that die, until asked to stop."""
        restart_at: dict[int, float] = {}
        while not self._stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for index, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None or self._stopping:
                    continue
                if code == CONFIG_ERROR:
                    log.error("worker %d was refused at start; stopping", index)
                    return CONFIG_ERROR
                if index not in restart_at:
                    log.warning("worker %d exited with status %d; restarting it", index, code)
                    restart_at[index] = now + RESTART_DELAY
                elif now >= restart_at[index]:
                    del restart_at[index]
                    self.procs[index] = subprocess.Popen(self._args(index, shared))
        return 0

    def _stop_workers(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_workers(argv: Sequence[str], config: ConfigLike, workers: int) -> int:
    """Run `workers` nodes as one cluster until SIGTERM/SIGINT; the exit status."""
    try:
        return Supervisor(argv, config, workers).run()
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
