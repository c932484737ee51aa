"""Management API credentials: the apps table (app id + secret).

A fresh node must be usable at once without a well-known default password:
the bootstrap app's secret comes from `api.default_app_secret`, else from
`<data_dir>/api_secret`, else it is generated and written there readable by the
owner only.  The log says where it is, never what it is.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .stored import StoredTable

log = logging.getLogger(__name__)
startup_log = logging.getLogger("starling.startup")

SECRET_FILE = "api_secret"


@dataclass(slots=True)
class App:
    app_id: str
    secret: str
    name: str = ""
    desc: str = ""
    status: bool = True
    expired: int | None = None  #: epoch seconds; None = never

    def public(self) -> dict[str, Any]:
        """The list form: everything but the secret."""
        data = asdict(self)
        del data["secret"]
        return data

    def usable(self, now: float) -> bool:
        return self.status and (self.expired is None or self.expired >= now)


def generate_secret(nbytes: int = 24) -> str:
    """A random URL-safe token that never starts with "-", so it can follow
    `--secret` on a command line without being read as an option."""
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token


def write_secret_file(path: Path, secret: str) -> None:
    """Write a generated secret or password to a new file only its owner can read."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")


class AppRegistry(StoredTable[App]):
    """Apps by id, written through to the store's `apps` table when attached."""

    TABLE = "apps"

    def _row(self, data: dict[str, Any]) -> App:
        return App(**data)

    def put(self, app: App) -> None:
        """Add or replace (also call after changing an app's fields)."""
        self._write(app.app_id, app)

    def delete(self, app_id: str) -> bool:
        return self._remove(app_id)

    def check(self, app_id: str, secret: str) -> bool:
        app = self._rows.get(app_id)
        if app is None or not app.usable(time.time()):
            return False
        return hmac.compare_digest(app.secret.encode(), secret.encode())

    def bootstrap(self, app_id: str, configured_secret: str, data_dir: Path) -> App:
        """Create the default app (see the module docstring)."""
        existing = self._rows.get(app_id)
        if configured_secret:
            secret = configured_secret
        elif existing is not None:
            return existing  # kept in the store from an earlier start
        else:
            path = data_dir / SECRET_FILE
            if path.exists():
                secret = path.read_text().strip()
            else:
                secret = generate_secret()
                write_secret_file(path, secret)
                startup_log.info(
                    "management API: created app id %r; its secret is in %s (mode 0600). "
                    "Use them as HTTP Basic credentials; set api.default_app_secret to "
                    "choose your own.", app_id, path)
        app = existing or App(app_id, secret, name="Default", desc="Bootstrap application")
        app.secret = secret
        self.put(app)
        return app
