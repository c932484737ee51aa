"""Dashboard users: /auth, /users/, /users/:name, /change_pwd/:username
(emqx_dashboard's routes, facts §9).

They answer while the `emqx_dashboard` plugin is loaded, on both listeners:
on the dashboard listener with a dashboard user's credentials (``POST /auth``
with none), on the management listener with an app's.  EMQ X's messages are
kept ("Username Not Found", "Password Error", ...), except that `/auth` gives
one answer to a wrong password and an unknown user; as everywhere in this API
an error has a non-zero code (EMQ X's 103-106, 113, 114 from emqx_mgmt.hrl,
which its own handlers never used) and a 4xx status (docs/api.md,
"Dashboard users").
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ApiError, Code, bad_type, missing
from ..request import ApiRequest
from ..routing import RouteTable
from ..users import MAX_PASSWORD, MAX_TAGS, USERS_SERVICE, UserRegistry, username_problem

log = logging.getLogger(__name__)

NOT_FOUND = "Username Not Found"
#: `/auth`'s one answer to a wrong password and to an unknown user name alike.
SIGN_IN_REFUSED = "Username or Password Error"
PLUGIN = "emqx_dashboard"


def _users(req: ApiRequest) -> UserRegistry:
    users = req.ctx.services.get(USERS_SERVICE)
    if users is None:
        raise ApiError(Code.NOT_FOUND, f"Not Found: plugin {PLUGIN} is not loaded", 404)
    assert isinstance(users, UserRegistry)
    return users


def _string(req: ApiRequest, name: str, limit: int) -> str | None:
    value = req.arg(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_type(f"'{name}' must be a string")
    if len(value) > limit:
        raise bad_type(f"'{name}' must be at most {limit} characters")
    return value


def _password(req: ApiRequest, name: str) -> str | None:
    return _string(req, name, MAX_PASSWORD)


def _tags(req: ApiRequest) -> str | None:
    return _string(req, "tags", MAX_TAGS)


def _not_found() -> ApiError:
    return ApiError(Code.USER_NOT_FOUND, NOT_FOUND, 404)


async def _signed_in(req: ApiRequest) -> tuple[UserRegistry, str]:
    """`/auth`'s check of `username` and `password`: the users and the user name."""
    users = _users(req)
    username = _string(req, "username", 4096)
    password = _password(req, "password")
    if not username:
        raise ApiError(Code.EMPTY_USERNAME_OR_PASSWORD, "Username undefined", 400)
    if not password:
        raise ApiError(Code.EMPTY_USERNAME_OR_PASSWORD, "Password undefined", 400)
    async def check() -> bool:
        # An unknown name takes as long as a wrong password (UserRegistry.check).
        return await users.check(username, password)

    # Logged, and slowed after repeated failures (api/throttle.py).
    if not await req.ctx.login_throttle.guard("dashboard login", req.peer,
                                              "dashboard user", username, check):
        # One answer for a wrong password and an unknown user: no name is revealed.
        raise ApiError(Code.USERNAME_OR_PASSWORD_ERROR, SIGN_IN_REFUSED, 401)
    log.info("dashboard login: user %r from %s", username, req.peer or "an unknown address")
    return users, username


