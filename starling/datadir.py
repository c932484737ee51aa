"""The node's data directory: used by one node at a time, readable by its owner only.

Two nodes on one directory would both restore the same persistent sessions and
both deliver their queued messages.  So a node takes an exclusive `flock` on
``<data_dir>/starling.lock`` before it opens anything, and holds it while it
runs.  The kernel drops the lock when the process ends in any way (kill -9
included), so a stale lock file never blocks a restart: only a live holder
does.  The holder writes its pid into the file, for the refusal message.

The directory holds API secrets (in the store and in ``api_secret``), the
dashboard password and queued messages, so it is made ``0700`` and every file
in it ``0600`` (sub-directories ``0700``), also when it already existed with
looser modes.  Files the node creates later are covered by the process umask
(`starling.cli` sets 077).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = "starling.lock"
DIR_MODE = 0o700
FILE_MODE = 0o600


class DataDirError(Exception):
    """The data directory cannot be used; the message names it and says why."""


class DataDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def acquire(self) -> None:
        """Create the directory if needed, lock it, and tighten its modes.  Raises
        `DataDirError` when it is not a directory, cannot be made, or another
        node holds it."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise DataDirError(f"data dir {path}: exists and is not a directory")
        try:
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"data dir {path}: cannot create it: {_why(exc)}") from None
        lock_path = path / LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise DataDirError(f"data dir {path}: cannot open {LOCK_FILE}: {_why(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {holder}" if holder else "another process"
                raise DataDirError(
                    f"data dir {path}: in use by another Starling node ({who}); stop it "
                    "first, or give this node its own --data-dir") from None
            raise DataDirError(f"data dir {path}: cannot lock {LOCK_FILE}: {_why(exc)}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self.tighten()

    def tighten(self) -> None:
        """The directory 0700, its files 0600 and sub-directories 0700 (symbolic links
        and what belongs to another user are left alone)."""
        _chmod(self.path, DIR_MODE)
        for root, dirs, files in os.walk(self.path):
            for name in dirs:
                _chmod(Path(root, name), DIR_MODE)
            for name in files:
                _chmod(Path(root, name), FILE_MODE)

    def release(self) -> None:
        """Drop the lock (the file stays: removing it could let two nodes lock two
        different files of the same name)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _chmod(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
            return
        if stat.S_IMODE(info.st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        return  # removed meanwhile (a SQLite journal)
    except OSError as exc:
        log.warning("data dir: cannot make %s mode %o: %s", path, mode, _why(exc))


def _why(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
