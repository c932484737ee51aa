"""ACL rules in EMQ X v3's own ``acl.conf`` syntax, the per-connection ACL cache,
and the explanation of an ACL decision.

Pure: text in, rules out; no file or socket is touched here (the node reads the
file, `starling.plugins.auth.AclFile`).  The semantics are EMQ X v3's
(``emqx_access_rule``, ``emqx_mod_acl_internal``, ``emqx_acl_cache``):

- A file is a sequence of Erlang terms, each ended by ``.``; ``%`` starts a
  comment.  A rule is ``{allow | deny, Who, Access, Topics}`` or
  ``{allow | deny, all}``.
- Who: ``all``, ``{user, "name"}``, ``{client, "id"}``, ``{user, all}``,
  ``{client, all}``, ``{ipaddr, "10.0.0.0/8"}`` (an address alone is a /32 or
  /128), ``{'and', [Who, ...]}``, ``{'or', [Who, ...]}``.
- Access: ``publish``, ``subscribe`` or ``pubsub`` (both).
- Topics: a list of topic filters (``"a/+/b"``, ``"#"``), exact topics
  ``{eq, "a/#"}`` (equal as text, wildcards included), and placeholders: a
  level that is exactly ``%u`` or ``%c`` stands for the client's user name or
  client id (left as written when the client has no user name).  Strings may be
  written ``"..."`` or ``<<"...">>``.
- Rules are tried in file order; the first whose Who, Access and one of its
  Topics match decides.  No match: the next ACL source on the hook chain, and
  finally ``acl_nomatch``.
- A client's topic is compared to a rule's filter level by level, the client's
  own wildcards as plain words (EMQ X's ``emqx_topic:match/2``): a client
  subscribing ``a/+`` matches a rule filter ``a/#`` and ``a/+``; ``#`` matches
  only ``#``, ``+`` and ``{eq, "#"}``.  Topics starting with ``$`` are not matched
  by a first-level ``+`` or ``#`` (so ``"#"`` does not cover ``$SYS/...``).

Errors are `AclSyntaxError` with the line and column; a file with an error is
refused as a whole.
"""

from __future__ import annotations

import inspect
import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, NoReturn, Protocol

from starling.mqtt import parse_share

from .hooks import HookPoint, Hooks, Stop
from .info import ClientInfo

ALLOW: Final = "allow"
DENY: Final = "deny"
PUBLISH: Final = "publish"
SUBSCRIBE: Final = "subscribe"
PUBSUB: Final = "pubsub"
#: The actions the `client.check_acl` hook is asked about.
ACL_ACTIONS: Final = (PUBLISH, SUBSCRIBE)

#: EMQ X v3's ``etc/acl.conf``, written into the data dir at first start.
DEFAULT_ACL_CONF: Final = """\
%%--------------------------------------------------------------------
%% ACL rules, in EMQ X v3's acl.conf syntax (docs/acl.md).
%%
%% -type(who() :: all | {user, Username} | {client, ClientId} |
%%                {ipaddr, CIDR} | {'and', [who()]} | {'or', [who()]}).
%%
%% -type(access() :: subscribe | publish | pubsub).
%%
%% -type(topic() :: "topic/filter" | {eq, "topic/filter"}).
%%   %u and %c in a topic level stand for the user name and the client id.
%%
%% -type(rule() :: {allow, all} |
%%                 {allow, who(), access(), [topic()]} |
%%                 {deny, all} |
%%                 {deny, who(), access(), [topic()]}).
%%
%% Rules are tried in order; the first that matches decides.  When none
%% matches, the setting acl_nomatch decides (default: allow).
%%--------------------------------------------------------------------

{allow, {user, "dashboard"}, subscribe, ["$SYS/#"]}.

{allow, {ipaddr, "127.0.0.1"}, pubsub, ["$SYS/#", "#"]}.

{deny, all, subscribe, ["$SYS/#", {eq, "#"}]}.

{allow, all}.
"""


class AclSyntaxError(ValueError):
    """A rule file that cannot be used; `str()` is ``source:line:column: message``."""

    def __init__(self, message: str, line: int, column: int, source: str = "acl.conf") -> None:
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column
        self.source = source


