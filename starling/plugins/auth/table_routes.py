"""The REST routes of emqx_auth_clientid and emqx_auth_username (one shape,
two tables): list, lookup, add, update, delete (facts §10, docs/auth.md).

=========================  ==================================================
call                       answer
=========================  ==================================================
GET /auth_<f>              ``{"code":0,"data":[keys]}`` (sorted)
GET /auth_<f>/:<f>         ``{"code":0,"data":{"<f>":K,"password":HASH}}``,
                           the stored hash without its salt; unknown key →
                           404 ``{"code":404,"message":"<f> not found"}``
POST /auth_<f>             body ``<f>``, ``password`` (non-empty strings) →
                           ``{"code":0}``; absent/empty → 400 code 107; not
                           a string → 400 code 108; the key exists → 409
                           ``{"code":102,"message":"exitsted"}`` (clientid)
                           / ``"existed"`` (username), EMQ X's words
PUT /auth_<f>/:<f>         body ``password`` → ``{"code":0}``; unknown key →
                           404 ``{"code":102,"message":"noexitsted"}`` /
                           ``"noexisted"``
DELETE /auth_<f>/:<f>      ``{"code":0}``, also for an unknown key
any, plugin not loaded     404 ``{"code":404,"message":"Not Found: plugin
                           emqx_auth_<...> is not loaded"}`` (app.py)
=========================  ==================================================
"""

from __future__ import annotations

from typing import Any

from starling.api import (
    ApiError,
    ApiRequest,
    Code,
    RouteTable,
    bad_type,
    not_found,
    plugin_registry,
)

from .clientid import CLIENTID_SPEC
from .table import TableAuthPlugin, TableSpec
from .username import USERNAME_SPEC


def _plugin(req: ApiRequest, spec: TableSpec) -> TableAuthPlugin:
    instance = plugin_registry(req).get(spec.plugin).instance
    if not isinstance(instance, TableAuthPlugin):
        raise not_found(f"Not Found: plugin {spec.plugin} is not loaded")
    return instance


def _strings(req: ApiRequest, *names: str) -> list[str]:
    """Required non-empty string parameters: 107 if absent or empty, 108 if not strings."""
    values = req.require(*names)
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, str):
            raise bad_type(f"'{name}' must be a string")
    return values


def register_auth_table(table: RouteTable, spec: TableSpec) -> None:
    f = spec.field
    base = f"/auth_{f}"
    item = f"{base}/:{f}"
    body = {f: ("string", True, f"the {f}"), "password": ("string", True, "its password")}

    @table.route(f"list_{f}", "GET", base, f"List available {f} in the cluster",
                 plugin=spec.plugin)
    async def list_keys(req: ApiRequest) -> Any:
        return _plugin(req, spec).table.keys()

    @table.route(f"lookup_{f}", "GET", item, f"Lookup {f} in the cluster", plugin=spec.plugin)
    async def lookup(req: ApiRequest) -> Any:
        key = req.params[f]
        hashed = _plugin(req, spec).table.get(key)
        if hashed is None:
            raise not_found(f"{f} not found")
        return {f: key, "password": hashed.hash}

    @table.route(f"add_{f}", "POST", base, f"Add {f} in the cluster", body=body,
                 plugin=spec.plugin)
    async def add(req: ApiRequest) -> Any:
        plugin = _plugin(req, spec)
        key, password = _strings(req, f, "password")
        if not await plugin.table.add(key, password, plugin.hash_type):
            raise ApiError(Code.UNKNOWN_ERROR, spec.existed, 409)
        return None

    @table.route(f"update_{f}", "PUT", item, f"Update {f} in the cluster",
                 body={"password": body["password"]}, plugin=spec.plugin)
    async def update(req: ApiRequest) -> Any:
        plugin = _plugin(req, spec)
        (password,) = _strings(req, "password")
        if not await plugin.table.update(req.params[f], password, plugin.hash_type):
            raise ApiError(Code.UNKNOWN_ERROR, spec.not_existed, 404)
        return None

    @table.route(f"delete_{f}", "DELETE", item, f"Delete {f} in the cluster",
                 plugin=spec.plugin)
    async def delete(req: ApiRequest) -> Any:
        _plugin(req, spec).table.delete(req.params[f])
        return None


def register(table: RouteTable) -> None:
    """/auth_clientid and /auth_username (emqx_auth_clientid, emqx_auth_username)."""
    register_auth_table(table, CLIENTID_SPEC)
    register_auth_table(table, USERNAME_SPEC)
