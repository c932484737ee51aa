"""What emqx_auth_clientid and emqx_auth_username share: a table of
key → salted password hash, kept in the store, consulted at CONNECT.

The two plugins differ only in which CONNECT field is the key (the client id,
or the user name), their EMQ X conf prefix (``auth.client`` / ``auth.user``),
their store table, their metric names and EMQ X's wording of two errors; each
is a `TableAuthPlugin` subclass that says so in a `TableSpec`.

At CONNECT (the ``client.authenticate`` hook, EMQ X v3.2's `check/3`):

- no entry for the key (or no user name, for emqx_auth_username) → the result
  is left as it is ("ignore"); counted ``auth/<kind>/ignore``;
- an entry and the right password → the chain stops with success, not
  anonymous; ``auth/<kind>/success``;
- an entry and a wrong (or no) password → the chain stops with "bad user name
  or password" (CONNACK 4, MQTT 5.0 0x86); ``auth/<kind>/failure``.

Config keys (EMQ X's ``etc/plugins/<plugin>.conf``): ``<prefix>.password_hash``
(`passwords.parse_hash_type`; used for entries added or changed from then on)
and the preloaded entries ``<prefix>.N.<field>`` / ``<prefix>.N.password``,
added at load when the table has no entry of that key yet (EMQ X 3.2.x).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starling.broker import AuthResult, ClientInfo, HookPoint, Stop
from starling.mqtt import ReasonCode

from .. import ConfigKey, Plugin, PluginContext, Table
from .passwords import (
    DEFAULT_HASH,
    HASH_TYPES,
    Hashed,
    HashType,
    check_async,
    make_async,
    parse_hash_type,
)


@dataclass(frozen=True, slots=True)
class TableSpec:
    plugin: str  #: registry name, "emqx_auth_clientid"
    field: str  #: "clientid" / "username": REST field, conf `<prefix>.N.<field>`
    conf: str  #: conf prefix, "auth.client" / "auth.user"
    table: str  #: store table, "auth_clientid"
    metrics: str  #: metric prefix, "auth/clientid"
    existed: str  #: EMQ X's message for adding an existing key ("exitsted", sic)
    not_existed: str  #: ... and for updating an unknown one ("noexitsted", sic)

    @property
    def hash_key(self) -> str:
        return f"{self.conf}.password_hash"

    def schema(self) -> tuple[ConfigKey, ...]:
        return (
            ConfigKey(self.hash_key, DEFAULT_HASH,
                      f"Password hash of new entries: {', '.join(HASH_TYPES)} "
                      "(pbkdf2,MAC,ITERATIONS,DKLEN and bcrypt,ROUNDS also accepted).",
                      parse_hash_type),
            ConfigKey(f"{self.conf}.$id.{self.field}", "",
                      f"A {self.field} added at load if absent (with {self.conf}.$id.password).",
                      _non_empty, required=False),
            ConfigKey(f"{self.conf}.$id.password", "",
                      f"The password of {self.conf}.$id.{self.field}.", _non_empty,
                      required=False),
        )


def _non_empty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


class PasswordTable:
    """The entries of one plugin: key → `Hashed`, written through to the store."""

    def __init__(self, rows: Table) -> None:
        self.rows = rows

    def keys(self) -> list[str]:
        return sorted(self.rows.keys())

    def get(self, key: str) -> Hashed | None:
        row = self.rows.get(key)
        if row is None:
            return None
        try:
            return Hashed.from_json(row)
        except (KeyError, TypeError, ValueError):
            return None  # a damaged row: treated as absent, never as a match

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    async def add(self, key: str, password: str, hash_type: HashType) -> bool:
        """False if the key exists (checked again after hashing, which may await)."""
        if key in self.rows:
            return False
        hashed = await make_async(hash_type, password.encode())
        if key in self.rows:
            return False
        self.rows.put(key, hashed.to_json())
        return True

    async def update(self, key: str, password: str, hash_type: HashType) -> bool:
        """False if there is no such key."""
        if key not in self.rows:
            return False
        hashed = await make_async(hash_type, password.encode())
        if key not in self.rows:
            return False
        self.rows.put(key, hashed.to_json())
        return True

    def delete(self, key: str) -> None:
        self.rows.delete(key)


class TableAuthPlugin(Plugin):
    """An auth plugin over a `PasswordTable`; subclasses set `SPEC` and `key_of`."""

    SPEC: ClassVar[TableSpec]

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        spec = self.SPEC
        self.hash_type = settings[spec.hash_key]
        self.table = PasswordTable(context.store.table(spec.table))
        self._counters = context.broker.counters
        for outcome in ("success", "failure", "ignore"):
            self._counters.setdefault(f"{spec.metrics}/{outcome}", 0)

    @classmethod
    def key_of(cls, client: ClientInfo) -> str | None:
        raise NotImplementedError

    def preloaded(self) -> dict[str, str]:
        """``<prefix>.N.<field>`` / ``<prefix>.N.password`` pairs: key → password."""
        spec = self.SPEC
        keys: dict[str, str] = {}
        passwords: dict[str, str] = {}
        for name, value in self.settings.items():
            parts = name.split(".")
            if not name.startswith(spec.conf + ".") or len(parts) != spec.conf.count(".") + 3:
                continue
            if parts[-1] == spec.field:
                keys[parts[-2]] = value
            elif parts[-1] == "password":
                passwords[parts[-2]] = value
        return {keys[n]: passwords[n] for n in sorted(keys) if n in passwords}

    async def load(self) -> None:
        for key, password in self.preloaded().items():
            await self.table.add(key, password, self.hash_type)
        self.context.broker.hooks.add(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)

    async def unload(self) -> None:
        self.context.broker.hooks.remove(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)

    async def authenticate(self, client: ClientInfo, acc: AuthResult) -> Stop | None:
        metrics = self.SPEC.metrics
        key = self.key_of(client)
        hashed = self.table.get(key) if key is not None else None
        if hashed is None:
            self._counters[f"{metrics}/ignore"] += 1
            return None
        if await check_async(hashed, client.password or b""):
            self._counters[f"{metrics}/success"] += 1
            return Stop(AuthResult(ReasonCode.SUCCESS, anonymous=False))
        self._counters[f"{metrics}/failure"] += 1
        return Stop(AuthResult(ReasonCode.BAD_USER_NAME_OR_PASSWORD, anonymous=False))