# -- Erlang terms -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  #: { } [ ] , << >> dot atom string int eof
    value: Any
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _Term:
    kind: str  #: atom string binary int tuple list
    value: Any  #: str, int, or a list of _Term
    line: int
    column: int

    def is_atom(self, *names: str) -> bool:
        return self.kind == "atom" and (not names or self.value in names)

    @property
    def text(self) -> str | None:
        """The value of a string or binary, else None."""
        return self.value if self.kind in ("string", "binary") else None


#: Erlang's reserved words: an unquoted one is a syntax error in file:consult too.
_RESERVED = frozenset((
    "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
    "catch", "cond", "div", "end", "fun", "if", "let", "maybe", "not", "of", "or", "orelse",
    "receive", "rem", "try", "when", "xor"))
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "b": "\b", "f": "\f", "v": "\v",
            "e": "\x1b", "d": "\x7f", "\\": "\\", '"': '"', "'": "'"}
_ATOM_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@")


class _Lexer:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.line_start = 0

    def error(self, message: str, line: int | None = None,
              column: int | None = None) -> NoReturn:
        raise AclSyntaxError(message, line or self.line,
                             column or self.pos - self.line_start + 1, self.source)

    def _advance(self) -> str:
        ch = self.text[self.pos]
        self.pos += 1
        if ch == "\n":
            self.line += 1
            self.line_start = self.pos
        return ch

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        text = self.text
        while True:
            # whitespace and comments
            while self.pos < len(text):
                ch = text[self.pos]
                if ch.isspace():
                    self._advance()
                elif ch == "%":
                    while self.pos < len(text) and text[self.pos] != "\n":
                        self.pos += 1
                else:
                    break
            line, column = self.line, self.pos - self.line_start + 1
            if self.pos >= len(text):
                out.append(_Token("eof", None, line, column))
                return out
            ch = text[self.pos]
            if ch in "{}[],":
                self.pos += 1
                out.append(_Token(ch, ch, line, column))
            elif text.startswith("<<", self.pos) or text.startswith(">>", self.pos):
                self.pos += 2
                out.append(_Token(ch * 2, ch * 2, line, column))
            elif ch == ".":
                self.pos += 1
                nxt = text[self.pos] if self.pos < len(text) else " "
                if not (nxt.isspace() or nxt == "%"):
                    self.error("'.' ends a rule and must be followed by a space or a new line",
                               line, column)
                out.append(_Token("dot", ".", line, column))
            elif ch == '"':
                out.append(_Token("string", self._quoted('"', line, column), line, column))
            elif ch == "'":
                out.append(_Token("atom", self._quoted("'", line, column), line, column))
            elif "a" <= ch <= "z":
                start = self.pos
                while self.pos < len(text) and text[self.pos] in _ATOM_CHARS:
                    self.pos += 1
                word = text[start:self.pos]
                if word in _RESERVED:
                    self.error(f"{word} is a reserved word in Erlang: write it quoted, '{word}'",
                               line, column)
                out.append(_Token("atom", word, line, column))
            elif ch.isdigit():
                start = self.pos
                while self.pos < len(text) and text[self.pos].isdigit():
                    self.pos += 1
                out.append(_Token("int", int(text[start:self.pos]), line, column))
            elif ch.isupper() or ch == "_":
                start = self.pos
                while self.pos < len(text) and text[self.pos] in _ATOM_CHARS:
                    self.pos += 1
                self.error(f"{text[start:self.pos]} is an Erlang variable: strings are "
                           "written in double quotes, atoms in lower case", line, column)
            else:
                self.error(f"unexpected character {ch!r}", line, column)

    def _quoted(self, quote: str, line: int, column: int) -> str:
        what = "string" if quote == '"' else "quoted atom"
        text = self.text
        self.pos += 1
        chars: list[str] = []
        while True:
            if self.pos >= len(text):
                self.error(f"{what} not terminated (it starts here)", line, column)
            ch = self._advance()
            if ch == quote:
                return "".join(chars)
            if ch != "\\":
                chars.append(ch)
                continue
            if self.pos >= len(text):
                self.error(f"{what} not terminated (it starts here)", line, column)
            esc = self._advance()
            if esc in _ESCAPES:
                chars.append(_ESCAPES[esc])
            elif esc in "01234567":
                digits = esc
                while len(digits) < 3 and self.pos < len(text) and text[self.pos] in "01234567":
                    digits += self._advance()
                chars.append(chr(int(digits, 8)))
            elif esc == "x":
                if self.pos < len(text) and text[self.pos] == "{":
                    end = text.find("}", self.pos)
                    digits = text[self.pos + 1:end] if end > 0 else ""
                    self.pos = end + 1 if end > 0 else self.pos
                else:
                    digits = text[self.pos:self.pos + 2]
                    self.pos += 2
                try:
                    chars.append(chr(int(digits, 16)))
                except ValueError:
                    self.error(f"bad \\x escape in a {what}")
            elif esc == "^" and self.pos < len(text):
                chars.append(chr(ord(self._advance()) % 32))
            else:
                chars.append(esc)  # Erlang: an unknown escape stands for the character


