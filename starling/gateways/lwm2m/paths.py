"""LwM2M paths: ``/object[/instance[/resource[/resource-instance]]]`` as id tuples."""

from __future__ import annotations

Path = tuple[int, ...]


class PathError(ValueError):
    """A path that is not an LwM2M path."""


def parse_path(text: str, *, allow_empty: bool = False) -> Path:
    """``"/3/0/13"`` → ``(3, 0, 13)``; leading and trailing slashes are optional."""
    parts = [part for part in text.strip().split("/") if part]
    if not parts and not allow_empty:
        raise PathError(f"empty LwM2M path {text!r}")
    if len(parts) > 4:
        raise PathError(f"an LwM2M path has at most 4 levels: {text!r}")
    try:
        ids = tuple(int(part) for part in parts)
    except ValueError:
        raise PathError(f"LwM2M path levels are numbers: {text!r}") from None
    if any(not 0 <= i <= 0xFFFF for i in ids):
        raise PathError(f"LwM2M path ids are 0-65535: {text!r}")
    return ids


def format_path(path: Path) -> str:
    return "/" + "/".join(str(i) for i in path)
