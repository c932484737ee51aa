"""The rule SQL of EMQ X v3 (``SELECT ... FROM "t/#" WHERE ...``): parse once, apply fast.

`parse_sql` parses a statement with a lark LALR grammar and compiles it into closures,
so `RuleSql.apply` — run for every event a rule listens to — walks no tree: it calls
one closure for the WHERE clause and one per selected field.

Both generations of FROM are accepted (facts §8.1): quoted topic filters (v3.1, the
seed's ``select * from "t/#"``: the rule listens to ``message.publish`` on matching
topics) and quoted event names (v3.2, ``FROM "client.connected"``).  WHERE may use any
column of the event or a SELECT alias (v3.2); an alias is inlined into the WHERE clause
at compile time, so WHERE runs first and SELECT only for events that pass.

Pure: no asyncio, no broker; only `starling.mqtt`'s topic matching.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from starling.mqtt import is_valid_topic_filter, matches

from .functions import (
    FUNCTIONS,
    Context,
    Key,
    SqlRuntimeError,
    as_text,
    int_div,
    is_number,
    nested_get,
    parse_number,
    to_str,
)

__all__ = [
    "CLIENT_EVENTS",
    "EVENTS",
    "MESSAGE_EVENTS",
    "RuleSql",
    "SelectedField",
    "SqlError",
    "parse_sql",
]

#: Events whose columns describe a message; a topic filter in FROM restricts these.
MESSAGE_EVENTS = frozenset({"message.publish", "message.deliver", "message.acked",
                            "message.dropped"})
#: The other events EMQ X v3.2 accepts in FROM (session.* came in later 3.2.x releases).
CLIENT_EVENTS = frozenset({"client.connected", "client.disconnected", "client.subscribe",
                           "client.unsubscribe", "session.subscribed",
                           "session.unsubscribed"})
EVENTS = MESSAGE_EVENTS | CLIENT_EVENTS


class SqlError(Exception):
    """A statement that cannot become a rule; the text says what and where."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.reason = message
        self.line = line
        self.column = column


_GRAMMAR = r"""
statement: SELECT fields FROM sources where? SEMICOLON?
where: WHERE expr

fields: field ("," field)*
field: STAR                -> star
     | expr (AS alias)?    -> column
alias: NAME ("." NAME)*
     | STRING
sources: STRING ("," STRING)*

?expr: or_expr
?or_expr: and_expr
        | or_expr OR and_expr              -> or_op
?and_expr: not_expr
         | and_expr AND not_expr           -> and_op
?not_expr: cmp_expr
         | NOT not_expr                    -> not_op
?cmp_expr: sum
         | sum CMP sum                     -> compare
         | sum IN "(" args ")"             -> in_op
         | sum NOT IN "(" args ")"         -> not_in_op
?sum: product
    | sum PLUS product                     -> binop
    | sum MINUS product                    -> binop
?product: unary
        | product STAR unary               -> binop
        | product SLASH unary              -> binop
        | product DIV unary                -> binop
        | product MOD unary                -> binop
?unary: atom
      | MINUS unary                        -> neg
      | PLUS unary                         -> pos
?atom: NUMBER                              -> number
     | STRING                              -> string
     | TRUE                                -> true
     | FALSE                               -> false
     | NULL                                -> null
     | path
     | call
     | "(" expr ")"
path: NAME ("." NAME | "[" MINUS? NUMBER "]")*
call: (NAME | DIV | MOD) "(" args? ")"
args: expr ("," expr)*

SELECT: "select"i
FROM: "from"i
WHERE: "where"i
AS: "as"i
AND: "and"i
OR: "or"i
NOT: "not"i
IN: "in"i
TRUE: "true"i
FALSE: "false"i
NULL: "null"i
DIV: "div"i
MOD: "mod"i
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/
STRING: /"(?:[^"\\]|\\.|"")*"|'(?:[^'\\]|\\.|'')*'/
CMP: /=~|!=|<>|>=|<=|=|>|</
STAR: "*"
SLASH: "/"
PLUS: "+"
MINUS: "-"
SEMICOLON: ";"
COMMENT: /--[^\n]*/
%ignore COMMENT
%ignore /\s+/
"""

_PARSER = Lark(_GRAMMAR, start="statement", parser="lalr", lexer="basic",
               propagate_positions=True, maybe_placeholders=False)

