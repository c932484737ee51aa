"""External servers (Redis, PostgreSQL, MariaDB, slapd, HTTP ...) for the tests of
plugins that talk to one.

Tests start their server themselves on a free port and stop it.  Locally, a
test whose server program is not installed is skipped; when
`STARLING_REQUIRE_SERVERS=1` (set by `.ci/run`) it fails instead, so CI can
never pass by skipping what it must run.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

REQUIRED = os.environ.get("STARLING_REQUIRE_SERVERS") == "1"


def find_program(name: str, *extra_dirs: str) -> str:
    """The path of `name` (on PATH or in one of `extra_dirs`, which may be glob
    patterns such as ``/usr/lib/postgresql/*/bin``); skip the test when it is
    missing, or fail it under CI."""
    found = shutil.which(name)
    if found is None:
        for pattern in extra_dirs:
            for directory in sorted(Path("/").glob(pattern.lstrip("/")), reverse=True):
                candidate = directory / name
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    found = str(candidate)
                    break
            if found:
                break
    if found is None:
        message = f"{name} is not installed (scripts/test installs it)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for servers that cannot take 0)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    """Block until something accepts connections on `host:port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)
