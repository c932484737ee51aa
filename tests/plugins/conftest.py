"""The plugin suites use tests/conftest.py's fixtures; this puts `helpers` and the
API suite's `emqx_seed` on `sys.path` for them."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for _dir in (str(_TESTS), str(_TESTS / "api")):
    if _dir not in sys.path:
        sys.path.insert(0, _dir)
