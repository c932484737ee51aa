"""API errors: each carries the EMQ X v3 `code` (facts §1.5) and an HTTP status.

Handlers raise `ApiError`; the app turns it into ``{"code": N, "message": M}``
with the status.  Anything else a handler raises is a bug: it is logged and
answered with code 102 and HTTP 500, never with a stack trace.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """`code` values of EMQ X v3's management API (emqx_mgmt.hrl)."""

    SUCCESS = 0
    BADRPC = 101
    UNKNOWN_ERROR = 102
    USERNAME_OR_PASSWORD_ERROR = 103
    EMPTY_USERNAME_OR_PASSWORD = 104
    USER_NOT_FOUND = 105
    ADMIN_CANNOT_BE_DELETED = 106
    MISSING_PARAMETER = 107
    PARAMETER_TYPE_ERROR = 108
    BODY_NOT_JSON = 109
    PLUGIN_ALREADY_LOADED = 110
    PLUGIN_ALREADY_UNLOADED = 111
    CLIENT_NOT_ONLINE = 112
    USER_ALREADY_EXISTS = 113
    OLD_PASSWORD_ERROR = 114
    BAD_TOPIC = 115
    # The rule engine uses HTTP-like numbers as codes (facts §8.7).
    BAD_REQUEST = 400
    NOT_FOUND = 404
    INTERNAL = 500


class ApiError(Exception):
    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.status = status


def not_found(message: str = "not_found", code: int = Code.NOT_FOUND) -> ApiError:
    return ApiError(code, message, 404)


def missing(*names: str) -> ApiError:
    listed = ", ".join(f"'{n}'" for n in names)
    return ApiError(Code.MISSING_PARAMETER, f"missing mandatory params: [{listed}]", 400)


def bad_type(message: str) -> ApiError:
    return ApiError(Code.PARAMETER_TYPE_ERROR, message, 400)
