"""One API call as handlers see it: path params, query, body, and helpers
that turn bad input into the right `ApiError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starling.mgmt import PageSpec

from .context import ApiContext
from .errors import ApiError, Code, bad_type, missing

#: The page size of "every row".
ALL_ROWS = 1 << 62


@dataclass(slots=True)
class ApiRequest:
    ctx: ApiContext
    method: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any  # parsed JSON (usually a dict) or None
    peer: str = ""  #: the HTTP client's IP address (for logs and login throttling)

    def arg(self, name: str, default: Any = None) -> Any:
        """A parameter from the query string, else the JSON body (EMQ X merges both;
        the query string wins)."""
        if name in self.query:
            return self.query[name]
        if isinstance(self.body, dict) and name in self.body:
            return self.body[name]
        return default

    def require(self, *names: str) -> list[Any]:
        values = [self.arg(n) for n in names]
        absent = [n for n, v in zip(names, values, strict=True) if v is None or v == ""]
        if absent:
            raise missing(*absent)
        return values

    def str_arg(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value = self.arg(name)
        if value is None:
            if required:
                raise missing(name)
            return default
        if not isinstance(value, str):
            raise bad_type(f"'{name}' must be a string")
        return value

    def int_arg(self, name: str, default: int) -> int:
        value = self.arg(name)
        if value is None or value == "":
            return default
        return to_int(name, value)

    def bool_arg(self, name: str, default: bool) -> bool:
        value = self.arg(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad_type(f"'{name}' must be true or false")

    def page_spec(self) -> PageSpec:
        """EMQ X pagination: `_page` from 1 (below 1 means 1), `_limit` (default
        `management.max_row_limit`, at least 1)."""
        page = self.int_arg("_page", 1)
        limit = self.int_arg("_limit", self.ctx.max_row_limit)
        if limit < 1:
            raise ApiError(Code.PARAMETER_TYPE_ERROR, "'_limit' must be at least 1", 400)
        return PageSpec(max(page, 1), limit)

    @staticmethod
    def everything() -> PageSpec:
        """One page holding every row (for the lookups, which are not paginated)."""
        return PageSpec(1, ALL_ROWS)

    @property
    def node(self) -> str | None:
        """The `:node` of a `/nodes/:node/...` route (checked to exist), else None."""
        return self.params.get("node")


def with_query(method: str, query: dict[str, str], body: Any) -> Any:
    """minirest hands a POST or PUT handler the query-string pairs and the JSON body's
    as one parameter list, so a body key may come in the query string instead
    (``POST /rules?test=true`` is EMQ X's SQL test).  A JSON object body (or none) gets
    the query's keys it lacks; where both carry a key the body's value stays.  Other
    bodies (a batch's array) are left alone."""
    if not query or method not in ("POST", "PUT"):
        return body
    if body is None:
        return dict(query)
    if isinstance(body, dict):
        return {**query, **body}
    return body


def to_int(name: str, value: Any) -> int:
    """An integer parameter: an int, an integral float (`1.0`) or a decimal string;
    anything else (bools, `1.5`, `1e400` = inf, NaN, "x") is a 108."""
    if isinstance(value, bool):
        raise bad_type(f"'{name}' must be an integer")
    if isinstance(value, float):
        if not value.is_integer():  # also false for inf and nan
            raise bad_type(f"'{name}' must be an integer")
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_type(f"'{name}' must be an integer") from None