#: Words of other SQL dialects (and of EMQ X v4) that users try; refused by name.
_UNSUPPORTED = {
    "foreach": "FOREACH/DO/INCASE is EMQ X v4 syntax; EMQ X v3.2 (and Starling) has only SELECT",
    "incase": "FOREACH/DO/INCASE is EMQ X v4 syntax; EMQ X v3.2 (and Starling) has only SELECT",
    "case": "CASE expressions are not supported",
    "like": "LIKE is not supported; use =~ with a topic filter, or a function",
    "is": "IS [NOT] NULL is not supported; use is_null(x) / is_not_null(x) or x = null",
    "between": "BETWEEN is not supported; use x >= a and x <= b",
    "join": "JOIN is not supported: a rule reads one event",
    "group": "GROUP BY is not supported: a rule reads one event",
    "order": "ORDER BY is not supported: a rule reads one event",
    "limit": "LIMIT is not supported: a rule reads one event",
    "having": "HAVING is not supported",
    "union": "UNION is not supported: one SELECT per rule",
}

_TERMINAL_TEXT = {
    "SELECT": "SELECT", "FROM": "FROM", "WHERE": "WHERE", "AS": "AS", "AND": "AND",
    "OR": "OR", "NOT": "NOT", "IN": "IN", "TRUE": "true", "FALSE": "false", "NULL": "null",
    "DIV": "div", "MOD": "mod", "NAME": "a name", "NUMBER": "a number",
    "STRING": "a quoted string", "CMP": "a comparison (= != <> > < >= <= =~)",
    "STAR": "'*'", "SLASH": "'/'", "PLUS": "'+'", "MINUS": "'-'", "SEMICOLON": "';'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "DOT": "'.'", "$END": "end of statement",
}


def _describe_expected(expected: Iterable[str]) -> str:
    """Keywords first (the likeliest fix), then names and literals, then punctuation."""
    texts = {_TERMINAL_TEXT.get(name, name) for name in expected}
    names = sorted(texts, key=lambda t: (not t.isupper(), t.startswith("'"), t))
    if not names:
        return ""
    if len(names) > 10:
        names = [*names[:10], "..."]
    if len(names) < 3:
        return ", expected " + " or ".join(names)
    return ", expected one of " + ", ".join(names)


def _hint_before(sql: str, token: Token) -> Token | None:
    """The word just before `token` when it is SQL that EMQ X v3.2 does not have (``CASE
    WHEN`` fails on WHEN, but CASE is what to report)."""
    previous: Token | None = None
    try:
        for tok in _PARSER.lex(sql):
            if tok.start_pos is not None and token.start_pos is not None \
                    and tok.start_pos >= token.start_pos:
                break
            previous = tok
    except UnexpectedInput:
        return None
    if previous is not None and str(previous).lower() in _UNSUPPORTED:
        return previous
    return None


def _end_position(sql: str) -> tuple[int, int]:
    lines = sql.split("\n")
    return len(lines), len(lines[-1]) + 1


def _syntax_error(sql: str, exc: UnexpectedInput) -> SqlError:
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = sql[pos] if pos < len(sql) else ""
        return SqlError(f"syntax error: unexpected character {char!r}", exc.line, exc.column)
    if isinstance(exc, UnexpectedEOF):
        return SqlError("syntax error: unexpected end of statement"
                        + _describe_expected(exc.expected), *_end_position(sql))
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            return SqlError("syntax error: unexpected end of statement"
                            + _describe_expected(exc.expected), *_end_position(sql))
        culprit = token if str(token).lower() in _UNSUPPORTED else _hint_before(sql, token)
        if culprit is not None:
            hint = _UNSUPPORTED[str(culprit).lower()]
            return SqlError(f"syntax error: unexpected {str(culprit)!r}: {hint}",
                            culprit.line, culprit.column)
        return SqlError(f"syntax error: unexpected {str(token)!r}"
                        + _describe_expected(exc.expected), token.line, token.column)
    return SqlError(f"syntax error: {exc}")


# -- values ------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def _unquote(token: Token) -> str:
    """The text of a quoted literal: backslash escapes and doubled quotes."""
    text = str(token)
    quote, body = text[0], text[1:-1]
    if "\\" not in body and quote * 2 not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
        elif ch == quote and i + 1 < len(body) and body[i + 1] == quote:
            out.append(quote)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _number(text: str) -> int | float:
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


Eval = Callable[[Context], Any]

_NUMBER_TYPES = (int, float)


