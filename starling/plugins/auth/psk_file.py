"""emqx_psk_file: TLS-PSK identities and keys from a file, for the TLS listeners
that accept PSK cipher suites (`ssl_options.psk_ciphers`, docs/behaviour.md, "TLS-PSK").

The file has EMQ X's format, one ``<identity><delimiter><secret>`` per line; the
secret's bytes are the key, as in EMQ X (so ``client1:1234`` is the key that
``mosquitto_pub --psk 31323334 --psk-identity client1`` uses).  Blank lines and
lines starting with ``#`` are skipped.  A changed file is read again (checked at
most once a second, on a handshake), so keys can be added without a restart.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .. import ConfigKey, Plugin

log = logging.getLogger(__name__)

#: Seconds between checks of the file's modification time.
RECHECK_INTERVAL = 1.0


def parse_delimiter(value: str) -> str:
    if not value:
        raise ValueError("the delimiter must not be empty")
    return value


def read_psk_file(path: Path, delimiter: str) -> dict[str, bytes]:
    """identity -> key; a line without the delimiter is skipped and logged by
    number (never its content: it may hold a key)."""
    keys: dict[str, bytes] = {}
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            line = raw.rstrip(b"\r\n")
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            identity, sep, secret = line.partition(delimiter.encode())
            if not sep or not identity or not secret:
                log.warning("%s:%d: not <identity>%s<secret>; skipped", path, number, delimiter)
                continue
            keys[identity.decode("utf-8", "replace")] = secret
    return keys


class PskFilePlugin(Plugin):
    SCHEMA = (
        ConfigKey("psk.file.path", "psk.txt",
                  "The PSK file; a relative path is under the node's data directory."),
        ConfigKey("psk.file.delimiter", ":", "Separates identity and secret on a line.",
                  parse_delimiter),
    )

    async def load(self) -> None:
        path = Path(self.settings["psk.file.path"])
        self.path = path if path.is_absolute() else self.context.data_dir / path
        self.delimiter: str = self.settings["psk.file.delimiter"]
        self._mtime = os.stat(self.path).st_mtime  # a missing file refuses the load
        self.keys = read_psk_file(self.path, self.delimiter)
        self._checked = time.monotonic()
        log.info("emqx_psk_file: %d identities from %s", len(self.keys), self.path)
        self.context.broker.psk_lookup = self.lookup

    async def unload(self) -> None:
        if self.context.broker.psk_lookup == self.lookup:
            self.context.broker.psk_lookup = None

    def lookup(self, identity: str) -> bytes | None:
        self._reread_if_changed()
        return self.keys.get(identity)

    def _reread_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < RECHECK_INTERVAL:
            return
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime == self._mtime:
                return
            self.keys = read_psk_file(self.path, self.delimiter)
            self._mtime = mtime
            log.info("emqx_psk_file: reloaded %d identities", len(self.keys))
        except OSError as exc:
            log.error("emqx_psk_file: cannot read %s (keeping the keys in use): %s",
                      self.path, exc)
