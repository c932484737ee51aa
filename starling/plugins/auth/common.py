"""What EMQ X v3's auth plugins share: placeholders, the ``on_error`` choice and
the answer to a refused client; for the database plugins, queries made safe
and the SQL ACL table.

- **Placeholders** (`placeholder_values`, `fill`): ``%u`` user name, ``%c``
  client id, ``%a`` peer address, ``%P`` password, ``%C`` / ``%d`` common name /
  subject of the client certificate, ``%t`` topic, ``%A`` access (1 subscribe,
  2 publish), ``%m`` mountpoint (Starling has none: empty).  A plugin may add
  names of its own (emqx_auth_http's ``%cn`` / ``%dn``): `fill` replaces the
  names its values have, the longest first.
- **on_error** (`parse_on_error`): what a call that got no answer (timeout,
  connection error) answers: ``ignore`` (the chain goes on) or ``deny``.
- **SQL** (`SqlQuery`): EMQ X's queries carry placeholders in quotes
  (``where username = '%u'``).  Each quoted ``'%u'`` (and a bare ``%u``
  outside quotes) becomes a bound parameter of the driver, so client input is
  never spliced into SQL text; a placeholder inside a longer literal
  (``'%user'``) is left as written, as EMQ X does.
- **Password hashes**: `passwords.PasswordHash` (the one module that hashes).
- **SQL ACL rows** (`compile_acl_row`): EMQ X's ``mqtt_acl`` table (allow,
  ipaddr, username, clientid, access, topic) as the broker's ACL rules.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starling.broker import AclRule, AuthResult, TopicRule, Who
from starling.mqtt import ReasonCode

from .. import parse_choice

#: The placeholder letters EMQ X's auth plugins know.
PLACEHOLDERS = "ucaPCdtmA"
_PLACEHOLDER = re.compile(r"%([" + PLACEHOLDERS + "])")


class ClientLike(Protocol):
    """What placeholders read from a client (a `ClientInfo`, or an ACL subject)."""

    @property
    def client_id(self) -> str: ...

    @property
    def username(self) -> str | None: ...


#: What a call that got no answer answers: EMQ X's "ignore" (the chain goes on,
#: `mqtt.allow_anonymous` / `acl_nomatch` decide) or "deny".
ON_ERROR = ("ignore", "deny")
parse_on_error = parse_choice(*ON_ERROR)


def denied() -> AuthResult:
    """"Bad user name or password" (CONNACK 4 / 0x86), not anonymous."""
    return AuthResult(ReasonCode.BAD_USER_NAME_OR_PASSWORD, anonymous=False)


def common_name(subject: str | None) -> str | None:
    """The CN of an RFC 4514 subject (``CN=alice,O=Example``), as written there."""
    if not subject:
        return None
    for rdn in re.split(r"(?<!\\)[,+]", subject):
        name, _, value = rdn.partition("=")
        if name.strip().upper() == "CN":
            return value.replace("\\", "")
    return None


def placeholder_values(client: Any, action: str | None = None,
                       topic: str | None = None) -> dict[str, str | None]:
    """Each placeholder letter → its value for `client` (None when unknown)."""
    subject = getattr(client, "peercert", None)
    password = getattr(client, "password", None)
    return {
        "u": client.username,
        "c": client.client_id,
        "a": getattr(client, "peerhost", None),
        "P": password.decode("utf-8", "replace") if isinstance(password, bytes) else password,
        "C": common_name(subject),
        "d": subject,
        "t": topic,
        "m": "",
        "A": None if action is None else ("2" if action == "publish" else "1"),
    }


@functools.lru_cache(maxsize=32)
def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    longest_first = sorted(names, key=len, reverse=True)
    return re.compile("%(" + "|".join(re.escape(name) for name in longest_first) + ")")


def fill(template: str, values: Mapping[str, str | None], missing: str | None = "") -> str:
    """`template` with each ``%X`` whose name `X` is in `values` replaced by its
    value (the longest name first: ``%cn`` before ``%c``); a None value becomes
    `missing` (None: the placeholder stays as written, as EMQ X's feed_var)."""
    if not values or "%" not in template:
        return template

    def one(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0) if missing is None else missing
        return value
    return _names_pattern(tuple(values)).sub(one, template)


def placeholders_in(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def parse_pairs(value: str) -> tuple[tuple[str, str], ...]:
    """``username=%u, clientid=%c`` → (("username", "%u"), ("clientid", "%c")):
    emqx_auth_http's params, emqx_auth_mongo's selectors."""
    pairs: list[tuple[str, str]] = []
    for part in value.split(","):
        if not part.strip():
            continue
        name, sep, template = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad pair {part.strip()!r}: expected name=value[, name=value]")
        pairs.append((name.strip(), template.strip()))
    return tuple(pairs)


# -- SQL -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SqlQuery:
    """An EMQ X query as SQL text with driver parameters: `sql`, and `params`, the
    placeholder letter of each parameter in order."""

    template: str
    sql: str
    params: tuple[str, ...]

    @classmethod
    def parse(cls, template: str, style: str) -> SqlQuery:
        """`style` is ``format`` (MySQL drivers: ``%s``, a literal ``%`` doubled) or
        ``numeric`` (PostgreSQL: ``$1``, ``$2`` …)."""
        out: list[str] = []
        params: list[str] = []

        def param(letter: str) -> str:
            params.append(letter)
            return "%s" if style == "format" else f"${len(params)}"

        def text(chunk: str) -> str:
            return chunk.replace("%", "%%") if style == "format" else chunk

        i, n = 0, len(template)
        while i < n:
            ch = template[i]
            if ch in "'\"`":
                end = _closing_quote(template, i, backslash=style == "format")
                literal = template[i:end]
                match = re.fullmatch(r"'%([" + PLACEHOLDERS + "])'", literal)
                out.append(param(match.group(1)) if ch == "'" and match else text(literal))
                i = end
            elif ch == "%" and i + 1 < n and template[i + 1] in PLACEHOLDERS:
                out.append(param(template[i + 1]))
                i += 2
            else:
                j = i + 1
                while j < n and template[j] not in "'\"`%":
                    j += 1
                out.append(text(template[i:j]))
                i = j
        return cls(template, "".join(out), tuple(params))

    def args(self, values: Mapping[str, str | None]) -> list[str | None]:
        """The parameter values for one client (None, SQL NULL, when unknown)."""
        return [values.get(letter) for letter in self.params]


def _closing_quote(text: str, start: int, backslash: bool) -> int:
    """Index just past the literal that starts at `start` (a doubled quote, or a
    backslash where it escapes (MySQL), escapes one); the end of `text` if it
    is never closed."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if backslash and ch == "\\" and quote != "`":
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return len(text)


# -- the SQL ACL table ---------------------------------------------------------------------------

_ACCESS = {1: "subscribe", 2: "publish", 3: "pubsub"}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    return text or None


def _number(value: Any) -> int:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, bool):
        return int(value)
    return int(str(value).strip())


def compile_acl_row(row: Sequence[Any]) -> AclRule:
    """One row of EMQ X's ``mqtt_acl`` select (allow, ipaddr, username, clientid,
    access, topic) as an ACL rule (emqx_acl_mysql's ``compile``):

    - allow 1 → allow, 0 → deny; access 1 subscribe, 2 publish, 3 both;
    - Who: username ``$all`` → everybody; else all of the non-empty ipaddr
      (address or CIDR), username and clientid must match;
    - topic: a filter, ``eq <topic>`` for the exact text, ``%u`` / ``%c`` levels
      for the client's user name / client id.

    Raises `ValueError` for a row that cannot be a rule (no Who at all, bad
    numbers, a bad address)."""
    if len(row) < 6:
        raise ValueError(f"expected 6 columns (allow, ipaddr, username, clientid, access, "
                         f"topic), got {len(row)}")
    allow, ipaddr, username, clientid, access, topic = (row[0], _text(row[1]), _text(row[2]),
                                                        _text(row[3]), row[4], _text(row[5]))
    permission = {1: "allow", 0: "deny"}.get(_number(allow))
    if permission is None:
        raise ValueError(f"allow must be 0 or 1, got {allow!r}")
    action = _ACCESS.get(_number(access))
    if action is None:
        raise ValueError(f"access must be 1, 2 or 3, got {access!r}")
    if topic is None:
        raise ValueError("topic is empty")
    if username == "$all":
        who = Who("all")
    else:
        parts: list[Who] = []
        if ipaddr is not None:
            parts.append(Who("ipaddr", ipaddr, ipaddress.ip_network(ipaddr.strip(),
                                                                      strict=False)))
        if username is not None:
            parts.append(Who("user", username))
        if clientid is not None:
            parts.append(Who("client", clientid))
        if not parts:
            raise ValueError("no ipaddr, username or clientid")
        who = parts[0] if len(parts) == 1 else Who("and", parts=tuple(parts))
    if topic.startswith("eq "):
        topic_rule = TopicRule("eq", topic[3:])
    else:
        levels = topic.split("/")
        topic_rule = TopicRule("pattern" if "%u" in levels or "%c" in levels else "filter",
                               topic)
    return AclRule(permission, who, action, (topic_rule,))