def _coerce_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Make two operands of different types comparable as EMQ X does: a number and a
    numeric string compare as numbers, a boolean and a string as 'true'/'false', bytes as
    text.  Operands that stay incomparable are returned as they are."""
    if isinstance(a, (bytes, bytearray)):
        a = as_text(a) if as_text(a) is not None else a
    if isinstance(b, (bytes, bytearray)):
        b = as_text(b) if as_text(b) is not None else b
    if isinstance(a, str):
        if is_number(b):
            number = parse_number(a)
            return (number, b) if number is not None else (a, b)
        if isinstance(b, bool):
            return a, "true" if b else "false"
    elif isinstance(b, str):
        if is_number(a):
            number = parse_number(b)
            return (a, number) if number is not None else (a, b)
        if isinstance(a, bool):
            return "true" if a else "false", b
    return a, b


def _eq(a: Any, b: Any) -> bool:
    if type(a) is type(b):
        return bool(a == b)
    if is_number(a) and is_number(b):
        return bool(a == b)
    a, b = _coerce_pair(a, b)
    if type(a) is type(b) or (is_number(a) and is_number(b)):
        return bool(a == b)
    return False


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        ta, tb = type(a), type(b)
        if ta is tb and (ta is int or ta is float or ta is str):
            return op(a, b)
        a, b = _coerce_pair(a, b)
        if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return op(a, b)
        return False  # null or mismatched types: not ordered, so the comparison is false

    return compare


def _topic_match(topic: Any, topic_filter: Any) -> bool:
    t, f = as_text(topic), as_text(topic_filter)
    if t is None or f is None or not is_valid_topic_filter(f):
        return False
    return matches(f, t)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<>": lambda a, b: not _eq(a, b),
    ">": _ordered(operator.gt),
    "<": _ordered(operator.lt),
    ">=": _ordered(operator.ge),
    "<=": _ordered(operator.le),
    "=~": _topic_match,
}


def _arith_error(op: str, a: Any, b: Any) -> SqlRuntimeError:
    return SqlRuntimeError(f"bad operands for {op}: {a!r} {op} {b!r}")


def _add(a: Any, b: Any) -> Any:
    """Numbers add; if either side is a string the two are concatenated as strings."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return a + b
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)):
        if a is None or b is None:
            raise _arith_error("+", a, b)
        return to_str(a) + to_str(b)
    raise _arith_error("+", a, b)


def _numeric(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if is_number(a) and is_number(b):
            return fn(a, b)
        raise _arith_error(op, a, b)

    return apply


def _divide(a: Any, b: Any) -> float:
    if b == 0:
        raise SqlRuntimeError(f"division by zero: {a!r} / {b!r}")
    return a / b  # type: ignore[no-any-return]


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _numeric("-", operator.sub),
    "*": _numeric("*", operator.mul),
    "/": _numeric("/", _divide),
    "div": int_div,
    "mod": FUNCTIONS["mod"].impl,
}


# -- compiler ----------------------------------------------------------------------------

_NOCONST = object()


def _position(node: Tree[Token] | Token) -> tuple[int | None, int | None]:
    if isinstance(node, Token):
        return node.line, node.column
    meta = node.meta
    if getattr(meta, "empty", True):
        return None, None
    return meta.line, meta.column


def _path_keys(tree: Tree[Token]) -> tuple[Key, ...]:
    """``a.b[2]`` as ("a", "b", 2); an index must be a non-zero integer."""
    keys: list[Key] = []
    negative = False
    for tok in tree.children:
        assert isinstance(tok, Token)
        if tok.type == "MINUS":
            negative = True
        elif tok.type == "NUMBER":
            if not tok.isdigit() or int(tok) == 0:
                raise SqlError(f"array index must be a non-zero integer, got {tok!s}",
                               tok.line, tok.column)
            keys.append(-int(tok) if negative else int(tok))
            negative = False
        else:
            keys.append(str(tok))
    name = keys[0]
    if isinstance(name, str) and name.lower() == "timestamp":
        keys[0] = "timestamp"  # TIMESTAMP is a reserved word mapped to the column
    return tuple(keys)


def _literal(tree: Tree[Token] | Token) -> Any:
    """The value of a literal expression, or _NOCONST."""
    if isinstance(tree, Token):
        return _NOCONST
    kind = tree.data
    if kind == "number":
        return _number(str(tree.children[0]))
    if kind == "string":
        token = tree.children[0]
        assert isinstance(token, Token)
        return _unquote(token)
    if kind == "true":
        return True
    if kind == "false":
        return False
    if kind == "null":
        return None
    if kind in ("neg", "pos"):
        inner = _literal(tree.children[1])
        if is_number(inner):
            return -inner if kind == "neg" else inner
    return _NOCONST


