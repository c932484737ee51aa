"""Command-line interoperability (Debian's mosquitto_pub / mosquitto_sub behave
as against Mosquitto) and the node's own process lifecycle (SIGTERM, restart)."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest
from helpers.clients import uid
from helpers.nodes import restart
from helpers.packets import gen_disconnect

STDBUF = shutil.which("stdbuf")  # mosquitto_sub's -d lines are block-buffered on a pipe
PUB = shutil.which("mosquitto_pub")
SUB = shutil.which("mosquitto_sub")
needs_tools = pytest.mark.skipif(not (PUB and SUB), reason="mosquitto clients not installed")


def run(args: list[str], timeout: float = 10.0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=stdin)


def addr(node: Any) -> list[str]:
    return ["-h", node.host, "-p", str(node.port)]


class LineReader:
    """Runs a process and collects its stdout lines on a thread."""

    def __init__(self, args: list[str]) -> None:
        if STDBUF:
            args = [STDBUF, "-oL", *args]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, predicate, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"no matching output line; saw {self.all}") from None
            self.all.append(line)
            if predicate(line):
                return line

    def finish(self, timeout: float = 5.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._thread.join(2.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return rc


@pytest.fixture
def line_reader():
    made: list[LineReader] = []

    def factory(args: list[str]) -> LineReader:
        r = LineReader(args)
        made.append(r)
        return r

    yield factory
    for r in made:
        if r.proc.poll() is None:
            r.proc.kill()
        r.finish()


# -- mosquitto_pub / mosquitto_sub ------------------------------------------------------------
@needs_tools
@pytest.mark.parametrize("version", ["mqttv31", "mqttv311"])
def test_mosquitto_pub_retained_then_sub_hash(make_node, version):
    """`mosquitto_pub -q 2 -r` then `mosquitto_sub -v -t '#' -C 1 -W 5` prints
    "<topic> <payload>" for the retained message and exits 0 (fresh node, so
    the retained message is the only one `#` can match)."""
    n = make_node()
    topic = uid("cli") + "/retained"
    pub = run([PUB, *addr(n), "-V", version, "-q", "2", "-r", "-t", topic, "-m", "hello world"])
    assert pub.returncode == 0, pub.stderr
    sub = run([SUB, *addr(n), "-V", version, "-v", "-t", "#", "-C", "1", "-W", "5"])
    assert sub.returncode == 0, sub.stderr
    assert sub.stdout == f"{topic} hello world\n"


@needs_tools
def test_mosquitto_sub_retained_only_flag(node):
    """`mosquitto_sub --retained-only` sees the retained message (RETAIN=1 on the
    copy sent for a new subscription) and `-R` (no stale) skips it."""
    topic = uid("cli-ret")
    assert run([PUB, *addr(node), "-q", "1", "-r", "-t", topic, "-m", "stale"]).returncode == 0
    sub = run([SUB, *addr(node), "--retained-only", "-t", topic, "-C", "1", "-W", "5"])
    assert (sub.returncode, sub.stdout) == (0, "stale\n"), sub.stderr
    # -R drops retained copies: with nothing live, -W ends it with status 27 and no output
    sub = run([SUB, *addr(node), "-R", "-t", topic, "-C", "1", "-W", "1"])
    assert sub.stdout == ""
    assert run([PUB, *addr(node), "-q", "1", "-r", "-t", topic, "-n"]).returncode == 0


@needs_tools
@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_mosquitto_live_messages(node, line_reader, qos):
    """A live mosquitto_sub receives lines published by `mosquitto_pub -l` in order."""
    topic = uid("cli-live")
    sub = line_reader([SUB, *addr(node), "-d", "-v", "-q", qos, "-t", topic, "-C", "3",
                       "-W", "10"])
    sub.wait_line(lambda line: "SUBACK" in line)
    pub = run([PUB, *addr(node), "-q", qos, "-t", topic, "-l"], stdin="one\ntwo\nthree\n")
    assert pub.returncode == 0, pub.stderr
    got = [sub.wait_line(lambda line: line.startswith(topic + " ")) for _ in range(3)]
    assert got == [f"{topic} one", f"{topic} two", f"{topic} three"]
    assert sub.finish() == 0


@needs_tools
def test_mosquitto_sub_persistent_session(node):
    """`mosquitto_sub -c -i ID` (CleanSession=0): a QoS 1 message published while
    it is away is delivered when it comes back."""
    cid, topic = uid("cli-pers"), uid("cli-pers")
    first = run([SUB, *addr(node), "-c", "-i", cid, "-q", "1", "-t", topic, "-E"])
    assert first.returncode == 0, first.stderr
    assert run([PUB, *addr(node), "-q", "1", "-t", topic, "-m", "queued"]).returncode == 0
    again = run([SUB, *addr(node), "-c", "-i", cid, "-q", "1", "-t", topic, "-C", "1",
                 "-W", "5"])
    assert (again.returncode, again.stdout) == (0, "queued\n"), again.stderr


@needs_tools
def test_mosquitto_sub_will_on_kill(node, connected, line_reader):
    """A mosquitto_sub killed with SIGKILL leaves its --will-topic message."""
    will = uid("cli-will")
    watcher = connected()
    watcher.subscribe(will, 1)
    proc = line_reader([SUB, *addr(node), "-d", "-t", uid("cli-x"), "--will-topic", will,
                        "--will-payload", "dead", "--will-qos", "1"])
    proc.wait_line(lambda line: "SUBACK" in line)
    proc.proc.kill()
    m = watcher.get()
    assert (m.topic, m.payload, m.qos) == (will, b"dead", 1)


# -- process lifecycle -----------------------------------------------------------------------
def test_sigterm_exits_zero_promptly(make_node, raw, connected):
    """SIGTERM with clients connected: the node exits with status 0 within a few
    seconds and the clients' connections are closed."""
    n = make_node()
    c = raw(target=n)
    c.connect(uid("c"))
    sub = connected(target=n)
    sub.subscribe(uid("t"), 1)
    t0 = time.monotonic()
    rc = n.stop(timeout=10)
    elapsed = time.monotonic() - t0
    assert rc == 0, "\n".join(n.log_lines[-20:])
    assert elapsed < 5.0, f"took {elapsed:.1f}s to stop"
    c.expect_closed(timeout=2.0)


def test_sigterm_idle_node(make_node):
    """An idle node also stops cleanly on SIGTERM."""
    n = make_node()
    t0 = time.monotonic()
    assert n.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5.0


def test_restart_same_data_dir(make_node, raw):
    """After SIGTERM the node starts again on the same data dir and serves clients."""
    n = make_node()
    restart(n)
    c = raw(target=n)
    c.connect(uid("c"))
    c.ping()
    c.send(gen_disconnect())


def test_start_after_kill(make_node, raw):
    """After kill -9 (a crash) the node starts again on the same data dir."""
    n = make_node()
    n.kill()
    n.start()
    c = raw(target=n)
    c.connect(uid("c"))
    c.ping()
