"""The plugin suites use tests/conftest.py's fixtures; this puts `helpers` and the
API suite's `emqx_seed` on `sys.path` for them, and adds `api`: an API client of
the module's `node` (which the module defines as a node with the API on)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

_TESTS = Path(__file__).resolve().parent.parent
for _dir in (str(_TESTS), str(_TESTS / "api")):
    if _dir not in sys.path:
        sys.path.insert(0, _dir)


@pytest.fixture
def api(node: Any) -> Iterator[httpx.Client]:
    with node.api() as client:
        yield client
