"""Driving the web dashboard in a browser page (playwright's sync API): its
address on a node, signing in, going to a page."""

from __future__ import annotations

from typing import Any

#: The admin password the dashboard test nodes are configured with.
PASSWORD = "dash-pw-1"


def dashboard_url(node: Any) -> str:
    host, port = node.listeners["http:dashboard"]
    return f"http://{host}:{port}"


def login(page: Any, node: Any, username: str = "admin", password: str = PASSWORD,
          remember: bool = False) -> None:
    """Open the dashboard, sign in, and wait for the menu."""
    page.goto(dashboard_url(node) + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    if remember:
        page.get_by_label("Remember me").check()
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Main menu").wait_for()


def goto(page: Any, node: Any, route: str) -> None:
    """Show `#/<route>` and wait for its heading."""
    page.goto(f"{dashboard_url(node)}/#/{route}")
    page.locator("main h1").first.wait_for()
