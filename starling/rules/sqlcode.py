"""Python source from a rule statement's syntax tree (the lark tree of sql.py).

Every expression becomes a Python expression over one event's `Context`; a statement
becomes a prelude (the fields WHERE reads), WHERE, and the statements that build the
output (`StatementCode`), which `compile_function` puts after a prologue reading each
column once: the statement's own function (`RuleSql.evaluate`) and the engine's fused
function of all the rules of an event (runner.py) are made this way.  Only constructs
the grammar admits reach here, and every constant or function is passed by a generated
name, never spliced in as text.

Fields are compiled left to right with the scope of the aliases defined so far, as
EMQ X evaluates them (each alias is put into the data the later fields and WHERE read).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree

from starling.mqtt import is_valid_topic_filter

from .functions import FUNCTIONS, Context, Key, is_number, nested_get
from .sqlvalues import (
    ARITH,
    COMPARE,
    defined,
    eq,
    filter_matcher,
    member,
    negate,
    nested_json,
    overlay,
    put,
    same,
    topic_match,
)

#: What a statement selects for one event: the selected data, or for FOREACH a list of
#: them (one per element of the list).
Selected = dict[str, Any] | list[Any]


class SqlError(Exception):
    """A statement that cannot become a rule; the text says what and where."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.reason = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class SelectedField:
    """One SELECT field: the output key path and the expression's source text."""

    keys: tuple[str, ...]
    expression: str



# -- literals and paths ----------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def unquote(token: Token) -> str:
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
        return unquote(token)
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


def _source_text(sql: str, node: Tree[Token] | Token) -> str:
    if isinstance(node, Token):
        return str(node)
    meta = node.meta
    if getattr(meta, "empty", True):
        return ""
    return sql[meta.start_pos:meta.end_pos]


# -- expressions ------------------------------------------------------------------------

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
        #: Groups of prologue locals the code tests for null, each as one flag that the
        #: prologue sets (rules fused in one function check the same columns).
        self.nulls: set[tuple[str, ...]] = set()
        #: Prologue locals computed from columns (`CLIENT_ID`).
        self.derived: set[str] = set()

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

    def client_id(self) -> str:
        """clientid(): the ``clientid`` column, else ``client_id`` (prologue local)."""
        self.reads.update(("clientid", "client_id"))
        self.derived.add(CLIENT_ID)
        return CLIENT_ID

    def any_null(self, names: list[str]) -> str:
        """The test that one of `names` (identifiers) is null.  The prologue's locals
        (columns, clientid()) are tested there, once, as one flag."""
        hoisted = tuple(sorted({n for n in names if n.startswith("_c_") or n == CLIENT_ID}))
        tests = [f"{n} is None" for n in names if n not in hoisted]
        if hoisted:
            self.nulls.add(hoisted)
            tests.insert(0, null_flag(hoisted))
        return " or ".join(tests)

    def structured(self, column: str) -> str:
        """The column as an object (`Context.structured`), fetched on first use only:
        a JSON payload is not decoded for an event no expression needs it for."""
        self.structs.add(column)
        local = f"_j_{column}"
        return f"({local} if {local} is not _UNSET else ({local} := _s({column!r})))"


def null_flag(names: tuple[str, ...]) -> str:
    """The prologue's flag: one of these prologue locals is null.  Its name spells the
    group unambiguously (``_`` escaped as ``_u``, names joined by ``_s``)."""
    return "_n_s" + "_s".join(n.replace("_", "_u") for n in names)


#: The prologue local of clientid(), and how the prologue sets it.
CLIENT_ID = "_cid"
_CLIENT_ID_CODE = f"{CLIENT_ID} = _c_clientid if _c_clientid is not None else _c_client_id"

#: The globals the generated code calls by these names.
_HELPERS: dict[str, Any] = {
    "_eq": eq, "_member": member, "_nested": nested_get, "_nested_json": nested_json,
    "_neg": negate, "_topic_match": topic_match, "_same": same, "_overlay": overlay,
    "_put": put, "_defined": defined, "_UNSET": _NOCONST, "_Context": Context}

