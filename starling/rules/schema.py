"""Params schemas of actions and resource types, in EMQ X's shape
(``{key: {type, required, default, title, description, ...}}``), and the check
of given params against one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import bad_arguments

Schema = Mapping[str, Mapping[str, Any]]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "object": (dict,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
}


def param(type_: str, title: str, description: str, *, required: bool = False,
          **extra: Any) -> dict[str, Any]:
    return {"type": type_, "required": required, "title": title,
            "description": description, **extra}


def check(schema: Schema, given: Any, what: str) -> dict[str, Any]:
    """`given` (an object) checked against `schema`: required keys present, known keys
    of the right type and in their `enum`.  Keys the schema does not name are kept
    (EMQ X's built_in resource takes any config).  Raises `RuleError` (400)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise bad_arguments(f"{what} must be an object")
    for key, spec in schema.items():
        value = given.get(key)
        if value is None:
            if spec.get("required"):
                raise bad_arguments(f"{what}: missing required param '{key}'")
            continue
        types = _TYPES.get(str(spec.get("type")), (object,))
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad_arguments(f"{what}: param '{key}' must be of type {spec.get('type')}")
        enum = spec.get("enum")
        if enum is not None and value not in enum:
            raise bad_arguments(f"{what}: param '{key}' must be one of {', '.join(map(str, enum))}")
    return dict(given)
