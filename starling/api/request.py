"""One API call as handlers see it: path params, query, body, and helpers
that turn bad input into the right `ApiError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .context import ApiContext
from .errors import ApiError, Code, bad_type, missing, not_found


@dataclass(slots=True)
class ApiRequest:
    ctx: ApiContext
    method: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any  # parsed JSON (usually a dict) or None

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

    def check_node(self) -> None:
        """`/nodes/:node/...`: only this node exists until clustering lands."""
        node = self.params.get("node")
        if node is not None and node != self.ctx.node_name:
            raise not_found(f"node {node} not found", Code.NOT_FOUND)


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


class Page:
    """A paginated answer: `{"code":0,"data":[...],"meta":{page,limit,count}}`."""

    __slots__ = ("count", "items", "limit", "page")

    def __init__(self, items: list[Any], page: int, limit: int, count: int) -> None:
        self.items = items
        self.page = page
        self.limit = limit
        self.count = count


def paginate(req: ApiRequest, rows: list[Any]) -> Page:
    """EMQ X pagination: `_page` from 1, `_limit` (default 10000), count = total."""
    page = req.int_arg("_page", 1)
    limit = req.int_arg("_limit", req.ctx.max_row_limit)
    if limit < 1:
        raise ApiError(Code.PARAMETER_TYPE_ERROR, "'_limit' must be at least 1", 400)
    page = max(page, 1)
    start = (page - 1) * limit
    return Page(rows[start:start + limit], page, limit, len(rows))
