"""Shared empty maps: what an idle client does not use costs it nothing.

An empty dict costs 64 bytes.  A session has four maps and an MQTT 5.0
channel three that most clients never fill, so each starts as the one shared
`NO_ENTRIES` (reads work as on any empty dict, writes are refused) and gets a
dict of its own from `own()` when it first stores something.
"""

from __future__ import annotations

from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class _NoEntries(dict[Any, Any]):
    """The shared, always empty map (see the module docstring)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("write to the shared empty map: take your own with own()")

    __setitem__ = setdefault = update = __ior__ = _refuse


#: The one shared empty map; `m is NO_ENTRIES` tells it from an object's own.
NO_ENTRIES: dict[Any, Any] = _NoEntries()


def own(mapping: dict[K, V]) -> dict[K, V]:
    """`mapping`, or a new dict of one's own in place of the shared `NO_ENTRIES`:
    call it before writing, and keep what it returns."""
    return {} if mapping is NO_ENTRIES else mapping
