"""The ACL file (`acl_file`): EMQ X v3's ``emqx_mod_acl_internal``, a core
module rather than a listed plugin, active on every node.

At start the file is read and its rules are put on the `client.check_acl`
hook (`Broker.acl`); with the default ``acl_file = ""`` the file is
``<data_dir>/acl.conf``, written with EMQ X's default rules when it does not
exist yet, so an ``acl.conf`` from EMQ X can simply be copied there.  A file
that cannot be read or parsed stops the node from starting, with the line and
column of the problem.

While the node runs, the file is reloaded when it changes (its modification
time, size or inode, checked every `acl_file_check_interval`) and on demand
(``PUT /api/v3/acl/reload``, ``starling ctl acl reload``).  A reload that fails
keeps the rules in force and reports why; a successful one empties every
connection's ACL cache.  docs/acl.md describes it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from starling.broker import DEFAULT_ACL_CONF, AclRule, AclSyntaxError, Broker, parse_acl

log = logging.getLogger(__name__)


class AclFileError(Exception):
    """The ACL file could not be read or parsed; the message says where and why."""


@dataclass(frozen=True, slots=True)
class AclStatus:
    """What `GET /api/v3/acl` shows."""

    file: str
    rules: tuple[AclRule, ...]
    loaded_at: float | None  #: epoch seconds of the last successful load
    last_error: str | None  #: why the last reload failed (None once one succeeds)
    check_interval: float


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class AclFile:
    def __init__(self, broker: Broker, path: Path, *, check_interval: float = 5.0,
                 write_default: bool = False) -> None:
        self.broker = broker
        self.path = path
        self.check_interval = check_interval
        #: True for the default location: a missing file is created with EMQ X's rules.
        self.write_default = write_default
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self._signature: tuple[int, int, int] | None = None
        self._failed_signature: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the file (raise `AclFileError` if it cannot be) and attach its rules."""
        if self.write_default and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(DEFAULT_ACL_CONF, "utf-8")
            log.info("wrote EMQ X's default ACL rules to %s", self.path)
        self.reload()
        self.broker.acl.attach(self.broker.hooks)
        if self.check_interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.broker.acl.detach()

    # -- loading -----------------------------------------------------------------------------
    def reload(self) -> int:
        """Read and parse the file; on success its rules replace the old ones and
        every ACL cache is emptied.  Returns the number of rules.  On failure the
        old rules stay and `AclFileError` says why (file:line:column for syntax)."""
        signature = _signature(self.path)
        try:
            text = self.path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise self._failed(f"cannot read the ACL file {self.path}: {reason}",
                               signature) from None
        try:
            rules = parse_acl(text, str(self.path))
        except AclSyntaxError as exc:
            raise self._failed(f"ACL file not loaded: {exc}", signature) from None
        self.broker.acl.replace(rules, str(self.path))
        self.broker.invalidate_acl_cache()
        self._signature = signature
        self._failed_signature = None
        self.loaded_at = time.time()
        self.last_error = None
        log.info("ACL file %s loaded: %d rules", self.path, len(rules))
        return len(rules)

    def _failed(self, message: str, signature: tuple[int, int, int] | None) -> AclFileError:
        self.last_error = message
        self._failed_signature = signature
        return AclFileError(message)

    def status(self) -> AclStatus:
        return AclStatus(str(self.path), self.broker.acl.rules, self.loaded_at,
                         self.last_error, self.check_interval)

    # -- watching for changes ----------------------------------------------------------------
    def check_changed(self) -> bool:
        """Reload if the file changed since the last load; True if it was reloaded.
        A change that fails to load is logged once (the old rules stay)."""
        signature = _signature(self.path)
        if signature == self._signature or signature == self._failed_signature:
            return False
        try:
            self.reload()
        except AclFileError as exc:
            log.error("%s; the previous rules stay in force", exc)
            return False
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                self.check_changed()
            except Exception:  # never let the watcher die
                log.exception("checking the ACL file %s failed", self.path)
