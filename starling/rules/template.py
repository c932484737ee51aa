"""`${var}` templates of rule actions (republish topic and payload, web hook bodies).

A placeholder names a key of the data the rule's SQL selected; dots walk
into nested maps (``${payload.x.y}``), and into a value that is a JSON text
(a JSON payload selected whole).  A missing key renders as ``undefined``, as
in EMQ X; maps and lists render as JSON, strings as themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
UNDEFINED = "undefined"


def to_json(value: Any) -> str:
    """JSON text of a selected value; bytes (a binary payload) as text."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if isinstance(value, (str, bytes)) and value[:1] in ("{", b"{"):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and 0 < int(part) <= len(value):
            value = value[int(part) - 1]  # 1-based, as the SQL's nth()
        else:
            return None
    return value


def text(value: Any) -> str:
    if value is None:
        return UNDEFINED
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return to_json(value)


def has_placeholders(template: str) -> bool:
    return PLACEHOLDER.search(template) is not None


def render(template: str, data: Mapping[str, Any]) -> str:
    """Fill every ``${path}`` of a string template."""
    if "${" not in template:
        return template
    return PLACEHOLDER.sub(lambda m: text(lookup(data, m.group(1).strip())), template)


def render_value(template: Any, data: Mapping[str, Any]) -> Any:
    """Fill the string leaves of an object template (web_hook:event_action).  A leaf
    that is exactly one placeholder keeps the value's type (a number stays a number)."""
    if isinstance(template, str):
        match = PLACEHOLDER.fullmatch(template.strip())
        if match is not None:
            value = lookup(data, match.group(1).strip())
            return UNDEFINED if value is None else (
                text(value) if isinstance(value, (bytes, bytearray)) else value)
        return render(template, data)
    if isinstance(template, Mapping):
        return {str(k): render_value(v, data) for k, v in template.items()}
    if isinstance(template, list):
        return [render_value(v, data) for v in template]
    return template