@dataclass
class _Compiler:
    sql: str
    aliases: dict[tuple[Key, ...], Tree[Token]] = field(default_factory=dict)
    columns: set[str] = field(default_factory=set)
    resolve_aliases: bool = False

    def compile(self, tree: Tree[Token] | Token) -> Eval:
        value = _literal(tree)
        if value is not _NOCONST:
            return lambda ctx: value
        assert isinstance(tree, Tree)
        method = getattr(self, "_" + str(tree.data))
        return method(tree)  # type: ignore[no-any-return]

    # paths ---------------------------------------------------------------------------

    def _path(self, tree: Tree[Token]) -> Eval:
        keys = _path_keys(tree)
        if self.resolve_aliases:
            for n in range(len(keys), 0, -1):
                target = self.aliases.get(keys[:n])
                if target is not None:
                    inner = _Compiler(self.sql, columns=self.columns).compile(target)
                    rest = keys[n:]
                    if not rest:
                        return inner
                    return lambda ctx: nested_get(inner(ctx), rest)
        name = str(keys[0])
        self.columns.add(name)
        if len(keys) == 1:
            return lambda ctx: ctx.columns.get(name)
        rest = keys[1:]
        if len(rest) == 1:
            key = rest[0]

            def get_one(ctx: Context) -> Any:
                value = ctx.structured(name)
                return value.get(key) if isinstance(value, dict) else nested_get(value, rest)

            return get_one
        return lambda ctx: nested_get(ctx.structured(name), rest)

    # calls ---------------------------------------------------------------------------

    def _call(self, tree: Tree[Token]) -> Eval:
        name_token = tree.children[0]
        assert isinstance(name_token, Token)
        name = str(name_token).lower()
        args_tree = tree.children[1] if len(tree.children) > 1 else None
        arg_trees = list(args_tree.children) if isinstance(args_tree, Tree) else []
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise SqlError(f"unknown function {name_token!s}()", name_token.line,
                           name_token.column)
        if not fn.min_args <= len(arg_trees) <= fn.max_args:
            plural = "" if fn.arity_text() == "1" else "s"
            raise SqlError(f"function {name}() takes {fn.arity_text()} argument{plural}, "
                           f"got {len(arg_trees)}", name_token.line, name_token.column)
        args = [self.compile(arg) for arg in arg_trees]
        impl = fn.impl
        if fn.context:
            if not args:
                return impl
            if len(args) == 1:
                a0 = args[0]
                return lambda ctx: impl(ctx, a0(ctx))
            return lambda ctx: impl(ctx, *[a(ctx) for a in args])
        if not args:
            return lambda ctx: impl()
        if len(args) == 1:
            a0 = args[0]
            return lambda ctx: impl(a0(ctx))
        if len(args) == 2:
            a0, a1 = args
            return lambda ctx: impl(a0(ctx), a1(ctx))
        return lambda ctx: impl(*[a(ctx) for a in args])

    # operators -----------------------------------------------------------------------

    def _binop(self, tree: Tree[Token]) -> Eval:
        left, op_token, right = tree.children
        fn = _ARITH[str(op_token).lower()]
        lhs, rhs = self.compile(left), self.compile(right)
        return lambda ctx: fn(lhs(ctx), rhs(ctx))

    def _neg(self, tree: Tree[Token]) -> Eval:
        inner = self.compile(tree.children[1])

        def negate(ctx: Context) -> Any:
            value = inner(ctx)
            if not is_number(value):
                raise SqlRuntimeError(f"bad operand for unary -: {value!r}")
            return -value

        return negate

    def _pos(self, tree: Tree[Token]) -> Eval:
        return self.compile(tree.children[1])

    def _compare(self, tree: Tree[Token]) -> Eval:
        left, op_token, right = tree.children
        op = str(op_token)
        fn = _COMPARE[op]
        lhs = self.compile(left)
        const = _literal(right)
        if op == "=~" and const is not _NOCONST:
            if not isinstance(const, str) or not is_valid_topic_filter(const):
                line, column = _position(right)
                raise SqlError(f"=~ needs a valid topic filter on its right, got {const!r}",
                               line, column)
            topic_filter = const

            def topic_matches(ctx: Context) -> bool:
                topic = lhs(ctx)
                if type(topic) is not str:
                    topic = as_text(topic)
                    if topic is None:
                        return False
                return matches(topic_filter, topic)

            return topic_matches
        if const is not _NOCONST:
            return lambda ctx: fn(lhs(ctx), const)
        rhs = self.compile(right)
        return lambda ctx: fn(lhs(ctx), rhs(ctx))

    def _in(self, tree: Tree[Token]) -> Eval:
        left = tree.children[0]
        args = tree.children[-1]
        assert isinstance(args, Tree)
        value = self.compile(left)
        consts = [_literal(item) for item in args.children]
        if all(c is not _NOCONST for c in consts):
            return lambda ctx: _member(value(ctx), consts)
        items = [self.compile(item) for item in args.children]
        return lambda ctx: _member(value(ctx), [item(ctx) for item in items])

    def _in_op(self, tree: Tree[Token]) -> Eval:
        return self._in(tree)

    def _not_in_op(self, tree: Tree[Token]) -> Eval:
        inner = self._in(tree)
        return lambda ctx: not inner(ctx)

    def _and_op(self, tree: Tree[Token]) -> Eval:
        lhs, rhs = self.compile(tree.children[0]), self.compile(tree.children[2])
        return lambda ctx: lhs(ctx) is True and rhs(ctx) is True

    def _or_op(self, tree: Tree[Token]) -> Eval:
        lhs, rhs = self.compile(tree.children[0]), self.compile(tree.children[2])
        return lambda ctx: lhs(ctx) is True or rhs(ctx) is True

    def _not_op(self, tree: Tree[Token]) -> Eval:
        inner = self.compile(tree.children[1])
        return lambda ctx: inner(ctx) is not True


