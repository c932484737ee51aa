"""A real `nats-server -js` (Debian's nats-server) for the cluster tests: on a
free port, JetStream files in its own directory, stoppable and restartable on
the same port and files (to show NATS going away and coming back)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from helpers.servers import find_program, free_port, wait_for_port


class NatsServer:
    def __init__(self, store_dir: Path | None = None, *extra: str) -> None:
        """`extra`: more nats-server options (e.g. ``--user u --pass p``)."""
        self.program = find_program("nats-server", "/usr/sbin", "/usr/bin")
        self.extra = list(extra)
        self._own_dir = store_dir is None
        self.store_dir = store_dir or Path(tempfile.mkdtemp(prefix="starling-nats-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.proc = subprocess.Popen(
            [self.program, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.store_dir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=20)
        return self

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open but answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)
