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

import itertools
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


class _Unit:
    """What the generated code of one statement refers to: the helpers and constants it
    names (globals of its function), its temporaries, and the columns it reads.

    Every name it makes carries a prefix unique in the process, so the code of several
    statements can be put in one function (the engine runs all the rules of an event
    that way) and their namespaces merged without a clash."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.prefix = f"_q{next(self._ids)}"
        self.ns: dict[str, Any] = {}
        self.temps = 0
        #: Columns read as a whole: the code reads local ``_c_<name>``, which the
        #: function's prologue sets once (a read is pure, so it can be hoisted).
        self.reads: set[str] = set()
        #: Columns read as objects (JSON decoded): local ``_j_<name>``, set on first use.
        self.structs: set[str] = set()
        #: Whether the code passes ``ctx`` (the event's `Context`) to a function.
        self.uses_ctx = False

    def const(self, value: Any, kind: str = "k") -> str:
        name = f"{self.prefix}{kind}{len(self.ns)}"
        self.ns[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"{self.prefix}t{self.temps}"

    def read(self, column: str) -> str:
        self.reads.add(column)
        return f"_c_{column}"

    def structured(self, column: str) -> str:
        """The column as an object (`Context.structured`), fetched on first use only:
        a JSON payload is not decoded for an event no expression needs it for."""
        self.structs.add(column)
        local = f"_j_{column}"
        return f"({local} if {local} is not _UNSET else ({local} := _s({column!r})))"


def _negate(value: Any) -> Any:
    if not is_number(value):
        raise SqlRuntimeError(f"bad operand for unary -: {value!r}")
    return -value


def _member(value: Any, items: list[Any]) -> bool:
    return any(_eq(value, item) for item in items)


_HELPERS: dict[str, Any] = {"_eq": _eq, "_member": _member, "_nested": nested_get,
                            "_neg": _negate, "_topic_match": _topic_match,
                            "_UNSET": _NOCONST, "_Context": Context}

#: Context functions that, without arguments, read one column: inlined as a read (as
#: the functions in `functions.py` do; clientid() reads "clientid" first).
_COLUMN_CALLS = {"msgid": "id", "qos": "qos", "peername": "peername", "topic": "topic",
                 "payload": "payload", "clientid": "client_id"}

#: Python operators of the ordered comparisons (same meaning on two ints/floats/strs).
_ORDERED_OPS = {">": ">", "<": "<", ">=": ">=", "<=": "<="}


@dataclass
class _CodeGen:
    """Python source for the expressions of one statement.

    Every expression becomes a Python expression over the event's `Context` (``ctx``,
    with ``_g`` its columns' ``get`` and ``_s`` its `structured`), atomic or in
    parentheses, so it can be embedded anywhere.  Only constructs the grammar admits
    reach here and every constant or function is referenced by a generated name, never
    spliced in as text (column names are NAME tokens, printed with repr)."""

    sql: str
    unit: _Unit
    aliases: dict[tuple[Key, ...], Tree[Token]] = field(default_factory=dict)
    columns: set[str] = field(default_factory=set)
    resolve_aliases: bool = False

    def expr(self, tree: Tree[Token] | Token) -> str:
        value = _literal(tree)
        if value is not _NOCONST:
            return self._const(value)
        assert isinstance(tree, Tree)
        method = getattr(self, "_" + str(tree.data))
        return method(tree)  # type: ignore[no-any-return]

    def _const(self, value: Any) -> str:
        if value is None or value is True or value is False:
            return repr(value)
        if type(value) is int and value >= 0:
            return repr(value)
        return self.unit.const(value)

    # paths ---------------------------------------------------------------------------

    def _path(self, tree: Tree[Token]) -> str:
        keys = _path_keys(tree)
        unit = self.unit
        if self.resolve_aliases:
            for n in range(len(keys), 0, -1):
                target = self.aliases.get(keys[:n])
                if target is not None:
                    inner = _CodeGen(self.sql, unit, columns=self.columns).expr(target)
                    rest = keys[n:]
                    if not rest:
                        return inner
                    return f"_nested({inner}, {unit.const(rest)})"
        name = str(keys[0])
        self.columns.add(name)
        if len(keys) == 1:
            return unit.read(name)
        rest = keys[1:]
        value = unit.structured(name)
        if len(rest) == 1 and isinstance(rest[0], str):
            t = unit.temp()
            return (f"({t}.get({rest[0]!r}) if isinstance({t} := {value}, dict) "
                    f"else _nested({t}, {unit.const(rest)}))")
        return f"_nested({value}, {unit.const(rest)})"

    # calls ---------------------------------------------------------------------------

    def _call(self, tree: Tree[Token]) -> str:
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
        if not arg_trees and name in _COLUMN_CALLS:  # clientid(), topic(), ...
            column = self.unit.read(_COLUMN_CALLS[name])
            if name != "clientid":
                return column
            given = self.unit.read("clientid")
            return f"({given} if {given} is not None else {column})"
        args = [self.expr(arg) for arg in arg_trees]
        if fn.context:
            self.unit.uses_ctx = True
            args.insert(0, "ctx")
        return f"{self.unit.const(fn.impl, 'f')}({', '.join(args)})"

    # operators -----------------------------------------------------------------------

    def _binop(self, tree: Tree[Token]) -> str:
        left, op_token, right = tree.children
        fn = self.unit.const(_ARITH[str(op_token).lower()], "f")
        return f"{fn}({self.expr(left)}, {self.expr(right)})"

    def _neg(self, tree: Tree[Token]) -> str:
        return f"_neg({self.expr(tree.children[1])})"

    def _pos(self, tree: Tree[Token]) -> str:
        return self.expr(tree.children[1])

    def _compare(self, tree: Tree[Token]) -> str:
        left, op_token, right = tree.children
        op = str(op_token)
        unit = self.unit
        lhs = self.expr(left)
        const = _literal(right)
        if op == "=~":
            if const is _NOCONST:
                return f"_topic_match({lhs}, {self.expr(right)})"
            if not isinstance(const, str) or not is_valid_topic_filter(const):
                line, column = _position(right)
                raise SqlError(f"=~ needs a valid topic filter on its right, got {const!r}",
                               line, column)
            return f"{unit.const(_filter_matcher(const), 'f')}({lhs})"
        if const is _NOCONST:
            return f"{unit.const(_COMPARE[op], 'f')}({lhs}, {self.expr(right)})"
        k = self._const(const)
        # A column read is a local already; anything else is evaluated once, into a
        # temporary.
        t, bound = (lhs, lhs) if lhs.startswith("_c_") else (t := unit.temp(), f"{t} := {lhs}")
        kind = type(const)
        # Fast paths: operands of the same plain type compare as Python does (what
        # `_eq` / `_ordered` do too); anything else takes the general function.
        if op in _ORDERED_OPS and kind in (int, float, str):
            check = (f"type({bound}) is str" if kind is str else
                     f"type({bound}) is int or type({t}) is float")
            return (f"({t} {_ORDERED_OPS[op]} {k} if {check} "
                    f"else {unit.const(_COMPARE[op], 'f')}({t}, {k}))")
        if op in ("=", "!=", "<>") and kind in (int, float, str, bool):
            py, neg = ("==", "") if op == "=" else ("!=", "not ")
            return (f"({t} {py} {k} if type({bound}) is {kind.__name__} "
                    f"else {neg}_eq({t}, {k}))")
        return f"{unit.const(_COMPARE[op], 'f')}({lhs}, {k})"

    def _in(self, tree: Tree[Token]) -> str:
        left = tree.children[0]
        args = tree.children[-1]
        assert isinstance(args, Tree)
        value = self.expr(left)
        consts = [_literal(item) for item in args.children]
        if all(c is not _NOCONST for c in consts):
            return f"_member({value}, {self.unit.const(consts)})"
        items = ", ".join(self.expr(item) for item in args.children)
        return f"_member({value}, [{items}])"

    def _in_op(self, tree: Tree[Token]) -> str:
        return self._in(tree)

    def _not_in_op(self, tree: Tree[Token]) -> str:
        return f"(not {self._in(tree)})"

    def _chain(self, tree: Tree[Token]) -> list[str]:
        """``a AND b AND c`` (nested to the left) as the code of a, b, c: a flat Python
        ``and`` of ``x is True`` means the same and does not nest."""
        kind = tree.data
        operands: list[Tree[Token] | Token] = []
        node: Tree[Token] | Token = tree
        while isinstance(node, Tree) and node.data == kind:
            operands.append(node.children[2])
            node = node.children[0]
        operands.append(node)
        return [self.expr(operand) for operand in reversed(operands)]

    def _and_op(self, tree: Tree[Token]) -> str:
        return "(" + " and ".join(f"{code} is True" for code in self._chain(tree)) + ")"

    def _or_op(self, tree: Tree[Token]) -> str:
        return "(" + " or ".join(f"{code} is True" for code in self._chain(tree)) + ")"

    def _not_op(self, tree: Tree[Token]) -> str:
        return f"({self.expr(tree.children[1])} is not True)"


def _filter_matcher(topic_filter: str) -> Callable[[Any], bool]:
    """``x =~ 'a/+'`` with a constant, checked filter."""

    def topic_matches(topic: Any) -> bool:
        if type(topic) is not str:
            topic = as_text(topic)
            if topic is None:
                return False
        return matches(topic_filter, topic)

    return topic_matches


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


_HELPERS["_put"] = _put


@dataclass(frozen=True)
class SelectedField:
    """One SELECT field: the output key path and the expression's source text."""

    keys: tuple[str, ...]
    expression: str


