"""Dashboard users (emqx_dashboard): who may use the dashboard listener.

Users are kept in the store's `users` table, as ``{username, password, tags}``
with the password hashed.  EMQ X v3 stored 4 random salt bytes followed by
MD5(salt ‖ password); Starling stores PBKDF2-HMAC-SHA256 with a 16-byte random
salt per user and 600 000 iterations, written as
``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>`` so the cost can be
raised later without invalidating stored hashes.  Deriving a hash takes a
noticeable fraction of a second on purpose, so it runs in a worker thread,
never on the event loop; a successful check is remembered (as an HMAC under a
per-process random key, never the password itself) so that the Basic
credentials of every dashboard request are not derived again each time.

The default user (``dashboard.default_user.login``, "admin") is created when
absent.  Its initial password is ``dashboard.default_user.password``, else
the one in ``<data_dir>/dashboard_password``, else a generated one written
there (mode 0600); the log says where, never what.  As in EMQ X it is an *initial* password:
once the user exists, changing the configuration changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .apps import generate_secret, write_secret_file
from .stored import StoredTable
from .tokens import TokenTable, password_tag

log = logging.getLogger(__name__)
startup_log = logging.getLogger("starling.startup")

HASH_SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000
SALT_BYTES = 16
PASSWORD_FILE = "dashboard_password"
#: The key under which the loaded dashboard publishes its users to the routes
#: (`ApiContext.services`); absent while emqx_dashboard is not loaded.
USERS_SERVICE = "dashboard_users"
#: Tags of the default user (EMQ X's).
DEFAULT_TAGS = "administrator"
MAX_USERNAME = 256
MAX_PASSWORD = 1024
MAX_TAGS = 1024


def hash_password(password: str, *, iterations: int = ITERATIONS,
                  salt: bytes | None = None) -> str:
    """The stored form of `password` (slow on purpose; see the module docstring)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join((HASH_SCHEME, str(iterations), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()))


def verify_password(password: str, encoded: str) -> bool:
    """Does `password` match the stored `encoded` hash (constant-time compare)?"""
    try:
        scheme, rounds, salt_text, digest_text = encoded.split("$")
        if scheme != HASH_SCHEME:
            return False
        iterations = int(rounds)
        salt = base64.b64decode(salt_text, validate=True)
        expected = base64.b64decode(digest_text, validate=True)
    except (ValueError, binascii.Error):
        return False
    if not 1 <= iterations <= 10_000_000:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hmac.compare_digest(actual, expected)


#: What an unknown user's password is checked against: a hash no password matches
#: (an all-zero digest), as costly to check as a real one.
_NO_USER_HASH = "$".join((HASH_SCHEME, str(ITERATIONS),
                          base64.b64encode(secrets.token_bytes(SALT_BYTES)).decode(),
                          base64.b64encode(bytes(32)).decode()))


def generate_password() -> str:
    return generate_secret(16)


def username_problem(username: str) -> str | None:
    """Why `username` cannot be a dashboard user name, or None if it can."""
    if len(username) > MAX_USERNAME:
        return f"'username' must be at most {MAX_USERNAME} characters"
    if ":" in username:  # Basic credentials are "user:password": it could never log in
        return "'username' must not contain ':'"
    if any(ord(c) < 32 or ord(c) == 127 for c in username):
        return "'username' must not contain control characters"
    return None


@dataclass(slots=True)
class DashboardUser:
    username: str
    password: str  #: the encoded hash, never the password
    tags: str = ""

    def public(self) -> dict[str, Any]:
        """What `GET /users/` shows: `{username, tags}`."""
        return {"username": self.username, "tags": self.tags}


