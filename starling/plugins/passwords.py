"""Password hashing as EMQ X v3's emqx_passwd does it, for the built-in auth plugins.

A hash type is written as in EMQ X's conf files (``auth.client.password_hash``,
``auth.user.password_hash``, and the ``password_hash`` of EMQ X's database
auth plugins for the parameterised forms):

=================================  ================================================
value                              stored hash (after the 4-byte salt)
=================================  ================================================
``plain``                          the password itself
``md5``, ``sha``, ``sha256``,      lowercase hex of H(salt ‖ password)
``sha512``                         (``sha`` is SHA-1; ``sha256`` is the default)
``pbkdf2[,MAC,ITERATIONS,DKLEN]``  lowercase hex of PBKDF2-HMAC-MAC(password, salt,
                                   ITERATIONS, DKLEN) — emqx_passwd's
                                   ``{Salt, Password, Macfun, Iterations, Dklen}``;
                                   bare ``pbkdf2`` is ``pbkdf2,sha256,1000,20`` (the
                                   example in EMQ X's conf files)
``bcrypt[,ROUNDS]``                bcrypt's own ``$2b$…`` string (it carries its own
                                   128-bit salt; ROUNDS = log2 cost, default 12 as
                                   erlang-bcrypt; passwords beyond 72 bytes are cut
                                   there, as bcrypt always did)
=================================  ================================================

Every entry is stored as EMQ X stores it, a random 4-byte salt followed by the
hash; Starling also records the hash type the entry was made with and checks
the entry with that type (docs/auth.md says why).  bcrypt comes from the
``bcrypt`` package, a runtime dependency.  PBKDF2 and bcrypt are slow on
purpose: callers on the event loop use `check_async` / `make_async`, which run
them in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import bcrypt

#: Hash type names, as EMQ X spells them.
HASH_TYPES = ("plain", "md5", "sha", "sha256", "sha512", "pbkdf2", "bcrypt")
DEFAULT_HASH = "sha256"
SALT_BYTES = 4
#: PBKDF2's MAC functions, EMQ X name → hashlib name.
PBKDF2_MACS = {"md5": "md5", "sha": "sha1", "sha224": "sha224", "sha256": "sha256",
               "sha384": "sha384", "sha512": "sha512"}
DIGESTS = {"md5": "md5", "sha": "sha1", "sha256": "sha256", "sha512": "sha512"}
BCRYPT_MAX_BYTES = 72


@dataclass(frozen=True, slots=True)
class HashType:
    """A parsed ``password_hash`` value."""

    name: str
    mac: str = "sha256"
    iterations: int = 1000
    dklen: int = 20
    rounds: int = 12

    def __str__(self) -> str:
        if self.name == "pbkdf2":
            return f"pbkdf2,{self.mac},{self.iterations},{self.dklen}"
        if self.name == "bcrypt":
            return f"bcrypt,{self.rounds}"
        return self.name

    @property
    def slow(self) -> bool:
        return self.name in ("pbkdf2", "bcrypt")


def parse_hash_type(value: str) -> HashType:
    """``sha256``, ``pbkdf2,sha256,1000,20``, ``bcrypt,10`` … → `HashType`; a
    `ValueError` names what is wrong."""
    parts = [p.strip() for p in value.strip().lower().split(",")]
    name, args = parts[0], parts[1:]
    if name not in HASH_TYPES:
        raise ValueError(f"unknown password hash {value!r} (one of {', '.join(HASH_TYPES)})")
    if name == "pbkdf2":
        if not args:
            return HashType("pbkdf2")
        if len(args) != 3 or args[0] not in PBKDF2_MACS:
            raise ValueError(f"expected pbkdf2,MAC,ITERATIONS,DKLEN with MAC one of "
                             f"{', '.join(PBKDF2_MACS)}, got {value!r}")
        iterations, dklen = _positive(args[1], value), _positive(args[2], value)
        return HashType("pbkdf2", mac=args[0], iterations=iterations, dklen=dklen)
    if name == "bcrypt":
        if not args:
            return HashType("bcrypt")
        rounds = _positive(args[0], value) if len(args) == 1 else 0
        if not 4 <= rounds <= 31:
            raise ValueError(f"expected bcrypt or bcrypt,ROUNDS with ROUNDS 4..31, got {value!r}")
        return HashType("bcrypt", rounds=rounds)
    if args:
        raise ValueError(f"{name} takes no parameters, got {value!r}")
    return HashType(name)


def _positive(text: str, whole: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"expected a positive integer in {whole!r}, got {text!r}")
    return number


def digest(kind: HashType, password: bytes, salt: bytes) -> str:
    """The stored hash text of `password` with `salt` (bcrypt makes its own salt)."""
    if kind.name == "plain":
        return password.decode("utf-8", "surrogateescape")
    if kind.name in DIGESTS:
        return hashlib.new(DIGESTS[kind.name], salt + password).hexdigest()
    if kind.name == "pbkdf2":
        return hashlib.pbkdf2_hmac(PBKDF2_MACS[kind.mac], password, salt, kind.iterations,
                                   kind.dklen).hex()
    if kind.name == "bcrypt":
        return bcrypt.hashpw(password[:BCRYPT_MAX_BYTES],
                             bcrypt.gensalt(kind.rounds)).decode("ascii")
    raise ValueError(f"unknown password hash {kind.name!r}")


@dataclass(frozen=True, slots=True)
class Hashed:
    """A stored password: salt ‖ hash, and the hash type it was made with."""

    salt: bytes
    hash: str
    kind: HashType

    def to_json(self) -> dict[str, str]:
        return {"salt": self.salt.hex(), "hash": self.hash, "hash_type": str(self.kind)}

    @classmethod
    def from_json(cls, row: dict[str, str]) -> Hashed:
        return cls(bytes.fromhex(row["salt"]), row["hash"], parse_hash_type(row["hash_type"]))

    def check(self, password: bytes) -> bool:
        if self.kind.name == "bcrypt":
            try:
                return bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], self.hash.encode("ascii"))
            except ValueError:  # not a bcrypt hash: a damaged row never matches
                return False
        mine = digest(self.kind, password, self.salt).encode("utf-8", "surrogateescape")
        return hmac.compare_digest(mine, self.hash.encode("utf-8", "surrogateescape"))


def make(kind: HashType, password: bytes) -> Hashed:
    salt = secrets.token_bytes(SALT_BYTES)
    return Hashed(salt, digest(kind, password, salt), kind)


async def make_async(kind: HashType, password: bytes) -> Hashed:
    if kind.slow:
        return await asyncio.to_thread(make, kind, password)
    return make(kind, password)


async def check_async(hashed: Hashed, password: bytes) -> bool:
    if hashed.kind.slow:
        return await asyncio.to_thread(hashed.check, password)
    return hashed.check(password)