class _TermParser:
    def __init__(self, tokens: list[_Token], source: str) -> None:
        self.tokens = tokens
        self.source = source
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def error(self, token: _Token, message: str) -> AclSyntaxError:
        return AclSyntaxError(message, token.line, token.column, self.source)

    def terms(self) -> list[_Term]:
        out: list[_Term] = []
        while self.peek().kind != "eof":
            term = self.term()
            end = self.take()
            if end.kind != "dot":
                raise self.error(end, f"expected '.' after the rule that starts on line "
                                      f"{term.line}, found {_describe(end)}")
            out.append(term)
        return out

    def term(self) -> _Term:
        token = self.take()
        kind = token.kind
        if kind in ("atom", "int"):
            return _Term(kind, token.value, token.line, token.column)
        if kind == "string":
            value = token.value
            while self.peek().kind == "string":  # "a" "b" is "ab", as in Erlang
                value += self.take().value
            return _Term("string", value, token.line, token.column)
        if kind == "<<":
            parts: list[str] = []
            while self.peek().kind != ">>":
                part = self.take()
                if part.kind != "string":
                    raise self.error(part, "a binary holds a string here: <<\"topic\">>")
                parts.append(part.value)
                if self.peek().kind == ",":
                    self.take()
            self.take()
            return _Term("binary", "".join(parts), token.line, token.column)
        if kind in ("{", "["):
            close = "}" if kind == "{" else "]"
            items: list[_Term] = []
            if self.peek().kind == close:
                self.take()
            else:
                while True:
                    if self.peek().kind == "eof":
                        raise self.error(token, f"this '{kind}' is never closed with '{close}'")
                    items.append(self.term())
                    sep = self.take()
                    if sep.kind == close:
                        break
                    if sep.kind == "eof":
                        raise self.error(token, f"this '{kind}' is never closed with '{close}'")
                    if sep.kind != ",":
                        raise self.error(sep, f"expected ',' or '{close}', found "
                                              f"{_describe(sep)}")
            return _Term("tuple" if kind == "{" else "list", items, token.line, token.column)
        raise self.error(token, f"expected a term, found {_describe(token)}")


def _describe(token: _Token) -> str:
    if token.kind == "eof":
        return "the end of the file"
    if token.kind == "string":
        return f'the string "{token.value}"'
    if token.kind == "atom":
        return f"the atom {token.value}"
    return f"'{token.value}'"


