"""The dashboard in Firefox (Debian's ESR, headless, through Marionette): the pages
are plain ES modules, so what Chromium runs must run here too.  Sign in, the
overview with its charts, a live client (with a hostile client id shown as text)
and its kick, the plugin list, sign out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers.browser import Firefox
from helpers.clients import Clients, uid
from helpers.dashboard import PASSWORD, dashboard_url

pytestmark = pytest.mark.needs_browser


@pytest.fixture(scope="module")
def firefox() -> Iterator[Firefox]:
    browser = Firefox()
    yield browser
    browser.close()


def heading(firefox: Firefox, text: str) -> None:
    firefox.wait_for("return [...document.querySelectorAll('main h1')]"
                     ".some(h => h.textContent.trim() === arguments[0])", text,
                     what=f"the heading {text!r}")


def click_button(firefox: Firefox, label: str, within: str = "body") -> None:
    firefox.wait_for("const b = [...document.querySelectorAll(arguments[1] + ' button')]"
                     ".find(b => b.textContent.trim() === arguments[0]);"
                     "if (b) b.click(); return !!b;", label, within,
                     what=f"the button {label!r} in {within}")


def test_sign_in_see_a_client_kick_it_and_sign_out(firefox: Firefox, dash_node: Any,
                                                    clients: Clients) -> None:
    hostile = uid("<img src=x onerror=window.__owned=1>")
    client = clients(dash_node, hostile)
    base = dashboard_url(dash_node)
    firefox.session.navigate(base + "/")
    firefox.wait_for("return document.querySelector('input[name=username]')",
                     what="the sign-in form")
    firefox.js("const set = (name, value) => { const i = document.querySelector("
               "`input[name=${name}]`); i.value = value; };"
               "set('username', 'admin'); set('password', arguments[0]);"
               "document.querySelector('form.login-form').requestSubmit();", PASSWORD)
    firefox.wait_for("return document.querySelector('nav[aria-label=\"Main menu\"]')",
                     what="the main menu after signing in")
    heading(firefox, "Overview")
    firefox.wait_for("return document.querySelectorAll('main svg').length > 0",
                     what="the overview's charts")

    firefox.session.navigate(base + "/#/clients")
    firefox.wait_for("return [...document.querySelectorAll('table.data td')]"
                     ".some(td => td.textContent === arguments[0])", hostile,
                     what="the hostile client id as text")
    assert firefox.js("return document.querySelectorAll('main img').length") == 0
    assert firefox.js("return window.__owned === undefined")

    firefox.js("[...document.querySelectorAll('table.data a')]"
               ".find(a => a.textContent === arguments[0]).click()", hostile)
    heading(firefox, f"Client {hostile}")
    click_button(firefox, "Kick", within="main")
    click_button(firefox, "Kick", within="dialog[open]")
    client.wait_disconnected(timeout=15)

    firefox.session.navigate(base + "/#/plugins")
    firefox.wait_for("return [...document.querySelectorAll('table.data td')]"
                     ".some(td => td.textContent.trim() === 'emqx_rule_engine')",
                     what="the plugin list")
    click_button(firefox, "Log out")
    firefox.wait_for("return document.querySelector('input[name=username]')",
                     what="the sign-in form after logging out")
