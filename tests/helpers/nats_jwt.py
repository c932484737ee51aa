"""NATS decentralized auth for the tests: an operator, an account with JetStream
and a user, as `nsc` would make them (ed25519 nkeys signing JWTs), the
nats-server config that trusts them and the user's `.creds` file.  Debian has no
`nsc`; the JWT format is NATS's (header ``ed25519-nkey``, claims with a `nats`
section of type operator / account / user, version 2)."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import nkeys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def public(key: nkeys.KeyPair) -> str:
    return str(key.public_key.decode())


def jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A JWT for `subject` signed by `issuer`."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims = {"jti": _b64(os.urandom(24)), "iat": int(time.time()), "iss": public(issuer),
              "name": name, "sub": subject, "nats": {**nats, "version": 2}}
    body = _b64(json.dumps(claims).encode())
    signature = _b64(issuer.sign(f"{header}.{body}".encode()))
    return f"{header}.{body}.{signature}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
#: An account's limits with JetStream on (storage not 0).
ACCOUNT_LIMITS = {**UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
                  "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1,
                  "consumer": -1}


class Operator:
    """One operator, a system account, one application account with JetStream."""

    def __init__(self) -> None:
        self.operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
        self.system = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        self.account = new_key(nkeys.PREFIX_BYTE_ACCOUNT)
        op = public(self.operator)
        self.operator_jwt = jwt(self.operator, op, "test-operator", {"type": "operator"})
        self.system_jwt = jwt(self.operator, public(self.system), "SYS",
                              {"type": "account", "limits": {**UNLIMITED, "conn": -1}})
        self.account_jwt = jwt(self.operator, public(self.account), "starling",
                               {"type": "account", "limits": ACCOUNT_LIMITS})

    def server_config(self, path: Path) -> Path:
        """A nats-server config trusting this operator (accounts preloaded in memory)."""
        system, account = public(self.system), public(self.account)
        path.write_text(
            f'operator: "{self.operator_jwt}"\n'
            f"system_account: {system}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f'  {system}: "{self.system_jwt}"\n'
            f'  {account}: "{self.account_jwt}"\n'
            "}\n", "utf-8")
        return path

    def user_creds(self, path: Path, name: str = "starling-node") -> Path:
        """A user of the account: its `.creds` file (the JWT and the user's seed)."""
        user = new_key(nkeys.PREFIX_BYTE_USER)
        token = jwt(self.account, public(user), name,
                    {"type": "user", "pub": {}, "sub": {}, **UNLIMITED})
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n" f"{token}\n" "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n" f"{user.seed.decode()}\n"
            "------END USER NKEY SEED------\n", "utf-8")
        path.chmod(0o600)
        return path