# -- rules ------------------------------------------------------------------------------------

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AclClient(Protocol):
    """Who is asking: a `ClientInfo`, or an `AclSubject` for explanations."""

    @property
    def client_id(self) -> str: ...

    @property
    def username(self) -> str | None: ...

    @property
    def peerhost(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class AclSubject:
    """A client described by its attributes rather than connected (the explain endpoint)."""

    client_id: str = ""
    username: str | None = None
    peerhost: str | None = None
    zone: str = "external"
    is_superuser: bool = False
    protocol_level: int = 4

    def info(self) -> ClientInfo:
        """What `client.check_acl` callbacks get for this subject."""
        return ClientInfo(self.client_id, self.username, self.peerhost or "", 0,
                          proto_ver=self.protocol_level, zone=self.zone,
                          is_superuser=self.is_superuser)


@lru_cache(maxsize=4096)
def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class Who:
    """The client part of a rule.  `kind`: all, user, client, ipaddr, and, or."""

    kind: str
    value: str | None = None  #: user name / client id; None = `all`
    network: IpNetwork | None = None
    parts: tuple[Who, ...] = ()

    def matches(self, client: AclClient) -> bool:
        kind = self.kind
        if kind == "all":
            return True
        if kind == "user":
            return self.value is None or (client.username is not None
                                          and client.username == self.value)
        if kind == "client":
            return self.value is None or client.client_id == self.value
        if kind == "ipaddr":
            address = _address(client.peerhost)
            network = self.network
            return (address is not None and network is not None
                    and address.version == network.version and address in network)
        if kind == "and":
            return all(part.matches(client) for part in self.parts)
        return any(part.matches(client) for part in self.parts)  # "or"

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        if self.kind in ("and", "or"):
            parts = ", ".join(str(p) for p in self.parts)
            return f"{{'{self.kind}', [{parts}]}}"
        value = "all" if self.value is None else _quote(self.value)
        return f"{{{self.kind}, {value}}}"


@dataclass(frozen=True, slots=True)
class TopicRule:
    """One topic of a rule: a filter, an exact topic (`eq`), or a filter with
    placeholders (`pattern`)."""

    kind: str  #: filter | eq | pattern
    topic: str

    def levels(self, client: AclClient) -> tuple[list[str], frozenset[int]]:
        """The filter's levels with %u / %c put in, and which levels were put in:
        those are literal words (a user name "+" or "a/b" is no wildcard and no
        two levels), as EMQ X's feed_var."""
        levels = self.topic.split("/")
        if self.kind != "pattern":
            return levels, frozenset()
        literal = set()
        for i, level in enumerate(levels):
            if level == "%u" and client.username is not None:
                levels[i] = client.username
                literal.add(i)
            elif level == "%c":
                levels[i] = client.client_id
                literal.add(i)
        return levels, frozenset(literal)

    def matches(self, client: AclClient, topic: str) -> bool:
        if self.kind == "eq":
            return topic == self.topic
        levels, literal = self.levels(client)
        return _match_levels(topic.split("/"), levels, literal)

    def __str__(self) -> str:
        return f"{{eq, {_quote(self.topic)}}}" if self.kind == "eq" else _quote(self.topic)


def topic_matches(topic: str, topic_filter: str) -> bool:
    """`emqx_topic:match/2`: does a client's topic (or filter, its wildcards taken
    as words) match a rule's filter?"""
    return _match_levels(topic.split("/"), topic_filter.split("/"), frozenset())


def _match_levels(words: list[str], levels: list[str], literal: frozenset[int]) -> bool:
    if words[0].startswith("$") and levels[0] in ("+", "#") and 0 not in literal:
        return False
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if i in literal:  # a user name or client id: equal to a plain word only
            if i >= len(words) or words[i] != level or level in ("+", "#"):
                return False
            continue
        if level == "#" and i == last:
            return True
        if i >= len(words):
            return False
        if level != "+" and level != words[i]:
            return False
    return len(levels) == len(words)


@dataclass(frozen=True, slots=True)
class AclRule:
    permission: str  #: allow | deny
    who: Who
    access: str  #: publish | subscribe | pubsub
    topics: tuple[TopicRule, ...]
    line: int = 0
    #: The rule as Erlang text (normalised spacing), e.g. ``{allow, all}.``
    text: str = ""
    #: ``{allow, all}`` / ``{deny, all}``: matches any client, action and topic.
    catch_all: bool = False

    def applies_to(self, action: str) -> bool:
        return self.catch_all or self.access == PUBSUB or self.access == action

    def match(self, client: AclClient, action: str, topic: str) -> TopicRule | bool:
        """The topic that matched (True for a catch-all rule), or False."""
        if self.catch_all:
            return True
        if not self.applies_to(action) or not self.who.matches(client):
            return False
        for topic_rule in self.topics:
            if topic_rule.matches(client, topic):
                return topic_rule
        return False

    def __str__(self) -> str:
        return self.text or _render_rule(self)


@dataclass(frozen=True, slots=True)
class AclMatch:
    """The rule that decided, and (unless it is a catch-all) the topic that matched."""

    rule: AclRule
    topic: TopicRule | None

    @property
    def permission(self) -> str:
        return self.rule.permission


def match_rules(rules: Sequence[AclRule], client: AclClient, action: str,
                topic: str) -> AclMatch | None:
    """The first rule that matches, or None."""
    for rule in rules:
        found = rule.match(client, action, topic)
        if found is not False:
            return AclMatch(rule, found if isinstance(found, TopicRule) else None)
    return None


def acl_topic(action: str, topic: str) -> str:
    """What the ACL sees: a shared subscription's real filter (EMQ X parses
    ``$share/<group>/`` and ``$queue/`` off before checking)."""
    if action == SUBSCRIBE and topic[:1] == "$":
        return parse_share(topic)[1]
    return topic


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_rule(rule: AclRule) -> str:
    if rule.catch_all:
        return f"{{{rule.permission}, all}}."
    topics = ", ".join(str(t) for t in rule.topics)
    return f"{{{rule.permission}, {rule.who}, {rule.access}, [{topics}]}}."


# -- compiling terms into rules ----------------------------------------------------------------

class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, term: _Term, message: str) -> AclSyntaxError:
        return AclSyntaxError(message, term.line, term.column, self.source)

    def rule(self, term: _Term) -> AclRule:
        if term.kind != "tuple" or len(term.value) not in (2, 4):
            raise self.error(term, "a rule is {allow|deny, Who, Access, Topics} or "
                                   "{allow|deny, all}")
        items: list[_Term] = term.value
        permission = items[0]
        if not permission.is_atom(ALLOW, DENY):
            raise self.error(permission, "a rule starts with allow or deny")
        if len(items) == 2:
            if not items[1].is_atom("all"):
                raise self.error(items[1], "a two-element rule is {allow, all} or {deny, all}")
            rule = AclRule(permission.value, Who("all"), PUBSUB, (), term.line,
                           catch_all=True)
        else:
            access = items[2]
            if not access.is_atom(PUBLISH, SUBSCRIBE, PUBSUB):
                raise self.error(access, "access is publish, subscribe or pubsub")
            rule = AclRule(permission.value, self.who(items[1]), access.value,
                           self.topics(items[3]), term.line)
        return AclRule(rule.permission, rule.who, rule.access, rule.topics, rule.line,
                       _render_rule(rule), rule.catch_all)

    def who(self, term: _Term) -> Who:
        if term.is_atom("all"):
            return Who("all")
        if term.kind == "tuple" and len(term.value) == 2 and term.value[0].kind == "atom":
            tag, arg = term.value
            if tag.value in ("user", "client"):
                if arg.is_atom("all"):
                    return Who(tag.value)
                if arg.text is None:
                    raise self.error(arg, f"{{{tag.value}, ...}} takes a string in double "
                                          f"quotes, or all")
                return Who(tag.value, arg.text)
            if tag.value == "ipaddr":
                if arg.text is None:
                    raise self.error(arg, '{ipaddr, ...} takes a string: "10.0.0.0/8"')
                try:
                    network = ipaddress.ip_network(arg.text.strip(), strict=False)
                except ValueError:
                    raise self.error(arg, f"bad IP address or CIDR {arg.text!r}") from None
                return Who("ipaddr", arg.text, network)
            if tag.value in ("and", "or"):
                if arg.kind != "list" or not arg.value:
                    raise self.error(arg, f"{{'{tag.value}', ...}} takes a non-empty list of "
                                          "Who conditions")
                return Who(tag.value, parts=tuple(self.who(part) for part in arg.value))
        raise self.error(term, "Who is all, {user, \"name\"}, {client, \"id\"}, "
                               "{ipaddr, \"CIDR\"}, {'and', [...]} or {'or', [...]}")

    def topics(self, term: _Term) -> tuple[TopicRule, ...]:
        if term.text is not None:  # one topic, not in a list
            return (self.topic(term),)
        if term.kind != "list":
            raise self.error(term, 'topics are a list: ["a/#", {eq, "b"}]')
        return tuple(self.topic(item) for item in term.value)

    def topic(self, term: _Term) -> TopicRule:
        text = term.text
        if text is not None:
            levels = text.split("/")
            kind = "pattern" if "%u" in levels or "%c" in levels else "filter"
            return TopicRule(kind, text)
        if term.kind == "tuple" and len(term.value) == 2 and term.value[0].is_atom("eq"):
            exact = term.value[1].text
            if exact is None:
                raise self.error(term.value[1], '{eq, ...} takes a string: {eq, "#"}')
            return TopicRule("eq", exact)
        raise self.error(term, 'a topic is a string ("a/+/b") or {eq, "topic"}')