@dataclass(eq=False, repr=False)
class RuleSql:
    """A parsed, compiled rule statement.  Build it with `parse_sql`."""

    sql: str
    #: The FROM entries, unquoted, in order.
    sources: list[str]
    #: ``SELECT *`` (possibly with more fields after it).
    select_all: bool
    #: The fields after ``SELECT`` other than ``*``.
    fields: list[SelectedField]
    #: The statement as code (the engine fuses the rules of an event into one function).
    code: StatementCode
    #: The compiled statement: the selected data for one event's `Context`, or None
    #: when WHERE does not hold.  Any exception means the SQL failed on that event.
    evaluate: Callable[[Context], dict[str, Any] | None]
    #: The Python source of `evaluate` (for debugging).
    source: str
    #: Top-level column names the statement reads (SELECT aliases excluded).
    referenced_columns: frozenset[str]
    #: The FROM entries that are event names.
    event_names: list[str] = field(init=False)
    #: The FROM entries that are topic filters (they restrict message events).
    topic_filters: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.event_names = [s for s in self.sources if s in EVENTS]
        self.topic_filters = [s for s in self.sources if s not in EVENTS]

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
        try:
            return self.evaluate(Context(columns))
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


def _select_code(star: bool, plan: list[tuple[tuple[str, ...], str]]) -> list[str]:
    """The lines that set ``_sel`` to the selected data: a dict display when every
    output key is flat, else a dict filled key path by key path (`_put`)."""
    if all(len(keys) == 1 for keys, _ in plan):
        items = [f"{keys[0]!r}: {code}" for keys, code in plan]
        if star:
            items.insert(0, "**columns")
        return [f"_sel = {{{', '.join(items)}}}"]
    lines = ["_sel = dict(columns)" if star else "_sel = {}"]
    return lines + [f"_put(_sel, {keys!r}, {code})" for keys, code in plan]


