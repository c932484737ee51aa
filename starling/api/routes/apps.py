"""/apps: management API credentials (facts §4)."""

from __future__ import annotations

import time
from typing import Any

from ..apps import App, generate_secret
from ..errors import ApiError, Code, bad_type, missing, not_found
from ..request import ApiRequest
from ..routing import RouteTable

APP_BODY = {
    "app_id": ("string", True, "application id (the Basic auth user name)"),
    "name": ("string", False, "display name"),
    "secret": ("string", False, "secret; generated when absent"),
    "desc": ("string", False, "description"),
    "status": ("boolean", False, "enabled (default true)"),
    "expired": ("integer", False, "expiry, epoch seconds; absent = never"),
}


def _app_fields(req: ApiRequest, current: App | None = None) -> dict[str, Any]:
    """The fields of an app from the request; a new `expired` time in the past is
    refused (the app could never be used; `status: false` disables one)."""
    fields: dict[str, Any] = {}
    for name in ("name", "desc"):
        value = req.arg(name)
        if value is not None and not isinstance(value, str):
            raise bad_type(f"'{name}' must be a string")
        fields[name] = value or ""
    fields["status"] = req.bool_arg("status", True)
    expired = req.arg("expired")
    if expired in (None, "", "undefined"):
        fields["expired"] = None
    else:
        fields["expired"] = req.int_arg("expired", 0)
        unchanged = current is not None and current.expired == fields["expired"]
        if fields["expired"] < time.time() and not unchanged:
            raise bad_type(f"'expired' ({fields['expired']}) is in the past: the app could "
                           "never be used; give a later time, or none for never")
    return fields


def register(table: RouteTable) -> None:
    @table.route("add_app", "POST", "/apps/", "Add Application", body=APP_BODY)
    async def add_app(req: ApiRequest) -> Any:
        app_id = req.str_arg("app_id")
        if not app_id:
            raise missing("app_id")
        if ":" in app_id:  # Basic credentials are "id:secret": such an id could never log in
            raise bad_type("'app_id' must not contain ':'")
        if app_id in req.ctx.apps:
            raise ApiError(Code.UNKNOWN_ERROR, "alread_existed", 409)
        secret = req.str_arg("secret") or generate_secret()
        req.ctx.apps.put(App(app_id, secret, **_app_fields(req)))
        return {"secret": secret}

    @table.route("del_app", "DELETE", "/apps/:appid", "Delete Application")
    async def del_app(req: ApiRequest) -> Any:
        req.ctx.apps.delete(req.params["appid"])
        return None

    @table.route("list_apps", "GET", "/apps/", "List Applications")
    async def list_apps(req: ApiRequest) -> Any:
        return [app.public() for app in req.ctx.apps.all()]

    @table.route("lookup_app", "GET", "/apps/:appid", "Lookup Application")
    async def lookup_app(req: ApiRequest) -> Any:
        app = req.ctx.apps.get(req.params["appid"])
        if app is None:
            raise not_found("app not found")
        return {**app.public(), "secret": app.secret}

    @table.route("update_app", "PUT", "/apps/:appid", "Update Application", body={
        k: v for k, v in APP_BODY.items() if k not in ("app_id", "secret")})
    async def update_app(req: ApiRequest) -> Any:
        app = req.ctx.apps.get(req.params["appid"])
        if app is None:
            raise not_found("ont_found", Code.UNKNOWN_ERROR)
        for key, value in _app_fields(req, app).items():
            setattr(app, key, value)
        req.ctx.apps.put(app)
        return None