def parse_acl(text: str, source: str = "acl.conf") -> tuple[AclRule, ...]:
    """Parse and compile a whole file; raise `AclSyntaxError` at the first problem."""
    if text.startswith("\ufeff"):
        text = text[1:]
    tokens = _Lexer(text, source).tokens()
    compiler = _Compiler(source)
    return tuple(compiler.rule(term) for term in _TermParser(tokens, source).terms())


# -- the file ACL on the hook chain ------------------------------------------------------------

class InternalAcl:
    """The ACL file's rules on the `client.check_acl` hook (EMQ X's
    ``emqx_mod_acl_internal``): a matching rule stops the chain with its
    permission; no match leaves the decision to the rest of the chain.

    Priority -1, as EMQ X: ACL plugins (priority 0 and up) are asked first."""

    PRIORITY: Final = -1

    def __init__(self, rules: Sequence[AclRule] = (), source: str = "acl.conf") -> None:
        self.rules: tuple[AclRule, ...] = tuple(rules)
        self.source = source
        self._hooks: Hooks | None = None

    def replace(self, rules: Sequence[AclRule], source: str | None = None) -> None:
        self.rules = tuple(rules)
        if source is not None:
            self.source = source

    def attach(self, hooks: Hooks) -> None:
        if self._hooks is None:
            hooks.add(HookPoint.CLIENT_CHECK_ACL, self.check, self.PRIORITY)
            self._hooks = hooks

    def detach(self) -> None:
        if self._hooks is not None:
            self._hooks.remove(HookPoint.CLIENT_CHECK_ACL, self.check)
            self._hooks = None

    def check(self, client: AclClient, action: str, topic: str, acc: Any) -> Stop | None:
        found = match_rules(self.rules, client, action, topic)
        return None if found is None else Stop(found.permission)

    def match(self, client: AclClient, action: str, topic: str) -> AclMatch | None:
        return match_rules(self.rules, client, action, topic)


