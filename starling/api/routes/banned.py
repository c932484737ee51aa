"""/banned: clients refused at CONNECT (facts §5.12).

EMQ X v3's shapes: a list item is ``{who, as, reason, desc, by, until}`` with
the string ``"undefined"`` for a field that was not given (so ``"until":
"undefined"`` for a ban that never expires, as EMQ X renders it); creating
answers with the parameters as sent; deleting always answers ``{"code":0}``.
"""

from __future__ import annotations

from typing import Any

from starling.broker import BAN_KINDS, Ban
from starling.mgmt import fields

from ..errors import ApiError, Code, bad_type, missing
from ..request import ApiRequest
from ..routing import RouteTable

#: EMQ X's message, word for word (facts §1.6).  A missing `who` or `as` is named
#: alone (EMQ X names both whichever is missing).
BAD_AS = "value of 'as' must be one of: [{}]".format(", ".join(f"'{k}'" for k in BAN_KINDS))

BANNED_BODY = {
    "who": ("string", True, "the client id, user name or IP address banned"),
    "as": ("string", True, "what `who` is: client_id, username or ip_address"),
    "reason": ("string", False, "why"),
    "desc": ("string", False, "description"),
    "by": ("string", False, "who made the ban"),
    "until": ("integer", False, "end of the ban, epoch seconds; absent = never"),
}


def _kind(req: ApiRequest) -> str:
    kind = req.arg("as")
    if kind not in BAN_KINDS:
        raise ApiError(Code.PARAMETER_TYPE_ERROR, BAD_AS, 400)
    return str(kind)


def _text(req: ApiRequest, name: str) -> str | None:
    value = req.arg(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_type(f"'{name}' must be a string")
    return value


def _until(req: ApiRequest) -> float | None:
    value = req.arg("until")
    if value is None or value in ("", fields.UNDEFINED):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad_type("'until' must be a number of seconds since the epoch")
    try:
        until = float(value)
    except (ValueError, OverflowError):
        raise bad_type("'until' must be a number of seconds since the epoch") from None
    if until != until or until in (float("inf"), float("-inf")):  # NaN, infinities
        raise bad_type("'until' must be a number of seconds since the epoch")
    return until


def _params(req: ApiRequest) -> dict[str, Any]:
    """The request's parameters as EMQ X echoes them: query string, then body."""
    params: dict[str, Any] = dict(req.query)
    if isinstance(req.body, dict):
        for key, value in req.body.items():
            params.setdefault(key, value)
    return params


def register(table: RouteTable) -> None:
    @table.route("list_banned", "GET", "/banned/", "List banned", paginated=True)
    async def list_banned(req: ApiRequest) -> Any:
        return await req.ctx.mgmt.banned(req.page_spec())

    @table.route("create_banned", "POST", "/banned/", "Create banned", body=BANNED_BODY)
    async def create_banned(req: ApiRequest) -> Any:
        who = req.arg("who")
        absent = [name for name in ("who", "as") if req.arg(name) in (None, "")]
        if absent:
            raise missing(*absent)
        kind = _kind(req)
        if isinstance(who, bool) or not isinstance(who, (str, int)):
            raise bad_type("'who' must be a string")
        ban = Ban(kind, str(who), _text(req, "reason"), _text(req, "desc"), _text(req, "by"),
                  _until(req))
        req.ctx.broker.banned.add(ban)
        return _params(req)

    @table.route("delete_banned", "DELETE", "/banned/:who", "Delete banned")
    async def delete_banned(req: ApiRequest) -> Any:
        if req.arg("as") in (None, ""):
            raise missing("as")
        req.ctx.broker.banned.delete(_kind(req), req.params["who"])
        return None
