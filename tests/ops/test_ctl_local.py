"""`starling ctl` finds the node running on this machine without flags: the node
writes its real management URL (port 0 included) and bootstrap credentials to
``<data_dir>/management.json``, and ctl reads it from ``--data-dir``,
``STARLING_DATA_DIR`` or the default ``./data``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

NON_DEFAULT = {"management.bind": "127.0.0.1:0", "api.default_app_id": "ops",
               "api.default_app_secret": "not-the-default"}


def ctl(*args: str, cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """`python -m starling ctl ARGS` with no STARLING_* variable but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    return subprocess.run([sys.executable, "-m", "starling", "ctl", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30,
                          env={**clean, **(env or {})})


def test_ctl_without_flags_finds_the_node_in_the_default_data_dir(make_node: Any,
                                                                  tmp_path: Path) -> None:
    node = make_node(NON_DEFAULT, data_dir=tmp_path / "data")
    status = ctl("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"Node {node.name} is started" in status.stdout
    listeners = ctl("listeners", cwd=tmp_path)  # needs the credentials too
    assert listeners.returncode == 0, listeners.stderr
    assert "http:management" in listeners.stdout


def test_the_data_dir_from_the_environment_or_a_flag(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    node = make_node(NON_DEFAULT, data_dir=data)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    by_env = ctl("--json", "cluster", cwd=elsewhere, env={"STARLING_DATA_DIR": str(data)})
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)[0]["node"] == node.name
    by_flag = ctl("cluster", "--data-dir", str(data), cwd=elsewhere)
    assert by_flag.returncode == 0, by_flag.stderr
    assert node.name in by_flag.stdout


def test_the_file_is_private_and_goes_with_the_node(make_node: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = make_node(NON_DEFAULT, data_dir=data)
    path = data / "management.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = json.loads(path.read_text())
    host, port = node.listeners["http:management"]
    assert content["url"] == f"http://{host}:{port}"
    assert (content["app_id"], content["pid"]) == ("ops", node.proc.pid)
    node.stop()
    assert not path.exists()
    # without the file, ctl falls back to the configuration (here: the port that closed)
    stopped = ctl("status", "--set", f"management.bind={host}:{port}", cwd=tmp_path)
    assert stopped.returncode == 1  # nothing to reach, said without a traceback
    assert "Node is not running" in stopped.stderr
    assert "Traceback" not in stopped.stderr


def test_after_a_crash_ctl_says_the_node_is_gone(make_node: Any, tmp_path: Path) -> None:
    node = make_node(NON_DEFAULT, data_dir=tmp_path / "data")
    pid = node.proc.pid
    node.kill()
    done = ctl("status", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"starling ctl: no node is running on data dir data (pid "
                                   f"{pid}, which wrote management.json, has exited)")
    node.start()  # the restarted node's file is the one ctl uses
    again = ctl("status", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
