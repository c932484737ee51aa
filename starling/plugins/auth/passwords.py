"""Password hashing as EMQ X v3's emqx_passwd does it: the one module of the
auth plugins that hashes.  `Hashed` entries of the built-in tables
(emqx_auth_clientid / username) are made and checked here, and so are the
stored hashes of the database backends (`PasswordHash`) and LDAP's
``userPassword`` values (`ldap_password_matches`).

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

The backends' ``password_hash`` (`parse_password_hash`) adds where their salt
column goes: ``salt,HASH`` (H(salt ‖ password)), ``HASH,salt`` (H(password ‖
salt)), ``salt,bcrypt`` (the salt column is bcrypt's own salt) and
``pbkdf2,MAC,ITERATIONS,DKLEN`` (the salt column is the PBKDF2 salt); their hex
digests compare case-insensitively.
"""

from __future__ import annotations

import asyncio
import base64
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


def digest(kind: HashType, password: bytes, salt: bytes, salt_after: bool = False) -> str:
    """The stored hash text of `password` with `salt`: H(salt ‖ password), or
    H(password ‖ salt) with `salt_after`; PBKDF2's salt; bcrypt makes its own."""
    if kind.name == "plain":
        return password.decode("utf-8", "surrogateescape")
    if kind.name in DIGESTS:
        salted = password + salt if salt_after else salt + password
        return hashlib.new(DIGESTS[kind.name], salted).hexdigest()
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
            return bcrypt_matches(password, self.hash.encode("ascii", "replace"))
        mine = digest(self.kind, password, self.salt).encode("utf-8", "surrogateescape")
        return hmac.compare_digest(mine, self.hash.encode("utf-8", "surrogateescape"))


def bcrypt_matches(password: bytes, stored: bytes, salt: bytes | None = None) -> bool:
    """Does `password` give the bcrypt hash `stored` (with bcrypt's own `salt`
    from a separate column, if given)?  A damaged hash or salt never matches."""
    try:
        if salt is not None:
            return hmac.compare_digest(bcrypt.hashpw(password[:BCRYPT_MAX_BYTES], salt), stored)
        return bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], stored)
    except ValueError:  # not a bcrypt hash or salt
        return False


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


# -- the database backends' password_hash --------------------------------------------------

@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A parsed ``password_hash`` of EMQ X's database auth plugins: a hash type,
    and where the stored salt goes."""

    kind: HashType
    salt: str = ""  #: "" (no salt), "prefix" (salt,HASH) or "suffix" (HASH,salt)

    def __str__(self) -> str:
        name = self.kind.name
        if name == "pbkdf2":  # its salt is the PBKDF2 salt
            return str(self.kind)
        if self.salt == "prefix":
            return f"salt,{name}"
        if self.salt == "suffix":
            return f"{name},salt"
        return name

    @property
    def slow(self) -> bool:
        return self.kind.slow

    def check(self, stored: str | bytes | None, password: bytes,
              salt: str | bytes | None = None) -> bool:
        """Does `password` give the `stored` hash?  A missing hash never matches."""
        if stored is None:
            return False
        stored_b = stored if isinstance(stored, bytes) else str(stored).encode()
        salt_b = b"" if salt is None else (salt if isinstance(salt, bytes)
                                           else str(salt).encode())
        name = self.kind.name
        if name == "bcrypt":  # with a salt column: bcrypt's own "$2b$12$..." salt
            return bcrypt_matches(password, stored_b, salt_b if self.salt else None)
        mine = digest(self.kind, password, salt_b if self.salt else b"", self.salt == "suffix")
        mine_b = mine.encode("utf-8", "surrogateescape")
        if name == "plain":
            return hmac.compare_digest(mine_b, stored_b)
        return hmac.compare_digest(mine_b, stored_b.lower())

    async def check_async(self, stored: str | bytes | None, password: bytes,
                          salt: str | bytes | None = None) -> bool:
        """`check`, in a worker thread for the slow hashes."""
        if self.slow:
            return await asyncio.to_thread(self.check, stored, password, salt)
        return self.check(stored, password, salt)


_SIMPLE = ("plain", "md5", "sha", "sha256", "sha512", "bcrypt")


def parse_password_hash(value: str) -> PasswordHash:
    """``sha256``, ``salt,sha256``, ``sha256,salt``, ``salt,bcrypt``,
    ``pbkdf2,sha256,1000,20`` … → `PasswordHash`; `ValueError` says what is wrong."""
    parts = [p.strip() for p in value.strip().lower().split(",")]
    if parts[0] == "pbkdf2":
        if len(parts) == 1:
            raise ValueError("pbkdf2 needs its parameters: pbkdf2,MAC,ITERATIONS,DKLEN "
                             "(e.g. pbkdf2,sha256,1000,20)")
        return PasswordHash(parse_hash_type(value), "prefix")
    if len(parts) == 1 and parts[0] in _SIMPLE:
        return PasswordHash(HashType(parts[0]))
    if len(parts) == 2 and parts[0] == "salt" and parts[1] in _SIMPLE and parts[1] != "plain":
        return PasswordHash(HashType(parts[1]), "prefix")
    if len(parts) == 2 and parts[1] == "salt" and parts[0] in _SIMPLE and parts[0] != "plain":
        return PasswordHash(HashType(parts[0]), "suffix")
    raise ValueError(f"unknown password hash {value!r}: one of {', '.join(_SIMPLE)}, "
                     "salt,HASH, HASH,salt or pbkdf2,MAC,ITERATIONS,DKLEN")


# -- LDAP userPassword values (emqx_auth_ldap) ----------------------------------------------

#: LDAP ``userPassword`` schemes (RFC 2307): ``{SCHEME}`` → (hashlib name, salted).
LDAP_SCHEMES = {"SHA": ("sha1", False), "SSHA": ("sha1", True), "MD5": ("md5", False),
                "SMD5": ("md5", True), "SHA256": ("sha256", False), "SSHA256": ("sha256", True),
                "SHA384": ("sha384", False), "SSHA384": ("sha384", True),
                "SHA512": ("sha512", False), "SSHA512": ("sha512", True)}


def ldap_password_matches(stored: bytes, password: bytes) -> bool:
    """An LDAP ``userPassword`` value (RFC 2307 ``{SCHEME}base64`` or plain)
    against the password a client sent; unknown schemes never match."""
    if stored.startswith(b"{") and b"}" in stored:
        scheme, _, rest = stored[1:].partition(b"}")
        spec = LDAP_SCHEMES.get(scheme.decode("ascii", "replace").upper())
        if spec is None:
            return False
        name, salted = spec
        try:
            raw = base64.b64decode(rest, validate=True)
        except ValueError:
            return False
        size = hashlib.new(name).digest_size
        digest, salt = (raw[:size], raw[size:]) if salted else (raw, b"")
        return hmac.compare_digest(hashlib.new(name, password + salt).digest(), digest)
    return hmac.compare_digest(stored, password)
