"""The rule engine's refusals, as the API shows them (facts §8.7): EMQ X's
HTTP-like `code` (400 bad argument, 404 not found) and an HTTP status."""

from __future__ import annotations


class RuleError(Exception):
    def __init__(self, message: str, code: int = 400, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status if status is not None else code


def not_found() -> RuleError:
    return RuleError("Not Found", 404)


def bad_arguments(detail: str) -> RuleError:
    return RuleError(f"Bad Arguments: {detail}", 400)