#: Context functions that, without arguments, read one column: inlined as a read (as
#: the functions in `functions.py` do; clientid() reads "clientid" first: `CLIENT_ID`).
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
    #: The names defined so far (SELECT / FOREACH / DO aliases, the FOREACH item) that
    #: the expression sees before the event's columns, in definition order.
    scope: list[_Binding] = field(default_factory=list)
    #: Top-level columns read (shared by the statement's generators).
    columns: set[str] = field(default_factory=set)
    #: The bindings the expressions read (indices into `scope`).
    used: set[int] = field(default_factory=set)

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
        bound = self._bound(keys) if self.scope else None
        return bound if bound is not None else self._column(keys)

    def _column(self, keys: tuple[Key, ...]) -> str:
        """A path into the event's columns."""
        unit = self.unit
        name = str(keys[0])
        self.columns.add(name)
        if len(keys) == 1:
            return unit.read(name)
        return self._walk(unit.structured(name), keys[1:])

    def _walk(self, value: str, rest: tuple[Key, ...], nested: str = "_nested") -> str:
        """`rest` walked into the value of the code `value` (with `nested`, the helper
        for values that are not a dict)."""
        unit = self.unit
        if len(rest) == 1 and isinstance(rest[0], str):
            if value.isidentifier():  # a local: read it twice rather than copy it
                t, bound = value, value
            else:
                t = unit.temp()
                bound = f"{t} := {value}"
            return (f"({t}.get({rest[0]!r}) if isinstance({bound}, dict) "
                    f"else {nested}({t}, {unit.const(rest)}))")
        return f"{nested}({value}, {unit.const(rest)})"

    def _bound(self, keys: tuple[Key, ...]) -> str | None:
        """A path that starts with a name defined in `scope` (EMQ X puts each alias into
        the data later fields and WHERE read): the latest definition of a prefix of the
        path, with the later dotted aliases under the path set on it; None when no
        definition concerns the path (it reads a column)."""
        scope = self.scope
        base = None
        for i, binding in enumerate(scope):
            if keys[:len(binding.keys)] == binding.keys:
                base = i
        later = scope[base + 1:] if base is not None else scope
        overlays = [b for b in later
                    if len(b.keys) > len(keys) and b.keys[:len(keys)] == keys]
        if base is None and not overlays:
            return None
        if base is None:
            code = self._column(keys)
        else:
            self.used.add(base)
            binding = scope[base]
            rest = keys[len(binding.keys):]
            # an alias of a whole column may hold JSON text (``payload as p``, ``p.x``)
            code = self._walk(binding.var, rest, "_nested_json") if rest else binding.var
        if overlays:
            puts = []
            for b in overlays:
                self.used.add(scope.index(b))
                puts.append(f"({self.unit.const(b.keys[len(keys):])}, {b.var})")
            code = f"_overlay({code}, {', '.join(puts)})"
        return code

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
            if name == "clientid":
                return self.unit.client_id()
            return self.unit.read(_COLUMN_CALLS[name])
        args = [self.expr(arg) for arg in arg_trees]
        if fn.context:
            self.unit.uses_ctx = True
            args.insert(0, "ctx")
        return f"{self.unit.const(fn.impl, 'f')}({', '.join(args)})"

    # CASE ----------------------------------------------------------------------------

    def _case(self, tree: Tree[Token]) -> str:
        """``CASE WHEN c THEN v ... [ELSE e] END`` takes the first branch whose condition
        is true; ``CASE x WHEN v THEN r ... END`` the first whose value matches x exactly
        (EMQ X's pattern match).  No branch and no ELSE: null (EMQ X's undefined)."""
        parts = [c for c in tree.children if isinstance(c, Tree)]
        subject = None if parts[0].data in ("case_when", "case_else") else parts.pop(0)
        otherwise = "None"
        if parts[-1].data == "case_else":
            otherwise = self.expr(parts.pop().children[1])
        t = self.unit.temp() if subject is not None else ""
        code = otherwise
        for i, branch in reversed(list(enumerate(parts))):
            cond, value = self.expr(branch.children[1]), self.expr(branch.children[3])
            if subject is None:
                test = f"{cond} is True"
            elif i == 0:
                test = f"_same(({t} := {self.expr(subject)}), {cond})"
            else:
                test = f"_same({t}, {cond})"
            code = f"({value} if {test} else {code})"
        return code

    # operators -----------------------------------------------------------------------

    def _binop(self, tree: Tree[Token]) -> str:
        left, op_token, right = tree.children
        fn = self.unit.const(ARITH[str(op_token).lower()], "f")
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
            return f"{unit.const(filter_matcher(const), 'f')}({lhs})"
        if const is _NOCONST:
            return f"{unit.const(COMPARE[op], 'f')}({lhs}, {self.expr(right)})"
        k = self._const(const)
        # A column read is a local already; anything else is evaluated once, into a
        # temporary.
        t, bound = (lhs, lhs) if lhs.startswith("_c_") else (t := unit.temp(), f"{t} := {lhs}")
        kind = type(const)
        # Fast paths: operands of the same plain type compare as Python does (what
        # `eq` / `ordered` do too); anything else takes the general function.
        if op in _ORDERED_OPS and kind in (int, float, str):
            check = (f"type({bound}) is str" if kind is str else
                     f"type({bound}) is int or type({t}) is float")
            return (f"({t} {_ORDERED_OPS[op]} {k} if {check} "
                    f"else {unit.const(COMPARE[op], 'f')}({t}, {k}))")
        if op in ("=", "!=", "<>") and kind in (int, float, str, bool):
            py, neg = ("==", "") if op == "=" else ("!=", "not ")
            return (f"({t} {py} {k} if type({bound}) is {kind.__name__} "
                    f"else {neg}_eq({t}, {k}))")
        return f"{unit.const(COMPARE[op], 'f')}({lhs}, {k})"

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