class UserRegistry(StoredTable[DashboardUser]):
    """Dashboard users by name, written through to the store's `users` table when
    attached."""

    TABLE = "users"

    def __init__(self) -> None:
        super().__init__()
        #: The default user's name (it cannot be deleted); set by `bootstrap`.
        self.default_login = "admin"
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        #: Sign-in tokens of the web dashboard (tokens.py).
        self.tokens = TokenTable()

    def _row(self, data: dict[str, Any]) -> DashboardUser:
        return DashboardUser(**data)

    # -- writing ---------------------------------------------------------------------
    def _row_changed(self, key: str) -> None:
        self._verified.pop(key, None)  # a password changed on another node

    def _put(self, user: DashboardUser) -> None:
        self._verified.pop(user.username, None)
        self._write(user.username, user)

    async def add(self, username: str, password: str, tags: str) -> bool:
        """Create a user; False if the name is taken."""
        if username in self._rows:
            return False
        encoded = await asyncio.to_thread(hash_password, password)
        if username in self._rows:  # created meanwhile
            return False
        self._put(DashboardUser(username, encoded, tags))
        return True

    def set_tags(self, username: str, tags: str) -> bool:
        user = self._rows.get(username)
        if user is None:
            return False
        self._put(DashboardUser(user.username, user.password, tags))
        return True

    async def set_password(self, username: str, password: str) -> bool:
        if username not in self._rows:
            return False
        encoded = await asyncio.to_thread(hash_password, password)
        user = self._rows.get(username)
        if user is None:  # deleted meanwhile
            return False
        self._put(DashboardUser(user.username, encoded, user.tags))
        return True

    def delete(self, username: str) -> bool:
        self._verified.pop(username, None)
        return self._remove(username)

    # -- checking --------------------------------------------------------------------
    def _fingerprint(self, user: DashboardUser, password: str) -> bytes:
        message = "\0".join((user.username, user.password, password)).encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def check(self, username: str, password: str) -> bool:
        """Are these a user's name and password?  (The Basic-auth check of the
        dashboard listener, and `POST /auth`.)"""
        user = self._rows.get(username)
        if user is None:
            # As long as a wrong password takes: the time does not tell who exists.
            await asyncio.to_thread(verify_password, password, _NO_USER_HASH)
            return False
        fingerprint = self._fingerprint(user, password)
        cached = self._verified.get(username)
        if cached is not None and hmac.compare_digest(cached, fingerprint):
            return True
        if not await asyncio.to_thread(verify_password, password, user.password):
            return False
        if self._rows.get(username) is user:  # unchanged while we checked
            self._verified[username] = fingerprint
        return True

    def issue_token(self, username: str, remember: bool) -> tuple[str, float]:
        """A sign-in token for a user whose password was just checked: (token, expiry)."""
        user = self._rows[username]
        return self.tokens.issue(username, password_tag(user.password), remember)

    async def check_sign_in(self, username: str, secret: str) -> bool:
        """The dashboard listener's Basic-auth check: `secret` is a live sign-in
        token of the user, or the user's password."""
        user = self._rows.get(username)
        tag = password_tag(user.password) if user is not None else None
        if self.tokens.valid(username, secret, tag):
            return True
        return await self.check(username, secret)

    # -- the default user ------------------------------------------------------------
    def bootstrap(self, login: str, configured_password: str, data_dir: Path) -> None:
        """Create the default user when absent (see the module docstring)."""
        self.default_login = login
        if login in self._rows:
            return  # the password is the user's own from now on
        if configured_password:
            password = configured_password
            log.info("dashboard: created user %r with the password of "
                     "dashboard.default_user.password", login)
        else:
            path = data_dir / PASSWORD_FILE
            if path.exists():
                password = path.read_text().strip()
                startup_log.info("dashboard: created user %r with the password in %s",
                                 login, path)
            else:
                password = generate_password()
                write_secret_file(path, password)
                startup_log.info(
                    "dashboard: created user %r; its password is in %s (mode 0600). "
                    "Change it with PUT /api/v3/change_pwd/%s or 'starling ctl admins "
                    "passwd', or set dashboard.default_user.password before the first "
                    "start.", login, path, login)
        self._put(DashboardUser(login, hash_password(password), DEFAULT_TAGS))
