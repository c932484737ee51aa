"""Parsers of the config values many plugins have (counts, ports, timeouts,
switches, fixed choices), so each kind of value is read, and refused, the same
way everywhere.  A `ConfigKey`'s parser raises `ValueError`; its message is the
API's answer to a bad value.  Durations, sizes and booleans are read by
`starling.config`'s parsers, as node config values are, and ranges are worded
the same way (`ConfigError` is a `ValueError`)."""

from __future__ import annotations

from collections.abc import Callable

from starling.config import parse_bool, parse_duration, parse_int
from starling.config import parse_port as config_port


def parse_positive_int(value: str) -> int:
    number = parse_int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def parse_nonnegative_int(value: str) -> int:
    """A count or limit where 0 means none (or no limit)."""
    number = parse_int(value)
    if number < 0:
        raise ValueError(f"must be at least 0, got {number}")
    return number


def parse_port(value: str) -> int:
    """The port of a server to reach: 1-65535."""
    return config_port(value, low=1)


def parse_timeout(value: str) -> float:
    """A duration above 0: every call to a server is bounded."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return seconds


def parse_nonnegative_duration(value: str) -> float:
    """A duration where 0 means never (or no limit)."""
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return seconds


def parse_switch(value: str) -> bool:
    """on / off, true / false, yes / no, 1 / 0; empty is off."""
    return parse_bool(value) if value.strip() else False


def parse_choice(*choices: str, empty: bool = False) -> Callable[[str], str]:
    """A parser of one of `choices` (any letter case); `empty`: "" is allowed too."""
    names = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]

    def parse(value: str) -> str:
        text = value.strip().lower()
        if text in choices or (empty and not text):
            return text
        raise ValueError(f"expected {names}, got {value!r}")
    return parse
