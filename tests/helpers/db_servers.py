"""Real database servers for the auth backend tests: Redis, PostgreSQL and
MariaDB, each started on a free port in its own temporary directory, stoppable
and restartable mid-test (to show a server going away), and removed after.

PostgreSQL refuses to run as root (CI runs as root): then its files belong to
the ``postgres`` user and its processes run as that user.  The programs come
from Debian's redis-server, postgresql and mariadb-server (scripts/test).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from helpers.servers import find_program, free_port, wait_for_port

PG_DIRS = ("/usr/lib/postgresql/*/bin",)
MARIADB_DIRS = ("/usr/sbin", "/usr/libexec")
START_TIMEOUT = 60.0


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0,
          sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _port_closed(port: int, timeout: float = 20.0) -> None:
    """Wait until nothing accepts on the port any more."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} still open after {timeout}s")


class RedisServer:
    """``redis-server`` with a password, no persistence (a restart starts empty)."""

    password = "redis-secret"

    def __init__(self) -> None:
        self.program = find_program("redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="starling-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--requirepass", self.password,
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=START_TIMEOUT)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
        _port_closed(self.port)

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL cluster made with initdb; user `user` with `password` over TCP,
    database ``mqtt``."""

    user = "starling"
    password = "pg-secret"
    database = "mqtt"

    def __init__(self) -> None:
        self.initdb = find_program("initdb", *PG_DIRS)
        self.postgres = find_program("postgres", *PG_DIRS)
        self.psql = find_program("psql", *PG_DIRS)
        self.dir = Path(tempfile.mkdtemp(prefix="starling-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_as: str | None = None
        if os.geteuid() == 0:  # postgres refuses root: run as the postgres user
            self.run_as = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        subprocess.run(
            [self.initdb, "-D", str(self.data), "-U", self.user, "--pwfile", str(pwfile),
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, user=self.run_as)

    def start(self) -> PostgresServer:
        self.proc = subprocess.Popen(
            [self.postgres, "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=self.run_as)
        wait_for_port(self.port, timeout=START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while self._psql("postgres", "select 1", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("postgres did not accept queries")
            time.sleep(0.1)
        return self

    def _psql(self, database: str, sql: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.psql, "-h", str(self.dir), "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-c", sql],
            check=check, capture_output=True, text=True, user=self.run_as)

    def sql(self, sql: str, database: str | None = None) -> str:
        """Run SQL through psql (local socket); its output."""
        return self._psql(database or self.database, sql).stdout

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, not waited for."""
        _stop(self.proc, sig=signal.SIGINT)
        self.proc = None
        _port_closed(self.port)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaDBServer:
    """mariadbd with a fresh datadir; user `user` with `password`, database ``mqtt``."""

    user = "starling"
    password = "my-secret"
    database = "mqtt"

    def __init__(self) -> None:
        self.install = find_program("mariadb-install-db", *MARIADB_DIRS)
        self.mariadbd = find_program("mariadbd", *MARIADB_DIRS)
        self.client_program = find_program("mariadb")
        self.dir = Path(tempfile.mkdtemp(prefix="starling-mariadb-"))
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [self.install, "--no-defaults", f"--datadir={self.data}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *user],
            check=True, capture_output=True)
        self._user = user

    def start(self) -> MariaDBServer:
        self.proc = subprocess.Popen(
            [self.mariadbd, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
             f"--socket={self.socket}", "--bind-address=127.0.0.1", "--skip-name-resolve",
             f"--pid-file={self.dir / 'mysqld.pid'}", "--innodb-buffer-pool-size=16M",
             "--skip-log-bin", f"--log-error={self.dir / 'error.log'}", *self._user],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=START_TIMEOUT)
        return self

    def setup(self) -> None:
        """Create the database and the user (once, after the first start)."""
        self.sql(f"CREATE DATABASE IF NOT EXISTS {self.database}; "
                 f"CREATE USER IF NOT EXISTS '{self.user}'@'%' IDENTIFIED BY '{self.password}'; "
                 f"GRANT ALL ON {self.database}.* TO '{self.user}'@'%'; FLUSH PRIVILEGES;",
                 database="")

    def sql(self, sql: str, database: str | None = None) -> str:
        """Run SQL as root through the socket; its output."""
        db = self.database if database is None else database
        args = [self.client_program, "--no-defaults", f"--socket={self.socket}", "-uroot",
                "-N", "-B", "-e", sql]
        if db:
            args.append(db)
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout

    def stop(self) -> None:
        _stop(self.proc, timeout=60)
        self.proc = None
        _port_closed(self.port)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