# -- statements -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Binding:
    """A name that an alias (or FOREACH's item) defines, and the local holding its value:
    EMQ X evaluates fields left to right and puts each one's value into the data the
    later fields, WHERE (and for FOREACH, INCASE and DO) read."""

    keys: tuple[str, ...]
    var: str


@dataclass
class _Field:
    """One compiled field of SELECT, FOREACH or DO."""

    keys: tuple[str, ...]
    code: str
    #: The local its value goes into (an alias's, or one to check for null), or None.
    var: str | None
    #: The local to test for null before output (None: it never is).
    check: str | None
    #: The bindings its expression reads, and the one it defines (indices into scope).
    uses: set[int]
    binding: int | None


#: Expressions that never give null (they give a value or raise).
_NEVER_NULL = frozenset({"number", "string", "true", "false", "binop", "neg", "compare",
                         "in_op", "not_in_op", "and_op", "or_op", "not_op"})


def _nullable(tree: Tree[Token] | Token) -> bool:
    value = _literal(tree)
    if value is not _NOCONST:
        return value is None
    return not (isinstance(tree, Tree) and tree.data in _NEVER_NULL)


def _output_keys(sql: str, expr: Tree[Token], alias: Tree[Token] | None,
                 ) -> tuple[tuple[str, ...], bool]:
    """The output key path of a field, and whether it is an alias."""
    if alias is not None:
        first = alias.children[0]
        if isinstance(first, Token) and first.type == "STRING":
            return (unquote(first),), True
        return tuple(str(tok) for tok in alias.children), True
    if expr.data == "path":
        keys = _path_keys(expr)
        if all(isinstance(k, str) for k in keys):
            return tuple(str(k) for k in keys), False
    return (_source_text(sql, expr),), False


@dataclass
class _Statement:
    """What the fields, WHERE, INCASE of one statement compile into."""

    sql: str
    unit: _Unit = field(default_factory=_Unit)
    #: Top-level columns read (the v3.2 `Unknown Column` check).
    columns: set[str] = field(default_factory=set)
    #: Names defined so far, in order.
    scope: list[_Binding] = field(default_factory=list)

    def gen(self, scope: list[_Binding] | None = None) -> _CodeGen:
        return _CodeGen(self.sql, self.unit, scope=list(self.scope if scope is None else scope),
                        columns=self.columns)

    def fields(self, tree: Tree[Token], *, every_var: bool = False,
               ) -> tuple[bool, list[_Field], list[SelectedField]]:
        """Compile a field list left to right, each alias defining a name the later
        fields see; returns (has `*`, the fields, their description)."""
        star = False
        compiled: list[_Field] = []
        described: list[SelectedField] = []
        for fld in tree.children:
            assert isinstance(fld, Tree)
            if fld.data == "star":
                star = True
                continue
            expr = fld.children[0]
            assert isinstance(expr, Tree)
            alias = next((c for c in fld.children[1:] if isinstance(c, Tree)), None)
            keys, aliased = _output_keys(self.sql, expr, alias)
            gen = self.gen()
            code = gen.expr(expr)
            var = check = None
            binding = None
            if code.isidentifier():  # a local already (a column, clientid(), an alias)
                var = code
            elif aliased or every_var or _nullable(expr):
                var = self.unit.temp()
            if _nullable(expr):
                check = var if var is not None else code
            if aliased:
                binding = len(self.scope)
                assert var is not None
                self.scope.append(_Binding(keys, var))
            compiled.append(_Field(keys, code, var, check, gen.used, binding))
            described.append(SelectedField(keys, _source_text(self.sql, expr)))
        return star, compiled, described

    def condition(self, tree: Tree[Token] | None, scope: list[_Binding] | None = None,
                  ) -> tuple[str | None, set[int]]:
        """WHERE or INCASE: the code and the bindings it reads."""
        if tree is None:
            return None, set()
        gen = self.gen(scope)
        return gen.expr(tree), gen.used


