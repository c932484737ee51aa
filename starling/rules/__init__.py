"""The rule engine: SQL rules over broker events (EMQ X v3's emqx_rule_engine).

`parse_sql` turns a rule's ``rawsql`` into a `RuleSql` that says which events it listens
to and computes, per event, the data its actions receive.
"""

from __future__ import annotations

from .actions import ActionSpec, actions_for, actions_of_type, find_action
from .engine import BoundAction, Rule, RuleEngine, RuleMetrics
from .errors import RuleError
from .events import EVENTS as EVENT_INFO
from .events import EventInfo, event_name
from .functions import FUNCTIONS, Context, Function, SqlRuntimeError
from .plugin import PLUGIN, RuleEnginePlugin
from .resources import RESOURCE_TYPES, Resource, ResourceType
from .sql import CLIENT_EVENTS, EVENTS, MESSAGE_EVENTS, RuleSql, SelectedField, SqlError, parse_sql

__all__ = [
    "CLIENT_EVENTS",
    "EVENTS",
    "EVENT_INFO",
    "FUNCTIONS",
    "MESSAGE_EVENTS",
    "PLUGIN",
    "RESOURCE_TYPES",
    "ActionSpec",
    "BoundAction",
    "Context",
    "EventInfo",
    "Function",
    "Resource",
    "ResourceType",
    "Rule",
    "RuleEngine",
    "RuleEnginePlugin",
    "RuleError",
    "RuleMetrics",
    "RuleSql",
    "SelectedField",
    "SqlError",
    "SqlRuntimeError",
    "actions_for",
    "actions_of_type",
    "event_name",
    "find_action",
    "parse_sql",
]