# -- the per-connection cache ------------------------------------------------------------------

class AclCache:
    """Recent decisions of one connection (EMQ X's ``emqx_acl_cache``): keyed by
    (action, topic), each valid for `acl_cache_ttl`; beyond `acl_cache_max_size`
    the oldest goes.  A new `generation` (rules reloaded) empties it.

    Beside them, the delivery decisions (`acl_deliver_check`): may the client
    receive a message on this topic through a wildcard subscription?  The
    publish path asks for every such delivery whether the topic is in
    `deliverable` (through `Client.deliverable`): one set lookup, no tuple, no
    clock read, no call; the refused topics are in `undeliverable`.  The broker
    empties both when rules change and every `acl_cache_ttl`; they are also
    emptied when they hold `acl_deliver_cache_max_size` decisions.  (Made with
    the first decision: most connections never need them.)"""

    __slots__ = ("_entries", "deciding", "deliverable", "generation", "undeliverable")

    def __init__(self, generation: int = 0) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[bool, float]] = OrderedDict()
        self.generation = generation
        self.deliverable: set[str] | None = None
        self.undeliverable: set[str] | None = None
        #: Topics whose delivery an ACL source that must be awaited is deciding.
        self.deciding: set[str] | None = None

    def delivery(self, topic: str) -> bool | None:
        """The delivery decision for `topic`, if there is one."""
        if self.deliverable is None or self.undeliverable is None:
            return None
        if topic in self.deliverable:
            return True
        return False if topic in self.undeliverable else None

    def remember_delivery(self, topic: str, allowed: bool, max_size: int) -> set[str]:
        """Remember a decision; returns the allowed topics (`Client.deliverable`)."""
        deliverable, undeliverable = self.deliverable, self.undeliverable
        if deliverable is None or undeliverable is None:
            deliverable, undeliverable = self.deliverable, self.undeliverable = set(), set()
        elif len(deliverable) + len(undeliverable) >= max_size:
            self.forget_deliveries()
        (deliverable if allowed else undeliverable).add(topic)
        return deliverable

    def forget_deliveries(self) -> None:
        if self.deliverable is not None and self.undeliverable is not None:
            self.deliverable.clear()
            self.undeliverable.clear()

    def get(self, action: str, topic: str, now: float, generation: int) -> bool | None:
        if generation != self.generation:
            self._entries.clear()
            self.generation = generation
            return None
        entry = self._entries.get((action, topic))
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[(action, topic)]
            return None
        return entry[0]

    def put(self, action: str, topic: str, allowed: bool, expires_at: float,
            max_size: int) -> None:
        if max_size <= 0:
            return
        entries = self._entries
        key = (action, topic)
        entries.pop(key, None)
        entries[key] = (allowed, expires_at)
        while len(entries) > max_size:
            entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# -- explaining a decision ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AclStep:
    """What one `client.check_acl` callback answered."""

    callback: Callable[..., Any]
    #: allow / deny / None (no opinion) / "error" (the callback raised)
    answer: str | None
    stopped: bool = False
    match: AclMatch | None = None  #: for the file ACL: the rule that matched


