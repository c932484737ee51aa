"""`starling ctl` as an operator runs it: the real command line, as a subprocess,
against a test node's management API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def ctl(node: Any, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python -m starling ctl --url <node's API> <args>`` with the test app."""
    host, port = node.listeners["http:management"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARLING_")}
    return subprocess.run(
        [sys.executable, "-m", "starling", "ctl", "--url", f"http://{host}:{port}",
         "--app-id", "admin", "--secret", "test-secret", *args],
        capture_output=True, text=True, timeout=timeout, env=env)


def ctl_json(node: Any, *args: str) -> Any:
    """A `--json` ctl command that must succeed; its output parsed."""
    done = ctl(node, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
