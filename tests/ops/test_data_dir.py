"""The data directory: one node at a time, and only its owner can read it.

Real `python -m starling start` processes throughout: a second node on a
running node's directory is refused (naming the directory and the holder's
pid), a node killed with SIGKILL leaves nothing that blocks a restart, and the
directory and everything in it end up 0700 / 0600, also when they existed with
looser modes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from helpers.clients import PahoClient, uid

API = {"management.bind": "127.0.0.1:0", "dashboard.bind": "127.0.0.1:0"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_second_node_on_the_same_data_dir_is_refused(make_node: Any, tmp_path: Path,
                                                      start_fails: Any) -> None:
    data = tmp_path / "shared"
    first = make_node(data_dir=data)
    # A persistent session with a queued message: two nodes would both deliver it.
    client = PahoClient(first.host, first.port, uid("keep"), clean_session=False)
    client.connect()
    client.subscribe("q/t", 1)
    client.disconnect()

    second = start_fails(data_dir=data)
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert f"data dir {data}: in use by another Starling node (pid {first.proc.pid})" in line
    assert "--data-dir" in line  # what to do about it
    assert len(second.stderr.strip().splitlines()) == 1  # nothing else was started

    # The first node is untouched and still serves (and still holds its lock file).
    again = PahoClient(first.host, first.port, uid("after"))
    again.connect()
    again.disconnect()
    assert (data / "starling.lock").read_text().strip() == str(first.proc.pid)


def test_kill_9_leaves_no_lock_behind(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "crashed"
    node = make_node(data_dir=data)
    old_pid = node.proc.pid
    node.kill()
    # The lock file still names the dead process; the kernel released its lock.
    assert (data / "starling.lock").read_text().strip() == str(old_pid)
    node.start()
    assert node.proc.pid != old_pid
    assert (data / "starling.lock").read_text().strip() == str(node.proc.pid)
    client = PahoClient(node.host, node.port, uid("up"))
    client.connect()
    client.disconnect()


def test_a_clean_stop_releases_the_directory(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "stopped"
    node = make_node(data_dir=data)
    assert node.stop() == 0
    assert (data / "starling.lock").read_text() == ""
    node.start()


def test_a_new_data_dir_is_private(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "new" / "nested"
    make_node(API, data_dir=data)
    names = {p.name for p in data.iterdir()}
    assert {"starling.db", "starling.db-wal", "starling.db-shm", "starling.lock", "acl.conf",
            "api_secret", "dashboard_password", "management.json"} <= names
    assert mode(data) == 0o700
    for path in data.rglob("*"):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_an_existing_data_dir_is_made_private_on_start(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "old"
    node = make_node(API, data_dir=data)
    node.stop()
    # As an older Starling (or a careless copy) left it: world-readable.
    os.chmod(data, 0o755)
    (data / "scripts").mkdir()
    (data / "scripts" / "hook.lua").write_text("-- a script\n")
    os.chmod(data / "scripts", 0o755)
    for path in data.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o644)
    node.start()
    assert mode(data) == 0o700
    for path in data.rglob("*"):
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path, start_fails: Any) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    done = start_fails(data_dir=afile)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"cannot start: data dir {afile}: exists and is not "
                                        "a directory")
    assert "Traceback" not in done.stderr and "Errno" not in done.stderr
    assert afile.read_text() == "not a directory\n"