@dataclass(frozen=True, slots=True)
class AclExplanation:
    """An ACL decision with its reasons (``GET /api/v3/acl/explain``)."""

    decision: str  #: allow | deny
    #: what decided: rule (the ACL file), hook (another callback), acl_nomatch,
    #: zone (ACL off in the client's zone), superuser
    source: str
    topic: str  #: the topic the rules saw (a shared subscription's real filter)
    nomatch: str
    decider: AclStep | None = None
    steps: tuple[AclStep, ...] = field(default=())


async def explain_acl(hooks: Hooks, internal: InternalAcl | None, client: AclClient, action: str,
                topic: str, nomatch: str, *, acl_enabled: bool = True,
                superuser: bool = False) -> AclExplanation:
    """Run the `client.check_acl` chain as `Broker.check_acl_async` does (cache aside),
    recording each callback's answer and which one decided."""
    info = client.info() if isinstance(client, AclSubject) else client
    topic = acl_topic(action, topic)
    if superuser:
        return AclExplanation(ALLOW, "superuser", topic, nomatch)
    if not acl_enabled:
        return AclExplanation(ALLOW, "zone", topic, nomatch)
    acc: Any = nomatch
    steps: list[AclStep] = []
    decider: AclStep | None = None
    for callback in hooks.callbacks(HookPoint.CLIENT_CHECK_ACL):
        match: AclMatch | None = None
        try:
            if internal is not None and callback == internal.check:
                match = internal.match(info, action, topic)
                result: Any = None if match is None else Stop(match.permission)
            else:
                result = callback(info, action, topic, acc)
                if inspect.isawaitable(result):  # an ACL source doing I/O
                    result = await result
        except Exception:
            steps.append(AclStep(callback, "error"))
            continue
        stopped = isinstance(result, Stop)
        value = result.value if isinstance(result, Stop) else result
        step = AclStep(callback, None if value is None else str(value), stopped, match)
        steps.append(step)
        if value is not None:
            acc = value
            decider = step
        if stopped:
            break
    decision = ALLOW if acc == ALLOW else DENY
    if decider is None:
        return AclExplanation(decision, "acl_nomatch", topic, nomatch, None, tuple(steps))
    source = "rule" if decider.match is not None else "hook"
    return AclExplanation(decision, source, topic, nomatch, decider, tuple(steps))