@dataclass(frozen=True)
class StatementCode:
    """A statement as Python code over one event's `Context` (``ctx``), to be put in a
    function by `compile_function`: `where` (an expression, None without WHERE) and
    `select` (statements setting ``_sel``), reading the prologue's locals."""

    where: str | None
    select: list[str]
    #: The globals the code names (constants and functions, prefixed per statement).
    namespace: dict[str, Any]
    #: Columns read whole (locals ``_c_<name>``) and as objects (``_j_<name>``).
    reads: frozenset[str]
    structs: frozenset[str]
    #: Whether it needs ``ctx`` (a function reading the event gets it).
    uses_ctx: bool


def compile_function(header: str, body: list[str], codes: Iterable[StatementCode],
                     namespace: Mapping[str, Any], name: str) -> tuple[Callable[..., Any], str]:
    """Compile ``def <header>:`` whose body is `body` after a prologue that reads the
    columns the `codes` need, once; return the function (`name` in the source) and the
    source.  The function's parameter is ``ctx`` (a `Context`) or ``columns`` (the
    event's columns: a `Context` is then made only if the code needs one)."""
    codes = list(codes)
    prologue: list[str] = []
    if "(ctx" in header:
        prologue.append("columns = ctx.columns")
    elif any(c.uses_ctx or c.structs for c in codes):
        prologue.append("ctx = _Context(columns)")
    reads = sorted(set().union(*(c.reads for c in codes)))
    if reads:
        prologue.append("_g = columns.get")
        prologue += [f"_c_{column} = _g({column!r})" for column in reads]
    structs = sorted(set().union(*(c.structs for c in codes)))
    if structs:
        prologue.append("_s = ctx.structured")
        prologue += [f"_j_{column} = _UNSET" for column in structs]
    source = f"def {header}:\n" + "".join(f"    {line}\n" for line in [*prologue, *body])
    scope: dict[str, Any] = dict(_HELPERS)
    for code in codes:
        scope.update(code.namespace)
    scope.update(namespace)
    exec(compile(source, "<rule sql>", "exec"), scope)  # code generated from the tree
    return scope[name], source


def _function(code: StatementCode) -> tuple[Callable[[Context], dict[str, Any] | None], str]:
    """The statement's own function (`RuleSql.evaluate`).  WHERE runs first; SELECT
    only for events that pass."""
    body: list[str] = []
    if code.where is not None:
        body += [f"if {code.where} is not True:", "    return None"]
    body += [*code.select, "return _sel"]
    return compile_function("_rule(ctx)", body, [code], {}, "_rule")


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

    unit = _Unit()
    gen = _CodeGen(sql, unit)
    try:
        plan = [(keys, gen.expr(expr)) for keys, expr in selected]
        where: str | None = None
        if where_tree is not None:
            where_gen = _CodeGen(sql, unit, aliases=aliases, columns=gen.columns,
                                 resolve_aliases=True)
            where = where_gen.expr(where_tree.children[1])
        code = StatementCode(where, _select_code(star, plan), unit.ns,
                             frozenset(unit.reads), frozenset(unit.structs), unit.uses_ctx)
        evaluate, source = _function(code)
    except (RecursionError, MemoryError, SyntaxError):
        # Python's own limits (recursion, ~200 nested parentheses in source)
        raise SqlError("expression nested too deeply") from None
    return RuleSql(sql, sources, star, fields, code, evaluate, source,
                   frozenset(gen.columns))


def _source_text(sql: str, node: Tree[Token] | Token) -> str:
    if isinstance(node, Token):
        return str(node)
    meta = node.meta
    if getattr(meta, "empty", True):
        return ""
    return sql[meta.start_pos:meta.end_pos]