def register(table: RouteTable) -> None:
    @table.route("auth_user", "POST", "/auth", "Authenticate an user", plugin=PLUGIN, body={
        "username": ("string", True, "dashboard user name"),
        "password": ("string", True, "its password")})
    async def auth_user(req: ApiRequest) -> Any:
        await _signed_in(req)
        return None

    # Starling's: the web dashboard signs in with a token, so that no password is
    # kept in the browser (api/tokens.py, docs/dashboard.md).
    @table.route("create_token", "POST", "/auth/token",
                 "Sign in: trade a user's name and password for a dashboard token",
                 plugin=PLUGIN, body={
                     "username": ("string", True, "dashboard user name"),
                     "password": ("string", True, "its password"),
                     "remember": ("boolean", False, "a 30-day token instead of a 12-hour one")})
    async def create_token(req: ApiRequest) -> Any:
        users, username = await _signed_in(req)
        token, expires = users.issue_token(username, req.bool_arg("remember", False))
        return {"username": username, "token": token, "expires_at": int(expires)}

    @table.route("revoke_token", "DELETE", "/auth/token", "Sign out: revoke a dashboard token",
                 plugin=PLUGIN, body={"token": ("string", True, "the token to revoke")})
    async def revoke_token(req: ApiRequest) -> Any:
        users = _users(req)
        token = req.str_arg("token", required=True)
        assert token is not None
        users.tokens.revoke(token)
        return None

    @table.route("create_user", "POST", "/users/", "Create an user", plugin=PLUGIN, body={
        "username": ("string", True, "user name (no ':')"),
        "password": ("string", True, "password"),
        "tags": ("string", False, "free text, e.g. administrator (default empty)")})
    async def create_user(req: ApiRequest) -> Any:
        users = _users(req)
        username = _string(req, "username", 4096)
        password = _password(req, "password")
        tags = _tags(req) or ""
        if not username or not password:
            raise ApiError(Code.EMPTY_USERNAME_OR_PASSWORD,
                           "Username or password undefined", 400)
        problem = username_problem(username)
        if problem:
            raise bad_type(problem)
        if not await users.add(username, password, tags):
            raise ApiError(Code.USER_ALREADY_EXISTS, "Username Already Exist", 409)
        return None

    @table.route("list_users", "GET", "/users/", "List users", plugin=PLUGIN)
    async def list_users(req: ApiRequest) -> Any:
        return [user.public() for user in _users(req).all()]

    @table.route("update_user", "PUT", "/users/:name", "Update an user", plugin=PLUGIN, body={
        "tags": ("string", False, "new tags (required unless password is given)"),
        "password": ("string", False, "Starling: set a new password without the old one")})
    async def update_user(req: ApiRequest) -> Any:
        users = _users(req)
        name = req.params["name"]
        tags = _tags(req)
        password = _password(req, "password")
        if password == "":
            raise ApiError(Code.EMPTY_USERNAME_OR_PASSWORD, "Password undefined", 400)
        if tags is None and password is None:
            raise missing("tags")
        if name not in users:
            raise _not_found()
        if password is not None and not await users.set_password(name, password):
            raise _not_found()
        if tags is not None and not users.set_tags(name, tags):
            raise _not_found()
        return None

    @table.route("delete_user", "DELETE", "/users/:name", "Delete an user", plugin=PLUGIN)
    async def delete_user(req: ApiRequest) -> Any:
        users = _users(req)
        name = req.params["name"]
        if name not in users:
            raise _not_found()
        if name == users.default_login:
            raise ApiError(Code.ADMIN_CANNOT_BE_DELETED, "Cannot delete admin", 409)
        if len(users) <= 1:
            raise ApiError(Code.ADMIN_CANNOT_BE_DELETED, "Cannot delete the last user", 409)
        users.delete(name)
        return None

    @table.route("change_pwd", "PUT", "/change_pwd/:username", "Change password for an user",
                 plugin=PLUGIN, body={"old_pwd": ("string", True, "current password"),
                       "new_pwd": ("string", True, "new password")})
    async def change_pwd(req: ApiRequest) -> Any:
        users = _users(req)
        name = req.params["username"]
        old, new = _password(req, "old_pwd"), _password(req, "new_pwd")
        absent = [n for n, v in (("old_pwd", old), ("new_pwd", new)) if not v]
        if absent:
            raise missing(*absent)
        assert old is not None and new is not None
        if name not in users:
            raise _not_found()
        if not await users.check(name, old):
            raise ApiError(Code.OLD_PASSWORD_ERROR, "Password Error", 400)
        if not await users.set_password(name, new):
            raise _not_found()
        return None
