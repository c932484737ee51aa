"""The rule SQL of EMQ X v3 (``SELECT ... FROM "t/#" WHERE ...``, and v3.2.5's
``FOREACH ... DO ... INCASE`` and ``CASE``): parse once, apply fast.

`parse_sql` parses a statement with a lark LALR grammar (here) and compiles it into the
Python source of one function (sqlcode.py; the operators' semantics are in sqlvalues.py),
so `RuleSql.apply` — run for every event a rule listens to — walks no tree.

Both generations of FROM are accepted (facts §8.1): quoted topic filters (v3.1, the
seed's ``select * from "t/#"``: the rule listens to ``message.publish`` on matching
topics) and quoted event names (v3.2, ``FROM "client.connected"``).  Fields are
compiled left to right, each alias a name for the later fields and for WHERE (EMQ X's
"cascaded as"); WHERE runs once the fields it reads are computed, the rest of the
output only for events that pass.  A null (undefined) field is left out of the output.

Pure: no asyncio, no broker; only `starling.mqtt`'s topic matching.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from starling.mqtt import is_valid_topic_filter, matches

from .functions import Context, SqlRuntimeError
from .sqlcode import (
    Selected,
    SelectedField,
    SqlError,
    StatementCode,
    compile_statement,
    unquote,
)

__all__ = [
    "CLIENT_EVENTS",
    "EVENTS",
    "MESSAGE_EVENTS",
    "RuleSql",
    "Selected",
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


_GRAMMAR = r"""
statement: (select_head | foreach_head) FROM sources where? SEMICOLON?
select_head: SELECT fields
foreach_head: FOREACH fields do_clause? incase_clause?
do_clause: DO fields
incase_clause: INCASE expr
where: WHERE expr

fields: field ("," field)*
field: STAR                -> star
     | expr (AS alias)?    -> column
alias: NAME ("." _key)*
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
     | case
     | "(" expr ")"
case: CASE expr? case_when+ case_else? END
case_when: WHEN expr THEN expr
case_else: ELSE expr
path: NAME ("." _key | "[" MINUS? NUMBER "]")*
// after a dot any word is a key, keywords too (payload.end, payload.from)
_key: NAME | SELECT | FROM | WHERE | AS | AND | OR | NOT | IN | TRUE | FALSE | NULL | DIV
    | MOD | CASE | WHEN | THEN | ELSE | END | FOREACH | DO | INCASE
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
CASE: "case"i
WHEN: "when"i
THEN: "then"i
ELSE: "else"i
END: "end"i
FOREACH: "foreach"i
DO: "do"i
INCASE: "incase"i
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

#: Words of other SQL dialects that users try; refused by name.
_UNSUPPORTED = {
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
    "DIV": "div", "MOD": "mod", "CASE": "CASE", "WHEN": "WHEN", "THEN": "THEN",
    "ELSE": "ELSE", "END": "END", "FOREACH": "FOREACH", "DO": "DO", "INCASE": "INCASE",
    "NAME": "a name", "NUMBER": "a number",
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
    """The word just before `token` when it is SQL that EMQ X v3.2 does not have (``x IS
    NULL`` fails on NULL, but IS is what to report)."""
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


@dataclass(eq=False, repr=False)
class RuleSql:
    """A parsed, compiled rule statement.  Build it with `parse_sql`."""

    sql: str
    #: The FROM entries, unquoted, in order.
    sources: list[str]
    #: ``SELECT *`` (or ``DO *``; possibly with more fields).
    select_all: bool
    #: The fields after ``SELECT`` (or FOREACH's ``DO``) other than ``*``.
    fields: list[SelectedField]
    #: The statement as code (the engine fuses the rules of an event into one function).
    code: StatementCode
    #: The compiled statement: the selected data for one event's `Context` (FOREACH: a
    #: list of them), or None when WHERE does not hold.  Any exception means the SQL
    #: failed on that event.
    evaluate: Callable[[Context], Selected | None]
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

    @property
    def foreach(self) -> bool:
        """A FOREACH statement: `apply` gives a list, one selected data per element."""
        return self.code.many

    def apply(self, columns: Mapping[str, Any]) -> Selected | None:
        """The selected data for one event (FOREACH: a list of them, maybe empty), or
        None when WHERE does not hold.

        Raises `SqlRuntimeError` when evaluation fails (bad argument types, ...)."""
        try:
            return self.evaluate(Context(columns))
        except SqlRuntimeError:
            raise
        except Exception as exc:  # a bug-free function can still hit e.g. OverflowError
            raise SqlRuntimeError(f"{type(exc).__name__}: {exc}") from exc

    def test(self, columns: Mapping[str, Any]) -> Selected | None:
        """`apply`, under the name EMQ X's SQL tester (``test: true``) uses."""
        return self.apply(columns)


def _check_source(token: Token) -> str:
    text = unquote(token)
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


def parse_sql(sql: str) -> RuleSql:
    """Parse and compile a rule statement; `SqlError` says what is wrong and where."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("empty SQL statement")
    try:
        tree = _PARSER.parse(sql)
    except UnexpectedInput as exc:
        raise _syntax_error(sql, exc) from None

    sources_tree = next(c for c in tree.children if isinstance(c, Tree) and c.data == "sources")
    sources = [_check_source(tok) for tok in sources_tree.children if isinstance(tok, Token)]
    compiled = compile_statement(sql, tree)
    return RuleSql(sql, sources, compiled.select_all, compiled.fields, compiled.code,
                   compiled.evaluate, compiled.source, compiled.columns)