def _needed(fields: list[_Field], used: set[int]) -> set[int]:
    """The bindings `used` reads, with those they read in turn."""
    by_binding = {f.binding: f for f in fields if f.binding is not None}
    needed: set[int] = set()
    todo = list(used)
    while todo:
        index = todo.pop()
        if index not in needed and index in by_binding:
            needed.add(index)
            todo += by_binding[index].uses
    return needed


def _output_code(unit: _Unit, target: str, star: list[str] | None, fields: list[_Field],
                 computed: set[str]) -> list[str]:
    """The lines that set `target` to the selected data.  `star`: the lines that make
    its starting dict (``*``); `computed`: the locals already set (the prelude).  A
    dict display when the keys are flat and distinct, with a null check that drops the
    null fields; else a dict filled key path by key path (`_put` skips nulls)."""
    keys = [f.keys for f in fields]
    if star is None and all(len(k) == 1 for k in keys) and len(set(keys)) == len(keys):
        items = []
        for f in fields:
            value = f.code
            if f.var is not None and f.var != f.code:
                value = f.var if f.var in computed else f"({f.var} := {f.code})"
            items.append(f"{f.keys[0]!r}: {value}")
        lines = [f"{target} = {{{', '.join(items)}}}"]
        checks = [f.check for f in fields if f.check is not None]
        if checks:
            lines += [f"if {unit.any_null(checks)}:",
                      f"    {target} = _defined({target})"]
        return lines
    lines = list(star) if star is not None else [f"{target} = {{}}"]
    for f in fields:
        value = f.code
        if f.var is not None and f.var != f.code:
            if f.var not in computed:
                lines.append(f"{f.var} = {f.code}")
            value = f.var
        lines.append(f"_put({target}, {f.keys!r}, {value})")
    return lines


@dataclass(frozen=True)
class StatementCode:
    """A statement as Python code over one event's `Context` (``ctx``), to be put in a
    function by `compile_function`: `prelude` (statements computing what WHERE reads),
    `where` (an expression, None without WHERE) and `select` (statements setting
    ``_sel``: a dict, or with `many` a list of them, one per FOREACH item), reading the
    prologue's locals."""

    prelude: list[str]
    where: str | None
    select: list[str]
    #: FOREACH: ``_sel`` is a list, and the actions run once per element.
    many: bool
    #: The globals the code names (constants and functions, prefixed per statement).
    namespace: dict[str, Any]
    #: Columns read whole (locals ``_c_<name>``) and as objects (``_j_<name>``).
    reads: frozenset[str]
    structs: frozenset[str]
    #: Whether it needs ``ctx`` (a function reading the event gets it).
    uses_ctx: bool
    #: Prologue locals computed from columns (`CLIENT_ID`), and the groups of
    #: prologue locals whose null flag it reads (`null_flag`).
    derived: frozenset[str] = frozenset()
    nulls: frozenset[tuple[str, ...]] = frozenset()


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
    if any(CLIENT_ID in c.derived for c in codes):
        prologue.append(_CLIENT_ID_CODE)
    prologue += [f"{null_flag(group)} = {' or '.join(f'{n} is None' for n in group)}"
                 for group in sorted(set().union(*(c.nulls for c in codes)))]
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


def _function(code: StatementCode) -> tuple[Callable[[Context], Selected | None], str]:
    """The statement's own function (`RuleSql.evaluate`).  WHERE runs first (after
    what it reads); SELECT only for events that pass."""
    body = list(code.prelude)
    if code.where is not None:
        body += [f"if {code.where} is not True:", "    return None"]
    body += [*code.select, "return _sel"]
    return compile_function("_rule(ctx)", body, [code], {}, "_rule")


def _compile_select(st: _Statement, head: Tree[Token], where_tree: Tree[Token] | None,
                    ) -> tuple[list[str], str | None, list[str], bool, list[SelectedField]]:
    """``SELECT``: the fields WHERE reads (through aliases) are computed first, WHERE
    runs, then the output is built (reusing them)."""
    fields_tree = head.children[1]
    assert isinstance(fields_tree, Tree)
    star, fields, described = st.fields(fields_tree)
    where, used = st.condition(where_tree)
    needed = _needed(fields, used)
    prelude = [f"{f.var} = {f.code}" for f in fields
               if f.binding in needed and f.var is not None and f.var != f.code]
    computed = {f.var for f in fields if f.binding in needed and f.var is not None}
    select = _output_code(st.unit, "_sel", ["_sel = dict(columns)"] if star else None, fields,
                          computed)
    return prelude, where, select, star, described


