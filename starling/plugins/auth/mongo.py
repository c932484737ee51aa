"""emqx_auth_mongo: clients authenticated, made superusers and given their ACL
by MongoDB documents (EMQ X v3.2's ``etc/plugins/emqx_auth_mongo.conf``),
through pymongo's asyncio client (`pymongo.AsyncMongoClient`, its own pool).

- auth: ``find_one`` in ``auth_query.collection`` with ``auth_query.selector``
  (``username=%u``): no document → ignore; else its ``password_field``
  (``password``, or ``password,salt``) checked with ``auth_query.password_hash``.
- super (``super_query = on``): ``find_one`` with ``super_query.selector``; the
  ``super_field`` is true / 1 → superuser.
- ACL (``acl_query = on``): one ``find_one`` per selector
  (``acl_query.selector`` and ``acl_query.selector.N``, EMQ X combines them with
  ``$or``); no document → ignore; else the topic filters of ``publish`` (or
  ``subscribe``) plus ``pubsub`` of all documents found: one matches → allow,
  none → deny.  ``%u`` / ``%c`` in a filter stand for the user name / client id.

A selector is ``field=value, field=value``; a value that is a placeholder
(``%u``, ``%c`` …) is the client's own, always as a string (never a query
operator).  A selector with a placeholder the client has no value for (no user
name) finds nothing.  Behaviour shared with the other backends: `auth_backend`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starling.broker import topic_matches

from .. import (
    ConfigKey,
    parse_choice,
    parse_nonnegative_int,
    parse_positive_int,
    parse_switch,
)
from .backend import (
    BackendAuthPlugin,
    common_keys,
    parse_servers,
    truthy,
)
from .common import fill, parse_pairs, placeholders_in

DEFAULT_PORT = 27017
TYPES = ("single", "unknown", "sharded", "rs")
#: auth.mongo.topology.* keys Starling passes to the driver (milliseconds).
TOPOLOGY_OPTIONS = {
    "connect_timeout_ms": "connectTimeoutMS",
    "socket_timeout_ms": "socketTimeoutMS",
    "server_selection_timeout_ms": "serverSelectionTimeoutMS",
    "wait_queue_timeout_ms": "waitQueueTimeoutMS",
    "heartbeat_frequency_ms": "heartbeatFrequencyMS",
    "local_threshold_ms": "localThresholdMS",
}
#: topology keys EMQ X's driver has and pymongo does not: accepted, not used.
TOPOLOGY_IGNORED = ("pool_size", "max_overflow", "overflow_ttl", "overflow_check_period",
                    "min_heartbeat_frequency_ms")

Selector = tuple[tuple[str, str], ...]


def parse_selector(value: str) -> Selector:
    """``username=%u, clientid=%c`` → ((username, %u), (clientid, %c))."""
    pairs = parse_pairs(value)
    if not pairs:
        raise ValueError("must not be empty")
    return pairs


def selector_filter(selector: Selector, values: Mapping[str, str | None]) -> dict[str, str] | None:
    """The MongoDB filter for one client; None when a placeholder it uses has no
    value for this client (so nothing is found, rather than documents without
    the field)."""
    out: dict[str, str] = {}
    for field, wanted in selector:
        if any(values.get(letter) is None for letter in placeholders_in(wanted)):
            return None
        out[field] = fill(wanted, values)
    return out


def parse_fields(value: str) -> tuple[str, ...]:
    fields = tuple(f.strip() for f in value.split(",") if f.strip())
    if not 1 <= len(fields) <= 2:
        raise ValueError(f"expected password or password,salt, got {value!r}")
    return fields


def acl_answer(documents: Sequence[Mapping[str, Any]], action: str, topic: str,
               values: Mapping[str, str | None]) -> str | None:
    """EMQ X's emqx_acl_mongo decision over the documents found: None (no
    document), allow (a filter of the action's list or ``pubsub`` matches), deny."""
    if not documents:
        return None
    names = {"u": values.get("u"), "c": values.get("c")}
    for document in documents:
        for key in (action, "pubsub"):
            filters = document.get(key) or []
            if isinstance(filters, str):
                filters = [filters]
            for topic_filter in filters:
                if isinstance(topic_filter, str) and topic_matches(
                        topic, fill(topic_filter, names, None)):
                    return "allow"
    return "deny"


class MongoAuthPlugin(BackendAuthPlugin):
    PLUGIN = "emqx_auth_mongo"
    BACKEND = "mongo"
    LABEL = "MongoDB"
    HASH_KEY = "auth.mongo.auth_query.password_hash"
    SCHEMA = (
        ConfigKey("auth.mongo.type", "single", "Topology: single, unknown, sharded or rs.",
                  parse_choice(*TYPES)),
        ConfigKey("auth.mongo.rs_set_name", "", "Replica set name (type rs).",
                  required=False),
        ConfigKey("auth.mongo.server", "127.0.0.1:27017",
                  "MongoDB servers, host:port[,host:port...].",
                  lambda v: parse_servers(v, DEFAULT_PORT)),
        ConfigKey("auth.mongo.pool", "8", "Most connections open at once.", parse_positive_int),
        ConfigKey("auth.mongo.login", "", "MongoDB user; empty: none.", required=False),
        ConfigKey("auth.mongo.password", "", "MongoDB password.", required=False),
        ConfigKey("auth.mongo.auth_source", "mqtt", "Database the login is defined in.",
                  required=False),
        ConfigKey("auth.mongo.database", "mqtt", "MongoDB database."),
        ConfigKey("auth.mongo.ssl", "false", "TLS to MongoDB: true or false.", parse_switch),
        ConfigKey("auth.mongo.ssl_opts.keyfile", "", "Client key file (TLS).",
                  required=False),
        ConfigKey("auth.mongo.ssl_opts.certfile", "", "Client certificate file (TLS).",
                  required=False),
        ConfigKey("auth.mongo.ssl_opts.cacertfile", "", "CA certificate file (TLS).",
                  required=False),
        ConfigKey("auth.mongo.w_mode", "", "Write mode (unsafe or safe); Starling only reads.",
                  parse_choice("unsafe", "safe", empty=True), required=False),
        ConfigKey("auth.mongo.r_mode", "", "Read mode: master (primary) or slave_ok "
                  "(secondaries too).", parse_choice("master", "slave_ok", empty=True), required=False),
        ConfigKey("auth.mongo.topology.$option", "",
                  "Driver option in milliseconds: " + ", ".join(TOPOLOGY_OPTIONS)
                  + " (EMQ X's " + ", ".join(TOPOLOGY_IGNORED) + " are accepted, unused).",
                  parse_nonnegative_int, required=False),
        *common_keys("auth.mongo", "MongoDB", hash_key="auth.mongo.auth_query.password_hash",
                     hash_default="sha256", on_error="ignore"),
        ConfigKey("auth.mongo.auth_query.collection", "mqtt_user", "Collection of the users."),
        ConfigKey("auth.mongo.auth_query.password_field", "password",
                  "password, or password,salt: the fields of the hash (and salt).",
                  parse_fields),
        ConfigKey("auth.mongo.auth_query.selector", "username=%u",
                  "Which user document: field=placeholder[, ...].", parse_selector),
        ConfigKey("auth.mongo.super_query", "on", "Superuser query on or off.", parse_switch),
        ConfigKey("auth.mongo.super_query.collection", "mqtt_user",
                  "Collection of the superuser flag."),
        ConfigKey("auth.mongo.super_query.super_field", "is_superuser",
                  "Field that is true for a superuser."),
        ConfigKey("auth.mongo.super_query.selector", "username=%u",
                  "Which document has the flag.", parse_selector),
        ConfigKey("auth.mongo.acl_query", "on", "ACL query on or off.", parse_switch),
        ConfigKey("auth.mongo.acl_query.collection", "mqtt_acl", "Collection of the ACL."),
        ConfigKey("auth.mongo.acl_query.selector", "username=%u",
                  "Which ACL document.", parse_selector),
        ConfigKey("auth.mongo.acl_query.selector.$n", "",
                  "More ACL selectors, each one find (EMQ X: combined with $or).",
                  parse_selector, required=False),
    )

    client: Any = None

    @property
    def server_name(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.settings["auth.mongo.server"])

    @property
    def super_enabled(self) -> bool:
        return bool(self.settings["auth.mongo.super_query"])

    @property
    def acl_enabled(self) -> bool:
        return bool(self.settings["auth.mongo.acl_query"])

    def acl_selectors(self) -> list[Selector]:
        """``acl_query.selector``, then ``acl_query.selector.N`` in N order."""
        extra = sorted(((key.rsplit(".", 1)[1], value) for key, value in self.settings.items()
                        if key.startswith("auth.mongo.acl_query.selector.")),
                       key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit()
                                       else 0, kv[0]))
        return [self.settings["auth.mongo.acl_query.selector"], *(v for _, v in extra)]

    def client_options(self) -> dict[str, Any]:
        """The `AsyncMongoClient` keyword arguments for these settings."""
        s = self.settings
        ms = int(self.timeout * 1000)
        options: dict[str, Any] = {
            "host": [f"{host}:{port}" for host, port in s["auth.mongo.server"]],
            "maxPoolSize": s["auth.mongo.pool"],
            "connectTimeoutMS": ms, "serverSelectionTimeoutMS": ms, "socketTimeoutMS": ms,
            "connect": False,
        }
        if s["auth.mongo.login"]:
            options |= {"username": s["auth.mongo.login"],
                        "password": s["auth.mongo.password"],
                        "authSource": s["auth.mongo.auth_source"] or s["auth.mongo.database"]}
        kind = s["auth.mongo.type"]
        if kind == "single":
            options["directConnection"] = True
        elif kind == "rs" and s["auth.mongo.rs_set_name"]:
            options["replicaSet"] = s["auth.mongo.rs_set_name"]
        if s["auth.mongo.r_mode"] == "slave_ok":
            options["readPreference"] = "secondaryPreferred"
        if s["auth.mongo.ssl"]:
            options |= {"tls": True,
                        "tlsCAFile": s["auth.mongo.ssl_opts.cacertfile"] or None,
                        "tlsCertificateKeyFile": s["auth.mongo.ssl_opts.certfile"] or None}
        for key, value in s.items():
            name = key.removeprefix("auth.mongo.topology.")
            if name != key and name in TOPOLOGY_OPTIONS:
                options[TOPOLOGY_OPTIONS[name]] = value
        return options

    async def open(self) -> None:
        from pymongo import AsyncMongoClient

        self.client = AsyncMongoClient(**self.client_options())

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    def is_connection_error(self, exc: BaseException) -> bool:
        from pymongo.errors import ConnectionFailure, OperationFailure

        if isinstance(exc, OperationFailure):
            return exc.code in (13, 18)  # not authorized / authentication failed
        return isinstance(exc, (OSError, ConnectionFailure))

    def _collection(self, key: str) -> Any:
        return self.client[self.settings["auth.mongo.database"]][self.settings[key]]

    async def ping(self) -> None:
        await self.client[self.settings["auth.mongo.database"]].command("ping")

    async def _find_one(self, collection_key: str, selector: Selector,
                        values: Mapping[str, str | None]) -> Mapping[str, Any] | None:
        query = selector_filter(selector, values)
        if query is None:
            return None
        document: Mapping[str, Any] | None = await self._collection(collection_key).find_one(
            query)
        return document

    async def lookup_password(self, values: Mapping[str, str | None]) -> tuple[Any, Any] | None:
        s = self.settings
        document = await self._find_one("auth.mongo.auth_query.collection",
                                        s["auth.mongo.auth_query.selector"], values)
        if document is None:
            return None
        fields = s["auth.mongo.auth_query.password_field"]
        salt = document.get(fields[1]) if len(fields) > 1 else None
        return document.get(fields[0]), salt

    async def lookup_superuser(self, values: Mapping[str, str | None]) -> bool:
        s = self.settings
        document = await self._find_one("auth.mongo.super_query.collection",
                                        s["auth.mongo.super_query.selector"], values)
        return document is not None and truthy(
            document.get(s["auth.mongo.super_query.super_field"]))

    async def lookup_acl(self, client: Any, action: str, topic: str,
                         values: Mapping[str, str | None]) -> str | None:
        documents = []
        for selector in self.acl_selectors():
            document = await self._find_one("auth.mongo.acl_query.collection", selector,
                                            values)
            if document is not None:
                documents.append(document)
        return acl_answer(documents, action, topic, values)