def _member(value: Any, items: list[Any]) -> bool:
    return any(_eq(value, item) for item in items)


# -- the compiled rule -------------------------------------------------------------------

def _put(out: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    """out[k1][k2]...[kn] = value, making (or replacing non-object) levels on the way."""
    node = out
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


@dataclass(frozen=True)
class SelectedField:
    """One SELECT field: the output key path and the expression's source text."""

    keys: tuple[str, ...]
    expression: str


class RuleSql:
    """A parsed, compiled rule statement.  Build it with `parse_sql`."""

    def __init__(self, sql: str, sources: list[str], select_all: bool,
                 fields: list[SelectedField], select: Callable[[Context], dict[str, Any]],
                 where: Eval | None, columns: frozenset[str]) -> None:
        self.sql = sql
        #: The FROM entries, unquoted, in order.
        self.sources = sources
        #: The FROM entries that are event names.
        self.event_names = [s for s in sources if s in EVENTS]
        #: The FROM entries that are topic filters (they restrict message events).
        self.topic_filters = [s for s in sources if s not in EVENTS]
        #: ``SELECT *`` (possibly with more fields after it).
        self.select_all = select_all
        #: The fields after ``SELECT`` other than ``*``.
        self.fields = fields
        #: Top-level column names the statement reads (SELECT aliases excluded).
        self.referenced_columns = columns
        self._select = select
        self._where = where

    def __repr__(self) -> str:
        return f"RuleSql({self.sql!r})"

    def events(self) -> set[str]:
        """The events the rule listens to; a topic filter means ``message.publish``."""
        found = set(self.event_names)
        if self.topic_filters:
            found.add("message.publish")
        return found

    def matches_topic(self, topic: str) -> bool:
        """Does a message on `topic` concern this rule?  True when FROM has no topic
        filter (event names only), else when one of the filters matches."""
        filters = self.topic_filters
        if not filters:
            return True
        return any(matches(f, topic) for f in filters)

    def unknown_columns(self, known: Collection[str]) -> list[str]:
        """The columns the statement reads that are not in `known`, sorted."""
        return sorted(self.referenced_columns.difference(known))

    def check_columns(self, known: Collection[str]) -> None:
        """Refuse a statement reading a column the event does not have (EMQ X v3.2's
        ``Unknown Column: x``)."""
        unknown = self.unknown_columns(known)
        if unknown:
            raise SqlError(f"Unknown Column: {unknown[0]}")

    def apply(self, columns: Mapping[str, Any]) -> dict[str, Any] | None:
        """The selected data for one event, or None when WHERE does not hold.

        Raises `SqlRuntimeError` when evaluation fails (bad argument types, ...)."""
        ctx = Context(columns)
        try:
            where = self._where
            if where is not None and where(ctx) is not True:
                return None
            return self._select(ctx)
        except SqlRuntimeError:
            raise
        except Exception as exc:  # a bug-free function can still hit e.g. OverflowError
            raise SqlRuntimeError(f"{type(exc).__name__}: {exc}") from exc

    def test(self, columns: Mapping[str, Any]) -> dict[str, Any] | None:
        """`apply`, under the name EMQ X's SQL tester (``test: true``) uses."""
        return self.apply(columns)


def _check_source(token: Token) -> str:
    text = _unquote(token)
    if text in EVENTS:
        return text
    where = (token.line, token.column)
    if not text:
        raise SqlError("empty FROM entry: give a topic filter or an event name", *where)
    if text.startswith("$events/"):
        raise SqlError(f"{text!r} is an EMQ X v4 event topic; EMQ X v3.2 names events "
                       f"like \"client.connected\"", *where)
    if not is_valid_topic_filter(text):
        raise SqlError(f"FROM {text!r} is neither an event ({', '.join(sorted(EVENTS))}) "
                       "nor a valid topic filter", *where)
    return text


def _build_select(star: bool, plan: list[tuple[tuple[str, ...], Eval]]
                  ) -> Callable[[Context], dict[str, Any]]:
    flat = all(len(keys) == 1 for keys, _ in plan)
    if star and not plan:
        return lambda ctx: dict(ctx.columns)
    if flat:
        pairs = [(keys[0], fn) for keys, fn in plan]
        if not star:
            if len(pairs) == 1:
                (k0, f0), = pairs
                return lambda ctx: {k0: f0(ctx)}
            return lambda ctx: {key: fn(ctx) for key, fn in pairs}

        def select_star_flat(ctx: Context) -> dict[str, Any]:
            out = dict(ctx.columns)
            for key, fn in pairs:
                out[key] = fn(ctx)
            return out

        return select_star_flat

    def select_nested(ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = dict(ctx.columns) if star else {}
        for keys, fn in plan:
            _put(out, keys, fn(ctx))
        return out

    return select_nested


def parse_sql(sql: str) -> RuleSql:
    """Parse and compile a rule statement; `SqlError` says what is wrong and where."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("empty SQL statement")
    try:
        tree = _PARSER.parse(sql)
    except UnexpectedInput as exc:
        raise _syntax_error(sql, exc) from None

    fields_tree = next(c for c in tree.children if isinstance(c, Tree) and c.data == "fields")
    sources_tree = next(c for c in tree.children if isinstance(c, Tree) and c.data == "sources")
    where_tree = next((c for c in tree.children if isinstance(c, Tree) and c.data == "where"),
                      None)

    sources = [_check_source(tok) for tok in sources_tree.children if isinstance(tok, Token)]

    # SELECT fields: output keys and the expressions behind them
    star = False
    selected: list[tuple[tuple[str, ...], Tree[Token]]] = []
    fields: list[SelectedField] = []
    aliases: dict[tuple[Key, ...], Tree[Token]] = {}
    for fld in fields_tree.children:
        assert isinstance(fld, Tree)
        if fld.data == "star":
            star = True
            continue
        expr = fld.children[0]
        alias = next((c for c in fld.children[1:] if isinstance(c, Tree)), None)
        text = _source_text(sql, expr)
        if alias is not None:
            first = alias.children[0]
            if isinstance(first, Token) and first.type == "STRING":
                keys: tuple[str, ...] = (_unquote(first),)
            else:
                keys = tuple(str(tok) for tok in alias.children)
            aliases[keys] = expr  # type: ignore[assignment]
        elif isinstance(expr, Tree) and expr.data == "path" and all(
                isinstance(k, str) for k in _path_keys(expr)):
            keys = tuple(str(k) for k in _path_keys(expr))
        else:
            keys = (text,)
        selected.append((keys, expr))  # type: ignore[arg-type]
        fields.append(SelectedField(keys, text))

    compiler = _Compiler(sql)
    try:
        plan = [(keys, compiler.compile(expr)) for keys, expr in selected]
        where: Eval | None = None
        if where_tree is not None:
            where_compiler = _Compiler(sql, aliases=aliases, columns=compiler.columns,
                                       resolve_aliases=True)
            where = where_compiler.compile(where_tree.children[1])
    except RecursionError:
        raise SqlError("expression nested too deeply") from None
    return RuleSql(sql, sources, star, fields, _build_select(star, plan), where,
                   frozenset(compiler.columns))


def _source_text(sql: str, node: Tree[Token] | Token) -> str:
    if isinstance(node, Token):
        return str(node)
    meta = node.meta
    if getattr(meta, "empty", True):
        return ""
    return sql[meta.start_pos:meta.end_pos]

