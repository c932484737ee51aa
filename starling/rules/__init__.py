"""The rule engine: SQL rules over broker events (EMQ X v3's emqx_rule_engine).

`parse_sql` turns a rule's ``rawsql`` into a `RuleSql` that says which events it listens
to and computes, per event, the data its actions receive.
"""

from __future__ import annotations

from .functions import FUNCTIONS, Context, Function, SqlRuntimeError
from .sql import CLIENT_EVENTS, EVENTS, MESSAGE_EVENTS, RuleSql, SelectedField, SqlError, parse_sql

__all__ = [
    "CLIENT_EVENTS",
    "EVENTS",
    "FUNCTIONS",
    "MESSAGE_EVENTS",
    "Context",
    "Function",
    "RuleSql",
    "SelectedField",
    "SqlError",
    "SqlRuntimeError",
    "parse_sql",
]
