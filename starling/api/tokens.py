"""Sign-in tokens of dashboard users: what the web dashboard keeps instead of
a password.

``POST /api/v3/auth/token`` trades a user's name and password for a random
token; the dashboard listener then takes ``<username>:<token>`` as HTTP Basic
credentials, as it takes ``<username>:<password>``.  The browser keeps the
token (in `sessionStorage`, or in `localStorage` for "remember me"), never
the password, and ``DELETE /api/v3/auth/token`` (logout) revokes it.

Only a SHA-256 digest of each token is kept, in the store's
``dashboard_tokens`` table, so tokens survive a restart and a copy of the
store gives none away.  A token is bound to the password its user had when it
was issued: changing the password (or deleting the user) ends every token of
that user.  Tokens are accepted by the dashboard listener only; `/auth` and
`/change_pwd` still want the password itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from .stored import StoredTable

#: Lifetime of a token without "remember me", and with it (seconds).
SESSION_TTL = 12 * 3600
REMEMBER_TTL = 30 * 24 * 3600
#: Most live tokens a user has; issuing one more drops the oldest.
MAX_PER_USER = 50
PREFIX = "sdt_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_tag(encoded_hash: str) -> str:
    """A short fingerprint of a user's stored password hash (not of the password)."""
    return hashlib.sha256(encoded_hash.encode()).hexdigest()[:32]


@dataclass(slots=True)
class SignInToken:
    username: str
    expires_at: float  #: epoch seconds
    password_tag: str  #: `password_tag` of the user's hash at issue time
    remember: bool = False


class TokenTable(StoredTable[SignInToken]):
    """Live tokens by the digest of the token."""

    TABLE = "dashboard_tokens"

    def _row(self, data: dict[str, object]) -> SignInToken:
        return SignInToken(**data)  # type: ignore[arg-type]

    def issue(self, username: str, tag: str, remember: bool,
              now: float | None = None) -> tuple[str, float]:
        """A new token for `username`: (token, expiry in epoch seconds)."""
        now = time.time() if now is None else now
        self._purge(now)
        mine = sorted((row.expires_at, key) for key, row in self._rows.items()
                      if row.username == username)
        for _, key in mine[:max(0, len(mine) - MAX_PER_USER + 1)]:
            self._remove(key)
        token = PREFIX + secrets.token_urlsafe(32)
        expires = now + (REMEMBER_TTL if remember else SESSION_TTL)
        self._write(_digest(token), SignInToken(username, expires, tag, remember))
        return token, expires

    def revoke(self, token: str) -> bool:
        return self._remove(_digest(token))

    def valid(self, username: str, token: str, current_tag: str | None,
              now: float | None = None) -> bool:
        """Is `token` a live token of `username`, whose password hash now has
        `current_tag` (None: no such user)?"""
        if not token.startswith(PREFIX):
            return False
        key = _digest(token)
        row = self._rows.get(key)
        if row is None or row.username != username:
            return False
        now = time.time() if now is None else now
        if row.expires_at <= now or current_tag is None \
                or not hmac.compare_digest(row.password_tag, current_tag):
            self._remove(key)  # expired or outlived its password: gone for good
            return False
        return True

    def _purge(self, now: float) -> None:
        for key in [k for k, row in self._rows.items() if row.expires_at <= now]:
            self._remove(key)
