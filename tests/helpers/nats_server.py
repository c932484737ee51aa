"""A real `nats-server -js` (Debian's nats-server) for the cluster tests: on a
free port, JetStream files in its own directory, stoppable, restartable on the
same port and files (to show NATS going away and coming back), and pausable
(SIGSTOP: a server that keeps its connections and answers nothing).  The
process handling is the one `starling start --workers` uses (`LocalNats`)."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path

from helpers.servers import find_program
from starling.cluster import LocalNats


class NatsServer(LocalNats):
    def __init__(self, store_dir: Path | None = None, *extra: str) -> None:
        """`extra`: more nats-server options (e.g. ``--user u --pass p``)."""
        self._own_dir = store_dir is None
        super().__init__(store_dir or Path(tempfile.mkdtemp(prefix="starling-nats-")), *extra,
                         program=find_program("nats-server", "/usr/sbin", "/usr/bin"))

    def start(self) -> NatsServer:  # type: ignore[override]
        super().start()
        return self

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open but answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)
