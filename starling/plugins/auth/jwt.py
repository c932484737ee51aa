"""emqx_auth_jwt: clients authenticated by a JSON Web Token in the password (or
user name) field (docs/auth-backends.md#jwt).

As EMQ X v3.2: HS256/384/512 tokens are checked with ``auth.jwt.secret``,
RS*/PS*/ES* tokens with the public key in ``auth.jwt.pubkey`` (PEM file) or a
key of the JWKS ``auth.jwt.jwks`` (a file, or an http(s) URL fetched at load and
every ``jwks.refresh_interval``; the token's ``kid`` chooses the key).
``exp`` and ``nbf`` are checked when present.  With ``auth.jwt.verify_claims
= on`` every ``auth.jwt.verify_claims.<claim> = <expected>`` must hold
(``%u`` / ``%c`` stand for the client's user name / client id).

- no token, or not a JWT at all → ignore (the result is left as it is, as
  EMQ X 3.2 does in practice); counted ``auth/jwt/ignore``;
- a JWT that fails any check → refused; ``auth/jwt/failure``;
- a valid one → let in; ``auth/jwt/success``.

ACL from a claim (EMQ X 4.3's ``auth.jwt.acl_claim_name``): a valid token
carrying ``{"acl": {"pub": [...], "sub": [...], "all": [...]}}`` allows the
listed topic filters and denies every other topic; a token without the claim
leaves ACL to the other sources.  The token is verified again at each check
(decoded tokens are kept in a small cache), so an expired token denies.
Tokens and secrets are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from starling.broker import AuthResult, ClientInfo, HookPoint, Stop, topic_matches
from starling.mqtt import ReasonCode

from .. import (
    ConfigKey,
    Plugin,
    PluginContext,
    cancel,
    parse_choice,
    parse_switch,
    parse_timeout,
)
from .common import denied, fill
from .monitor import AuthMetrics

log = logging.getLogger(__name__)

# pyjwt warns at every decode with a short key (EMQ X's default secret is 10
# bytes); the plugin says so once, at load, instead.
_SHORT_KEY_WARNING = getattr(getattr(jwt, "warnings", None), "InsecureKeyLengthWarning", None)
if _SHORT_KEY_WARNING is not None:
    warnings.filterwarnings("ignore", category=_SHORT_KEY_WARNING)

HMAC_ALGS = ("HS256", "HS384", "HS512")
KEY_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
#: Decoded tokens kept for ACL checks (token → claims), least recently used dropped.
CACHE_SIZE = 10_000
NOT_A_JWT = "not a JWT"
#: Time limit of one JWKS fetch, seconds.
JWKS_TIMEOUT = 10.0


def parse_file(value: str) -> str:
    """A path, checked when the plugin loads (the file may come later)."""
    return value.strip()


SCHEMA: tuple[ConfigKey, ...] = (
    ConfigKey("auth.jwt.secret", "emqxsecret",
              "HMAC secret of HS256/384/512 tokens; empty = HMAC tokens are refused.",
              required=False),
    ConfigKey("auth.jwt.pubkey", "", "PEM file with the RSA or ECDSA public key "
              "(or a certificate) of RS*/PS*/ES* tokens.", parse_file, required=False),
    ConfigKey("auth.jwt.jwks", "", "JWKS file or http(s) URL (a JSON key set) of "
              "RS*/PS*/ES* tokens; the token's kid picks the key.", parse_file,
              required=False),
    ConfigKey("auth.jwt.jwks.refresh_interval", "5m",
              "How often a JWKS URL is fetched again.", parse_timeout),
    ConfigKey("auth.jwt.from", "password", "Where the token is: password or username.",
              parse_choice("password", "username")),
    ConfigKey("auth.jwt.verify_claims", "off", "on: check the verify_claims.<claim> keys.",
              parse_switch),
    ConfigKey("auth.jwt.verify_claims.$name", "",
              "A claim that must equal this value (%u user name, %c client id).",
              required=False),
    ConfigKey("auth.jwt.acl_claim_name", "acl",
              "Claim holding the client's ACL ({pub, sub, all} topic lists); empty = off.",
              required=False),
)


class TokenError(Exception):
    """A token that fails a check; the message names the check, never the token."""


def load_public_key(path: str) -> Any:
    data = Path(path).read_bytes()
    try:
        if b"BEGIN CERTIFICATE" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return load_pem_public_key(data)
    except ValueError:
        raise ValueError(f"auth.jwt.pubkey: {path} holds no PEM public key") from None


def parse_jwks(text: str, source: str) -> dict[str | None, Any]:
    """kid → key of a JWKS document (keys without a kid under None)."""
    try:
        keyset = jwt.PyJWKSet.from_dict(json.loads(text))
    except (ValueError, jwt.PyJWKSetError, jwt.PyJWKError) as exc:
        raise ValueError(f"auth.jwt.jwks: {source} is not a usable JWKS "
                         f"({type(exc).__name__})") from None
    return {key.key_id: key.key for key in keyset.keys}


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


class JwtAuthPlugin(Plugin):
    SCHEMA = SCHEMA

    def __init__(self, context: PluginContext, settings: Mapping[str, Any]) -> None:
        super().__init__(context, settings)
        self.secret: str = settings["auth.jwt.secret"]
        self.source: str = settings["auth.jwt.from"]
        self.checklist: dict[str, str] = {}
        if settings["auth.jwt.verify_claims"]:
            self.checklist = {key.split(".", 3)[3]: value for key, value in settings.items()
                              if key.startswith("auth.jwt.verify_claims.")}
        self.acl_claim: str = settings["auth.jwt.acl_claim_name"].strip()
        self.pubkey: Any = None
        self.jwks: dict[str | None, Any] = {}
        self._decoded: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._refresher: asyncio.Task[None] | None = None
        self.metrics = AuthMetrics(context.broker, "jwt")

    async def load(self) -> None:
        # Small files, read once at load (a bad one makes the load fail, saying why).
        if self.settings["auth.jwt.pubkey"]:
            self.pubkey = load_public_key(self.settings["auth.jwt.pubkey"])
        jwks = self.settings["auth.jwt.jwks"]
        if jwks and is_url(jwks):
            await self.fetch_jwks()
            self._refresher = asyncio.get_running_loop().create_task(self._refreshing())
        elif jwks:
            self.jwks = parse_jwks(Path(jwks).read_text(), jwks)
        if self.secret and len(self.secret.encode()) < 32:
            log.warning("emqx_auth_jwt: auth.jwt.secret is shorter than 32 bytes "
                        "(RFC 7518 asks for at least the hash size)")
        hooks = self.context.broker.hooks
        hooks.add(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)
        if self.acl_claim:
            hooks.add(HookPoint.CLIENT_CHECK_ACL, self.check_acl)

    async def unload(self) -> None:
        hooks = self.context.broker.hooks
        hooks.remove(HookPoint.CLIENT_AUTHENTICATE, self.authenticate)
        hooks.remove(HookPoint.CLIENT_CHECK_ACL, self.check_acl)
        await cancel(self._refresher)
        self._refresher = None
        self._decoded.clear()

    async def fetch_jwks(self) -> None:
        """Fetch the JWKS URL (bounded by `JWKS_TIMEOUT`); on failure keep the keys
        we have and log why (tokens needing an unknown key are refused)."""
        url = self.settings["auth.jwt.jwks"]
        where = str(httpx.URL(url).copy_with(query=None, username=None, password=None))
        try:
            async with httpx.AsyncClient(timeout=JWKS_TIMEOUT,
                                         follow_redirects=True) as client:
                response = await client.get(url)
                response.raise_for_status()
            self.jwks = parse_jwks(response.text, where)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            log.warning("emqx_auth_jwt: JWKS from %s not loaded: %s", where,
                        type(exc).__name__)
            return
        self._decoded.clear()  # decisions made with the old keys are not kept
        log.info("emqx_auth_jwt: %d JWKS key(s) loaded from %s", len(self.jwks), where)

    async def _refreshing(self) -> None:
        while True:
            await asyncio.sleep(self.settings["auth.jwt.jwks.refresh_interval"])
            await self.fetch_jwks()

    # -- tokens ----------------------------------------------------------------------
    def token_of(self, client: ClientInfo) -> str | None:
        if self.source == "username":
            return client.username or None
        if not client.password:
            return None
        return client.password.decode("utf-8", "replace")

    def _key_for(self, header: Mapping[str, Any]) -> Any:
        alg = header.get("alg")
        if alg in HMAC_ALGS:
            if not self.secret:
                raise TokenError("no HMAC secret configured")
            return self.secret
        if alg in KEY_ALGS:
            if self.jwks:
                kid = header.get("kid")
                if kid in self.jwks:
                    return self.jwks[kid]
                if kid is None and len(self.jwks) == 1:
                    return next(iter(self.jwks.values()))
                if self.pubkey is None:
                    raise TokenError("no JWKS key for the token's kid")
            if self.pubkey is None:
                raise TokenError("no public key configured")
            return self.pubkey
        raise TokenError(f"unsupported algorithm {str(alg)[:16]!r}")

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; `TokenError` says which check failed."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenError(NOT_A_JWT) from exc
        key = self._key_for(header)
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=[header["alg"]],
                                                options={"verify_aud": False})
        except jwt.InvalidTokenError as exc:
            raise TokenError(type(exc).__name__) from None
        except (TypeError, ValueError) as exc:  # e.g. an RS256 token, an EC key
            raise TokenError(f"key does not fit {str(header['alg'])!r} "
                             f"({type(exc).__name__})") from None
        return claims

    def claims_of(self, token: str) -> dict[str, Any]:
        """`verify`, with the answer kept: exp and nbf are checked again each time."""
        claims = self._decoded.get(token)
        if claims is None:
            claims = self.verify(token)
            self._decoded[token] = claims
            if len(self._decoded) > CACHE_SIZE:
                self._decoded.popitem(last=False)
            return claims
        self._decoded.move_to_end(token)
        now = time.time()
        if "exp" in claims and now >= float(claims["exp"]):
            raise TokenError("ExpiredSignatureError")
        if "nbf" in claims and now < float(claims["nbf"]):
            raise TokenError("ImmatureSignatureError")
        return claims

    def check_claims(self, claims: Mapping[str, Any], client: ClientInfo) -> str | None:
        """The first configured claim that does not hold, or None."""
        values = {"u": client.username or "", "c": client.client_id or ""}
        for name, expected in self.checklist.items():
            got = claims.get(name)
            if got is None or str(got) != fill(expected, values):
                return name
        return None

    # -- hooks -------------------------------------------------------------------------
    def authenticate(self, client: ClientInfo, acc: AuthResult) -> AuthResult | Stop | None:
        token = self.token_of(client)
        if token is None:
            self.metrics.auth("ignore")
            return None
        try:
            claims = self.claims_of(token)
        except TokenError as exc:
            if str(exc) == NOT_A_JWT:
                self.metrics.auth("ignore")
                return None
            log.info("emqx_auth_jwt: client %s refused: %s", client.client_id, exc)
            self.metrics.auth("failure")
            return Stop(denied())
        failed = self.check_claims(claims, client)
        if failed is not None:
            log.info("emqx_auth_jwt: client %s refused: claim %r does not match",
                     client.client_id, failed)
            self.metrics.auth("failure")
            return Stop(denied())
        self.metrics.auth("success")
        return Stop(AuthResult(ReasonCode.SUCCESS, anonymous=False))

    def check_acl(self, client: ClientInfo, action: str, topic: str, acc: str) -> Stop | None:
        token = self.token_of(client)
        if token is None:
            return None
        try:
            claims = self.claims_of(token)
        except TokenError as exc:
            if str(exc) == NOT_A_JWT:
                return None
            self.metrics.acl("deny")  # expired since CONNECT (or never valid)
            return Stop("deny")
        rules = claims.get(self.acl_claim)
        if not isinstance(rules, Mapping):
            self.metrics.acl("ignore")
            return None
        lists = ("pub", "all") if action == "publish" else ("sub", "all")
        values = {"u": client.username or "", "c": client.client_id or ""}
        for name in lists:
            filters = rules.get(name)
            if not isinstance(filters, list):
                continue
            for topic_filter in filters:
                if isinstance(topic_filter, str) and topic_matches(
                        topic, fill(topic_filter, values)):
                    self.metrics.acl("allow")
                    return Stop("allow")
        self.metrics.acl("deny")
        return Stop("deny")

