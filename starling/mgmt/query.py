"""Named queries: what one node can be asked, from JSON parameters to a JSON result.

Every view and action of the facade is a `Query`: a name (``connections.slice``),
a `Params` dataclass that converts from and to JSON, and a coroutine run on the
node that answers.  The facade runs a query directly on this node and through
`RemoteNodes.call` on another; the node that receives such a call runs
`LocalNode.execute(name, params)`.  Results are JSON values (EMQ X-shaped rows
built by `fields`), so they cross the wire as they are.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

#: A JSON value: what parameters and results are made of.
JSON = Any


class QueryError(Exception):
    """A query that ran and refused (no such plugin, already started, bad parameters):
    the same answer whichever node asked.  `reason` is one word the API maps to its
    code and HTTP status; `detail` says more.  Crosses the wire as `to_json()`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueryError:
        return cls(str(data.get("reason", "unknown")), str(data.get("detail", "")))


P = TypeVar("P", bound="Params")


class Params:
    """Base of the parameter dataclasses: JSON in and out, with the field types checked
    (a remote caller's parameters are input like any other)."""

    __slots__ = ()

    def to_json(self) -> dict[str, JSON]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls: type[P], data: Mapping[str, Any]) -> P:
        if not isinstance(data, Mapping):
            raise QueryError("bad_params", f"{cls.__name__}: parameters must be an object")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise QueryError("bad_params", f"{cls.__name__}: unknown {sorted(unknown)}")
        for name, value in data.items():
            if not _fits(value, hints[name]):
                raise QueryError("bad_params", f"{cls.__name__}.{name}: {value!r}")
        try:
            return cls(**data)
        except TypeError as exc:  # a required field missing
            raise QueryError("bad_params", f"{cls.__name__}: {exc}") from None


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint) or hint
    if origin in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, origin)


#: A query's coroutine: (the node it runs on, its parameters) → its result.  The
#: node is a `LocalNode` (`local.py`, which runs the queries: typed Any here so
#: this registry does not depend on it).
Runner = Callable[[Any, P], Awaitable[JSON]]


@dataclass(frozen=True, slots=True)
class Query(Generic[P]):
    name: str
    params: type[P]
    run: Runner[P]

    async def execute(self, node: Any, params: Mapping[str, Any]) -> JSON:
        return await self.run(node, self.params.from_json(params))


#: Every query, by name: what `LocalNode.execute` can run.
QUERIES: dict[str, Query[Any]] = {}


def query(name: str, params: type[P]) -> Callable[[Runner[P]], Query[P]]:
    """Register the decorated coroutine as query `name` taking `params`."""
    def register(run: Runner[P]) -> Query[P]:
        if name in QUERIES:
            raise ValueError(f"query {name} registered twice")
        made = Query(name, params, run)
        QUERIES[name] = made
        return made
    return register


@dataclass(frozen=True, slots=True)
class NoParams(Params):
    pass
