"""Fixtures of the dashboard suites: a node with the dashboard, management and
MQTT WebSocket listeners on free ports, one headless Chromium (both per test
module), and a fresh browser context (cookies, storage) per test.

Screenshots the tests take go to `$STARLING_DASHBOARD_SCREENSHOTS` when set
(`docs/img/dashboard` regenerates the ones docs/dashboard.md shows), else to a
temporary directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from helpers.browser import launch_chromium, sync_playwright  # noqa: E402
from helpers.dashboard import PASSWORD, dashboard_url  # noqa: E402

from tests.conftest import API_SETTINGS, BASE_SETTINGS, Node  # noqa: E402

NODE_NAME = "starling@127.0.0.1"
DASH_SETTINGS = {
    **BASE_SETTINGS,
    **API_SETTINGS,
    "dashboard.bind": "127.0.0.1:0",
    "dashboard.default_user.password": PASSWORD,
    "listeners.ws.default.bind": "127.0.0.1:0",
}


@pytest.fixture(scope="module")
def dash_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("dash"), dict(DASH_SETTINGS), NODE_NAME)
    node.start()
    yield node
    node.stop()


@pytest.fixture
def dash_api(dash_node: Node) -> Iterator[httpx.Client]:
    """The API on the dashboard listener, as the admin user."""
    with httpx.Client(base_url=dashboard_url(dash_node) + "/api/v3", auth=("admin", PASSWORD),
                      timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped, not session-scoped: while playwright's sync API runs, its event
    loop is the thread's running loop, and later tests' `asyncio.run()` would fail."""
    with sync_playwright() as playwright:
        from playwright.sync_api import expect
        expect.set_options(timeout=15_000)  # a loaded 2-core CI machine
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1366, "height": 860})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A tab; an uncaught exception in the page's scripts fails the test."""
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    assert errors == [], f"script errors in the page: {errors}"


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("STARLING_DASHBOARD_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