def _compile_foreach(st: _Statement, head: Tree[Token], where_tree: Tree[Token] | None,
                     ) -> tuple[list[str], str | None, list[str], bool, list[SelectedField]]:
    """``FOREACH f1 [as a1], ..., list [as item] [DO fields] [INCASE cond]``: the FOREACH
    expressions are evaluated in order (each alias visible to the next and to WHERE);
    the last one is the list.  Per element (named by its alias, else ``item``), INCASE
    filters and DO selects (without DO: the element itself), as EMQ X v3.2.5+."""
    fields_tree = head.children[1]
    assert isinstance(fields_tree, Tree)
    for fld in fields_tree.children:
        if isinstance(fld, Tree) and fld.data == "star":
            line, column = _position(fld)
            raise SqlError("FOREACH takes expressions, the last one the list; not *",
                           line, column)
    _, fields, _ = st.fields(fields_tree, every_var=True)
    last = fields[-1]
    if last.binding is not None and len(last.keys) != 1:
        raise SqlError(f"the FOREACH list needs a plain name, not {'.'.join(last.keys)!r}")
    name = last.keys[0] if last.binding is not None else "item"
    where, _ = st.condition(where_tree)
    prelude = [f"{f.var} = {f.code}" for f in fields if f.var != f.code]
    do_tree = next((c for c in head.children[2:] if isinstance(c, Tree)
                    and c.data == "do_clause"), None)
    incase_tree = next((c for c in head.children[2:] if isinstance(c, Tree)
                        and c.data == "incase_clause"), None)
    unit = st.unit
    item, one = unit.temp(), unit.temp()
    st.scope.append(_Binding((name,), item))
    per_item = list(st.scope)
    incase_expr = incase_tree.children[1] if incase_tree is not None else None
    assert incase_expr is None or isinstance(incase_expr, Tree)
    incase, _ = st.condition(incase_expr)
    select = ["_sel = []",
              f"for {item} in ({last.var} if type({last.var}) is list else ()):"]
    body: list[str] = []
    if incase is not None:
        body += [f"if {incase} is not True:", "    continue"]
    star, described = False, list[SelectedField]()
    if do_tree is None:
        body.append(f"_sel.append({item})")
    else:
        do_fields_tree = do_tree.children[1]
        assert isinstance(do_fields_tree, Tree)
        star, do_fields, described = st.fields(do_fields_tree)
        base = None
        if star:
            base = [f"{one} = dict(columns)"] + [
                f"_put({one}, {b.keys!r}, {b.var})" for b in per_item]
        body += _output_code(unit, one, base, do_fields, set())
        body.append(f"_sel.append({one})")
    select += [f"    {line}" for line in body]
    return prelude, where, select, star, described


@dataclass(frozen=True)
class CompiledStatement:
    """What `RuleSql` is made of."""

    code: StatementCode
    #: The selected data for one event's `Context`, or None when WHERE does not hold.
    evaluate: Callable[[Context], Selected | None]
    source: str
    #: ``*`` among the output fields, and the other output fields.
    select_all: bool
    fields: list[SelectedField]
    #: Top-level columns read (aliases excluded).
    columns: frozenset[str]


def compile_statement(sql: str, tree: Tree[Token]) -> CompiledStatement:
    """The statement's code and function, from its parse tree (`statement`)."""
    head = tree.children[0]
    assert isinstance(head, Tree)
    where_tree = next((c for c in tree.children if isinstance(c, Tree) and c.data == "where"),
                      None)
    where_expr = where_tree.children[1] if where_tree is not None else None
    assert where_expr is None or isinstance(where_expr, Tree)
    st = _Statement(sql)
    many = head.data == "foreach_head"
    try:
        compile_head = _compile_foreach if many else _compile_select
        prelude, where, select, star, described = compile_head(st, head, where_expr)
        unit = st.unit
        code = StatementCode(prelude, where, select, many, unit.ns, frozenset(unit.reads),
                             frozenset(unit.structs), unit.uses_ctx, frozenset(unit.derived),
                             frozenset(unit.nulls))
        evaluate, source = _function(code)
    except (RecursionError, MemoryError, SyntaxError):
        # Python's own limits (recursion, ~200 nested parentheses in source)
        raise SqlError("expression nested too deeply") from None
    return CompiledStatement(code, evaluate, source, star, described, frozenset(st.columns))
