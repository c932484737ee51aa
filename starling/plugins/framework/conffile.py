"""EMQ X v3 plugin conf files (``etc/plugins/<plugin>.conf``), read as they are.

The format is cuttlefish's: one ``key = value`` per line, ``#`` starts a
comment line, blank lines are ignored, a value may be wrapped in double
quotes.  Only what EMQ X's shipped plugin files use is supported (no
``include``, no multi-line values).
"""

from __future__ import annotations

from pathlib import Path


class ConfFileError(ValueError):
    """A line that is not ``key = value``; the message names the file and line."""


def parse_conf(text: str, source: str = "<conf>") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise ConfFileError(f"{source}:{number}: expected 'key = value', got {raw.strip()!r}")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values[key] = value
    return values


def read_conf(path: Path) -> dict[str, str]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfFileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfFileError(f"{path}: not UTF-8 text") from None
    return parse_conf(text, str(path))
