"""All the rules of one event in one generated Python function.

Ten rules on every message were ten calls into ten statement functions, each
reading the same columns again, then a Python loop around their metrics and
actions.  `compile_runner` puts the code of every rule of a (event, topic)
group into one function instead: the columns the rules read are read once,
at the top; each rule's WHERE, SELECT, counters and action calls follow in
order, unrolled.  It does exactly what the loop did, rule by rule: an
exception in one rule's SQL counts `failed` for that rule only, an action
that raises counts a failure of that action only.  A FOREACH rule runs its
actions once per element it keeps (and counts `nomatch` when it keeps none).

Only code made by `sql.py` from a parsed statement and names bound here go
into the source; every rule, counter and action is a global of the function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .sql import RuleSql
from .sqlcode import compile_function

#: Runs the rules on one event's columns.
Runner = Callable[[Mapping[str, Any]], None]


class RunnableAction(Protocol):
    """The engine's `BoundAction` as the runner uses it."""

    @property
    def name(self) -> str: ...
    @property
    def run(self) -> Callable[[Any, Mapping[str, Any], Callable[[bool], None]],
                              bool | None]: ...
    @property
    def done(self) -> Callable[[bool], None]: ...


class RunnableRule(Protocol):
    """The engine's `Rule` as the runner uses it (`metrics` has passed, nomatch, failed)."""

    @property
    def sql(self) -> RuleSql: ...
    @property
    def metrics(self) -> Any: ...
    @property
    def actions(self) -> Sequence[RunnableAction]: ...

    def log_failure(self, what: str, exc: Exception) -> None: ...


def runner_for(rules: Sequence[RunnableRule]) -> Runner:
    """`compile_runner`, or, should Python refuse the fused function (its limits, for
    hundreds of rules), one runner per rule called in turn."""
    try:
        return compile_runner(rules)[0]
    except (SyntaxError, RecursionError, MemoryError):
        each = [compile_runner([rule])[0] for rule in rules]

        def run_each(columns: Mapping[str, Any]) -> None:
            for run in each:
                run(columns)

        return run_each


def compile_runner(rules: Sequence[RunnableRule]) -> tuple[Runner, str]:
    """One function running `rules` in order on an event's columns; and its source."""
    names: dict[str, Any] = {}
    body: list[str] = []
    for i, rule in enumerate(rules):
        r, m = f"_R{i}", f"_M{i}"
        names[r], names[m] = rule, rule.metrics
        code = rule.sql.code
        body += ["try:", *(f"    {line}" for line in code.prelude)]
        if code.where is None:
            body += [f"    {line}" for line in code.select]
        else:
            body += [f"    if {code.where} is not True:", "        _sel = None",
                     "    else:", *(f"        {line}" for line in code.select)]
        body += ["except Exception as _e:",
                 f"    {m}.failed += 1",
                 f"    {r}.log_failure('SQL failed', _e)",
                 "else:",
                 # FOREACH: WHERE held but no element was kept is no match either
                 "    if not _sel:" if code.many else "    if _sel is None:",
                 f"        {m}.nomatch += 1",
                 "    else:",
                 f"        {m}.passed += 1"]
        # FOREACH runs the actions once per element (_one), SELECT once (_sel)
        data, pad = ("_one", "    ") if code.many else ("_sel", "")
        if code.many and rule.actions:
            body.append("        for _one in _sel:")
        for j, action in enumerate(rule.actions):
            a = f"_A{i}_{j}"
            names[a], names[a + "run"], names[a + "done"] = action, action.run, action.done
            names[a + "what"] = f"action {action.name} failed"
            body += [pad + line for line in (
                "        try:",
                f"            _d = {a}run({data}, columns, {a}done)",
                "        except Exception as _e:",
                f"            {a}.failed += 1",
                f"            {r}.log_failure({a}what, _e)",
                "        else:",
                "            if _d is True:",
                f"                {a}.success += 1",
                "            elif _d is False:",
                f"                {a}.failed += 1")]
    return compile_function("_run(columns)", body, [rule.sql.code for rule in rules], names,
                            "_run")
