"""Test servers run as subprocesses whose stderr a thread reads into `log_lines`:
the stopping and clean-up shared by the Starling node (tests/conftest.py) and the
Mosquitto stand-in (helpers/mosquitto_node.py)."""

from __future__ import annotations

import signal
import subprocess
import threading


class ServerProcess:
    proc: subprocess.Popen[str] | None
    _reader: threading.Thread

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait: the clean shutdown a user's service manager does."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._release()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: what a crash looks like."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._release()

    def _release(self) -> None:
        """Let the log reader finish, then close the pipe (no ResourceWarning)."""
        assert self.proc is not None
        self._reader.join(timeout=5)
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.proc.stderr.close()
