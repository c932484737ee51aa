"""starling.plugins.auth.passwords: EMQ X's emqx_passwd hashes, salted as
emqx_auth_clientid / emqx_auth_username store them (facts §10)."""

from __future__ import annotations

import asyncio
import hashlib

import bcrypt
import pytest

from starling.plugins.auth.passwords import (
    Hashed,
    HashType,
    check_async,
    digest,
    make,
    make_async,
    parse_hash_type,
)

SALT = bytes.fromhex("0a1b2c3d")


@pytest.mark.parametrize(("text", "parsed", "canonical"), [
    ("plain", HashType("plain"), "plain"),
    ("md5", HashType("md5"), "md5"),
    (" SHA ", HashType("sha"), "sha"),
    ("sha256", HashType("sha256"), "sha256"),
    ("sha512", HashType("sha512"), "sha512"),
    ("pbkdf2", HashType("pbkdf2"), "pbkdf2,sha256,1000,20"),
    ("pbkdf2,sha,2,16", HashType("pbkdf2", mac="sha", iterations=2, dklen=16),
     "pbkdf2,sha,2,16"),
    ("bcrypt", HashType("bcrypt"), "bcrypt,12"),
    ("bcrypt,5", HashType("bcrypt", rounds=5), "bcrypt,5"),
])
def test_parse(text: str, parsed: HashType, canonical: str) -> None:
    assert parse_hash_type(text) == parsed
    assert str(parsed) == canonical
    assert parse_hash_type(canonical) == parsed


@pytest.mark.parametrize("text", ["", "sha1", "md5,1", "pbkdf2,sha256", "pbkdf2,rot13,1,1",
                                  "pbkdf2,sha256,0,20", "pbkdf2,sha256,x,20", "bcrypt,3",
                                  "bcrypt,32", "bcrypt,4,4"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hash_type(text)


def test_digests_are_emqx_passwd_of_salt_then_password() -> None:
    """hash(salt ‖ password) as lowercase hex; plain keeps the password."""
    pw = b"public"
    assert digest(HashType("plain"), pw, SALT) == "public"
    for name, algo in (("md5", "md5"), ("sha", "sha1"), ("sha256", "sha256"),
                       ("sha512", "sha512")):
        assert digest(HashType(name), pw, SALT) == hashlib.new(algo, SALT + pw).hexdigest()


def test_pbkdf2_is_rfc6070() -> None:
    """emqx_passwd's pbkdf2: PBKDF2(Macfun, Password, Salt, Iterations, Dklen) as hex;
    RFC 6070's first vector."""
    kind = parse_hash_type("pbkdf2,sha,1,20")
    assert digest(kind, b"password", b"salt") == "0c60c80f961f0e71f3a9b524af6012062fe037a6"


def test_bcrypt_hash_is_checked_by_the_bcrypt_library() -> None:
    hashed = make(parse_hash_type("bcrypt,4"), b"secret")
    assert hashed.hash.startswith("$2b$04$")
    assert bcrypt.checkpw(b"secret", hashed.hash.encode())
    assert hashed.check(b"secret") and not hashed.check(b"Secret")
    # passwords beyond bcrypt's 72 bytes are cut there (as bcrypt always did), not refused
    long = make(parse_hash_type("bcrypt,4"), b"x" * 100)
    assert long.check(b"x" * 72) and long.check(b"x" * 100)


@pytest.mark.parametrize("kind", ["plain", "md5", "sha", "sha256", "sha512", "pbkdf2",
                                  "bcrypt,4"])
def test_make_check_and_json_round_trip(kind: str) -> None:
    hashed = make(parse_hash_type(kind), "pässword".encode())
    assert len(hashed.salt) == 4
    row = hashed.to_json()
    assert set(row) == {"salt", "hash", "hash_type"}
    again = Hashed.from_json(row)
    assert again == hashed
    assert again.check("pässword".encode())
    assert not again.check(b"password")
    assert not again.check(b"")


def test_salts_are_random() -> None:
    kind = parse_hash_type("sha256")
    assert len({make(kind, b"same").hash for _ in range(20)}) == 20


def test_async_forms_agree() -> None:
    async def scenario() -> None:
        for kind in ("sha256", "pbkdf2", "bcrypt,4"):
            hashed = await make_async(parse_hash_type(kind), b"pw")
            assert await check_async(hashed, b"pw")
            assert not await check_async(hashed, b"pw2")

    asyncio.run(scenario())


def test_a_damaged_bcrypt_row_never_matches() -> None:
    hashed = Hashed(SALT, "not-a-bcrypt-hash", parse_hash_type("bcrypt"))
    assert not hashed.check(b"not-a-bcrypt-hash")
