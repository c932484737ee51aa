"""``<data_dir>/management.json``: how `starling ctl` on this machine reaches the
node that runs on a data directory, whatever ports and secret it was started with.

The node writes it once it has started (mode 0600, like ``api_secret``: it holds
the bootstrap app's secret) and removes it when it stops; after a crash it stays
behind, so the reader checks that the pid in it still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "management.json"


@dataclass(frozen=True, slots=True)
class LocalNode:
    """What the file says: the node, its pid, the management API's base URL (empty
    when the API is off) and the bootstrap app's credentials."""

    node: str
    pid: int
    url: str
    app_id: str
    secret: str

    @property
    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, another user's
        return True


def url_of(host: str, port: int) -> str:
    """A URL to reach a listener bound to host:port from this machine."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class RuntimeFile:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME

    def write(self, node: str, management: tuple[str, int] | None, app_id: str,
              secret: str) -> None:
        data = {"node": node, "pid": os.getpid(),
                "url": url_of(*management) if management else "",
                "app_id": app_id, "secret": secret}
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(temporary, self.path)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def read(self) -> LocalNode | None:
        """The file's content, or None when there is none or it cannot be read."""
        try:
            data: Any = json.loads(self.path.read_text())
            return LocalNode(str(data["node"]), int(data["pid"]), str(data["url"]),
                             str(data["app_id"]), str(data["secret"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
