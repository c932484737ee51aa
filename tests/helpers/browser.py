"""A real browser for the dashboard tests: Python playwright driving Debian's
Chromium (`/usr/bin/chromium`, installed by scripts/test), never a browser that
`playwright install` would download.

Locally, a missing Chromium or playwright skips the test; under
`STARLING_REQUIRE_SERVERS=1` (`.ci/run`) it fails, as for the external servers
(helpers/servers.py).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from .servers import REQUIRED, find_program

#: Flags for a headless run as root in a container: no sandbox (root), no GPU, no
#: /dev/shm use (small in containers).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def sync_playwright() -> Any:
    """playwright's `sync_playwright()`; skip (or fail under CI) when not installed."""
    try:
        module = importlib.import_module("playwright.sync_api")
    except ImportError:
        message = "playwright is not installed (pip install -e '.[test]')"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return module.sync_playwright()


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless."""
    executable = find_program("chromium")
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=CHROMIUM_ARGS)
