"""The web dashboard in a real browser (Debian's Chromium through playwright)
against a real node: signing in and out, clients and kick, rules, plugins, bans,
the MQTT WebSocket tool, hostile data, and screenshots of the main pages."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers.api import ok
from helpers.clients import Clients, uid, wait_until
from helpers.dashboard import PASSWORD, dashboard_url, goto, login

pytestmark = pytest.mark.needs_browser

STORAGE_KEY = "starling.dashboard.session"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect
    return playwright_expect(locator)


def storage(page: Any) -> dict[str, dict[str, str]]:
    return page.evaluate("""() => ({
        local: Object.fromEntries(Object.entries(localStorage)),
        session: Object.fromEntries(Object.entries(sessionStorage)),
    })""")


def row(page: Any, text: str) -> Any:
    return page.locator("table.data tbody tr").filter(has_text=text)


def confirm(page: Any, label: str) -> None:
    page.get_by_role("dialog").get_by_role("button", name=label, exact=True).click()


# -- signing in ---------------------------------------------------------------------------

def test_wrong_password_is_refused_then_login_and_logout(page: Any, dash_node: Any) -> None:
    page.goto(dashboard_url(dash_node) + "/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Error 103: Username or Password Error (HTTP 401)")
    expect(page.get_by_role("navigation", name="Main menu")).to_have_count(0)
    assert storage(page) == {"local": {}, "session": {}}

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(row(page, dash_node.name).first).to_be_visible()
    saved = json.loads(storage(page)["session"][STORAGE_KEY])
    assert saved["username"] == "admin" and saved["token"].startswith("sdt_")
    assert PASSWORD not in json.dumps(storage(page))

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert storage(page) == {"local": {}, "session": {}}
    # the token was revoked on the node, not only forgotten
    with httpx.Client(base_url=dashboard_url(dash_node) + "/api/v3",
                      auth=("admin", saved["token"]), timeout=10) as client:
        assert client.get("/brokers/").status_code == 401
    # nothing but the login form without a user: a page link shows the form too
    page.goto(dashboard_url(dash_node) + "/#/clients")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_remember_me_keeps_a_token_and_no_password(browser: Any, dash_node: Any) -> None:
    remembered = browser.new_context()
    try:
        page = remembered.new_page()
        login(page, dash_node, remember=True)
        kept = storage(page)
        assert STORAGE_KEY not in kept["session"] and set(kept["local"]) == {STORAGE_KEY}
        saved = json.loads(kept["local"][STORAGE_KEY])
        assert saved["token"].startswith("sdt_") and PASSWORD not in json.dumps(kept)
        assert saved["expires_at"] - time.time() > 29 * 86400
        page.close()
        # a new tab (as after the browser restarted) is signed in without the form
        again = remembered.new_page()
        again.goto(dashboard_url(dash_node) + "/#/listeners")
        expect(again.get_by_role("heading", name=re.compile("^Listeners on"))).to_be_visible()
        expect(again.get_by_role("button", name="Sign in")).to_have_count(0)
    finally:
        remembered.close()
    # without "remember me" the token lives in the tab only
    plain = browser.new_context()
    try:
        page = plain.new_page()
        login(page, dash_node)
        assert STORAGE_KEY in storage(page)["session"] and storage(page)["local"] == {}
        other = plain.new_page()
        other.goto(dashboard_url(dash_node) + "/")
        expect(other.get_by_role("button", name="Sign in")).to_be_visible()
    finally:
        plain.close()


def test_theme_follows_the_system_until_one_is_picked(browser: Any, dash_node: Any) -> None:
    dark = browser.new_context(color_scheme="dark")
    try:
        page = dark.new_page()
        login(page, dash_node)
        theme = "document.documentElement.dataset.theme"
        assert page.evaluate(theme) == "dark"
        toggle = page.get_by_role("button", name=re.compile("^Theme"))
        expect(toggle).to_have_text("Theme: system")
        toggle.click()
        expect(toggle).to_have_text("Theme: light")
        assert page.evaluate(theme) == "light"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.reload()  # the choice is kept
        expect(toggle).to_have_text("Theme: light")
        assert page.evaluate(theme) == "light"
        toggle.click()
        assert page.evaluate(theme) == "dark"
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") != background
    finally:
        dark.close()


def test_change_own_password(page: Any, dash_node: Any, dash_api: httpx.Client) -> None:
    name = uid("me")
    ok(dash_api.post("/users/", json={"username": name, "password": "first-pw"}))
    login(page, dash_node, name, "first-pw")
    goto(page, dash_node, "account")
    page.get_by_label("Current password").fill("wrong")
    page.get_by_label("New password", exact=True).fill("second-pw")
    page.get_by_label("New password again").fill("second-pw")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("Error 114: Password Error (HTTP 400)")
    page.get_by_label("Current password").fill("first-pw")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Password changed: sign in with the new one.")).to_be_visible()
    login(page, dash_node, name, "second-pw")
    ok(dash_api.delete(f"/users/{name}"))


# -- clients ------------------------------------------------------------------------------

def test_a_client_appears_and_is_kicked(page: Any, dash_node: Any, clients: Clients) -> None:
    client_id = uid("paho")
    paho = clients(dash_node, client_id, username="alice")
    paho.subscribe(f"seen/{client_id}", 1)
    login(page, dash_node)
    goto(page, dash_node, "clients")
    line = row(page, client_id)
    expect(line).to_contain_text("alice")
    # search by user name finds it too
    page.get_by_label("Search by").select_option("username")
    page.get_by_label("Search term").fill("alice")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("1 found")).to_be_visible()
    # the detail view: connection, session, subscriptions
    line.get_by_role("link", name=client_id).click()
    expect(page.get_by_role("heading", name=f"Client {client_id}")).to_be_visible()
    expect(row(page, f"seen/{client_id}")).to_contain_text("1")
    page.get_by_role("button", name="Kick", exact=True).click()
    confirm(page, "Kick")
    paho.wait_disconnected()
    expect(page.get_by_text(f"{client_id} is not connected")).to_be_visible()


def test_hostile_client_id_and_topic_are_shown_as_text(page: Any, dash_node: Any,
                                                        clients: Clients) -> None:
    marker = uid("x")
    hostile = f'<img src=x onerror="window.__xss=1">{marker}<script>window.__xss=2</script>'
    topic = f'<b onmouseover="window.__xss=3">{marker}</b>/#'
    paho = clients(dash_node, hostile)
    paho.subscribe(topic, 0)
    login(page, dash_node)
    goto(page, dash_node, "clients")
    cell = page.locator("table.data td").filter(has_text=marker).first
    expect(cell).to_have_text(hostile)
    goto(page, dash_node, "subscriptions")
    expect(page.locator("table.data td").filter(has_text=marker).last).to_have_text(topic)
    page.goto(f"{dashboard_url(dash_node)}/#/clients/{quote(hostile, safe='')}")
    expect(page.get_by_role("heading", name=f"Client {hostile}")).to_be_visible()
    assert page.locator("main img, main script, main b").count() == 0
    assert page.evaluate("window.__xss") is None


# -- rules --------------------------------------------------------------------------------

def test_rule_with_sql_test_and_action_fires(page: Any, dash_node: Any, clients: Clients,
                                             dash_api: httpx.Client) -> None:
    tag = uid("r")
    sql = f'SELECT payload.msg as msg, topic FROM "in/{tag}/#" WHERE payload.msg <> \'skip\''
    login(page, dash_node)
    goto(page, dash_node, "rules/new")
    page.get_by_label("SQL", exact=True).fill(sql)
    page.get_by_label("topic", exact=True).fill(f"in/{tag}/a")
    page.get_by_label("payload", exact=True).fill('{"msg": "hello from the test"}')
    page.get_by_role("button", name="Run test").click()
    output = page.locator("#sql-test-output")
    expect(output).to_contain_text('"msg": "hello from the test"')
    expect(output).to_contain_text(f'"topic": "in/{tag}/a"')
    # no match: the API's answer, code and message
    page.get_by_label("payload", exact=True).fill('{"msg": "skip"}')
    page.get_by_role("button", name="Run test").click()
    expect(page.get_by_role("alert")).to_have_text("Error 404: SQL Not Match (HTTP 404)")

    page.get_by_label("Action", exact=True).select_option("built_in:republish_action")
    page.get_by_label("To Which Topic").fill(f"out/{tag}")
    page.get_by_label("Payload Template").fill("got ${msg}")
    page.get_by_role("button", name="Add action").click()
    expect(row(page, "built_in:republish_action")).to_contain_text(f"out/{tag}")
    page.get_by_role("button", name="Create rule").click()
    heading = page.get_by_role("heading", name=re.compile(r"^Rule rule:"))
    expect(heading).to_be_visible()
    rule_id = heading.inner_text().removeprefix("Rule ")
    assert ok(dash_api.get(f"/rules/{rule_id}"))["rawsql"] == sql

    receiver = clients(dash_node, uid("out"))
    receiver.subscribe(f"out/{tag}", 1)
    clients(dash_node, uid("in")).publish(f"in/{tag}/a", '{"msg": "fired"}', qos=1)
    assert receiver.get(topic=f"out/{tag}").payload == b"got fired"
    # the detail page shows the rule's metrics, refreshed live
    metrics = row(page, dash_node.name)
    expect(metrics.locator("td").nth(1)).to_have_text("1", timeout=15_000)

    # edit, then disable
    page.get_by_role("link", name="Edit", exact=True).click()
    page.get_by_label("Description").fill("edited in the browser")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_text("edited in the browser")).to_be_visible()
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("button", name="Enable")).to_be_visible()
    rule = ok(dash_api.get(f"/rules/{rule_id}"))
    assert rule["description"] == "edited in the browser" and rule["enabled"] is False
    assert rule["actions"][0]["params"]["target_topic"] == f"out/{tag}"
    page.get_by_role("button", name="Delete").click()
    confirm(page, "Delete")
    expect(page.get_by_role("heading", name="Rules", exact=True)).to_be_visible()
    assert all(r["id"] != rule_id for r in ok(dash_api.get("/rules")))


# -- management ---------------------------------------------------------------------------

def test_load_and_unload_a_plugin_and_manage_its_entries(page: Any, dash_node: Any,
                                                          dash_api: httpx.Client) -> None:
    name = "emqx_auth_username"
    node = dash_node.name

    def active() -> bool:
        plugins = ok(dash_api.get(f"/nodes/{node}/plugins"))
        return next(p["active"] for p in plugins if p["name"] == name)

    assert not active()
    login(page, dash_node)
    goto(page, dash_node, "auth_username")
    expect(page.get_by_role("alert")).to_have_text(
        f"Error 404: Not Found: plugin {name} is not loaded (HTTP 404)")
    goto(page, dash_node, "plugins")
    try:
        page.get_by_role("button", name=f"Start {name}").click()
        expect(page.get_by_role("button", name=f"Stop {name}")).to_be_visible()
        assert active()
        user = uid("dev")
        goto(page, dash_node, "auth_username")
        page.get_by_label("Username", exact=True).fill(user)
        page.get_by_label("Password", exact=True).fill("dev-pw")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(row(page, user)).to_be_visible()
        assert user in ok(dash_api.get("/auth_username"))
        row(page, user).get_by_role("button", name="Delete").click()
        confirm(page, "Delete")
        expect(row(page, user)).to_have_count(0)
        assert user not in ok(dash_api.get("/auth_username"))
        goto(page, dash_node, "plugins")
        page.get_by_role("button", name=f"Stop {name}").click()
        expect(page.get_by_role("button", name=f"Start {name}")).to_be_visible()
        assert not active()
    finally:
        if active():
            dash_api.put(f"/nodes/{node}/plugins/{name}/unload")


def test_plugin_config_form(page: Any, dash_node: Any, dash_api: httpx.Client) -> None:
    node = dash_node.name
    path = f"/nodes/{node}/plugin_configs/emqx_retainer"
    before = {i["key"]: i["value"] for i in ok(dash_api.get(path))}
    login(page, dash_node)
    goto(page, dash_node, "plugins/emqx_retainer")
    field = page.get_by_label("retainer.max_retained_messages")
    expect(field).to_have_value(before["retainer.max_retained_messages"])
    try:
        field.fill("12345")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Configuration of emqx_retainer saved")).to_be_visible()
        after = {i["key"]: i["value"] for i in ok(dash_api.get(path))}
        assert after["retainer.max_retained_messages"] == "12345"
        field.fill("not a number")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("alert")).to_contain_text("Error ")
    finally:
        dash_api.put(path, json={"retainer.max_retained_messages":
                                 before["retainer.max_retained_messages"]})


def test_add_and_remove_a_ban(page: Any, dash_node: Any, clients: Clients) -> None:
    victim = uid("banned")
    login(page, dash_node)
    goto(page, dash_node, "banned")
    page.get_by_label("Who").fill(victim)
    page.get_by_label("As", exact=True).select_option("client_id")
    page.get_by_label("Reason").fill("testing bans")
    page.get_by_role("button", name="Add ban").click()
    expect(row(page, victim)).to_contain_text("testing bans")
    refused = clients(dash_node, victim, connect=False)
    assert refused.connect(expect_rc=None)[0] != 0
    refused.close()
    row(page, victim).get_by_role("button", name=f"Remove the ban on {victim}").click()
    confirm(page, "Remove")
    expect(row(page, victim)).to_have_count(0)
    clients(dash_node, victim)  # connects again


def test_api_errors_are_shown_with_code_and_message(page: Any, dash_node: Any) -> None:
    login(page, dash_node)
    goto(page, dash_node, "apps")
    page.get_by_label("App ID").fill("admin")  # exists already
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("alert")).to_have_text("Error 102: alread_existed (HTTP 409)")


def test_listeners_and_http_api_pages(page: Any, dash_node: Any) -> None:
    login(page, dash_node)
    goto(page, dash_node, "listeners")
    host, port = dash_node.listeners["mqtt:ws:default"]
    expect(row(page, "mqtt:ws:default")).to_contain_text(f"{host}:{port} /mqtt")
    goto(page, dash_node, "http_api")
    brokers = row(page, "list_brokers")
    brokers.get_by_role("button", name="Try").click()
    expect(page.locator("#api-output")).to_contain_text(f'"node": "{dash_node.name}"')
    expect(row(page, "kickout_connection").get_by_role("button", name="Try")).to_have_count(0)


# -- the MQTT WebSocket tool --------------------------------------------------------------

def test_websocket_client_publishes_and_receives(page: Any, dash_node: Any,
                                                 clients: Clients) -> None:
    tag = uid("ws")
    login(page, dash_node)
    goto(page, dash_node, "websocket")
    _, ws_port = dash_node.listeners["mqtt:ws:default"]
    expect(page.get_by_label("Port")).to_have_value(str(ws_port))  # read from the API
    expect(page.get_by_label("Path")).to_have_value("/mqtt")
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.locator("#mqtt-state")).to_contain_text("connected as dashboard_")
    page.get_by_label("Subscription topic").fill(f"ws/{tag}/#")
    page.get_by_label("Subscription QoS").select_option("1")
    page.get_by_role("button", name="Subscribe", exact=True).click()
    expect(row(page, f"ws/{tag}/#")).to_be_visible()

    paho = clients(dash_node, uid("peer"))
    paho.subscribe(f"ws/{tag}/from-page", 1)
    paho.publish(f"ws/{tag}/from-paho", "<i>hello</i> from paho", qos=1)
    received = page.locator("#received-messages")
    expect(received.locator("tr").filter(has_text=f"ws/{tag}/from-paho")).to_contain_text(
        "<i>hello</i> from paho")
    assert page.locator("#received-messages i").count() == 0

    page.get_by_label("Publish topic").fill(f"ws/{tag}/from-page")
    page.get_by_label("Payload").fill("hello from the page")
    page.get_by_label("Publish QoS").select_option("1")
    page.get_by_role("button", name="Publish", exact=True).click()
    got = paho.get(topic=f"ws/{tag}/from-page")
    assert (got.payload, got.qos) == (b"hello from the page", 1)
    expect(received.locator("tr").filter(has_text=f"ws/{tag}/from-page")).to_be_visible()
    expect(page.locator("#published-messages")).to_contain_text("hello from the page")
    page.get_by_role("button", name="Disconnect").click()
    expect(page.locator("#mqtt-state")).to_have_text("disconnected")


# -- screenshots --------------------------------------------------------------------------

def test_screenshots_of_the_main_pages(page: Any, dash_node: Any, clients: Clients,
                                       dash_api: httpx.Client, shots: Path) -> None:
    """The pictures in docs/dashboard.md (STARLING_DASHBOARD_SCREENSHOTS=docs/img/dashboard)."""
    tag = uid("shot")
    publisher = clients(dash_node, "sensor-17", username="plant-a")
    for i in range(3):
        clients(dash_node, f"meter-{i:02d}", username="plant-b").subscribe(f"meters/{i}/#", 1)
    rule = ok(dash_api.post("/rules", json={
        "rawsql": 'SELECT payload.temp as temp, client_id FROM "sensors/#" WHERE payload.temp > 30',
        "description": "hot sensors", "actions": [
            {"name": "built_in:republish_action", "params": {"target_topic": "alerts/hot",
                                                             "payload_tmpl": "${temp}"}}]}))
    try:
        page.set_viewport_size({"width": 1366, "height": 860})
        page.goto(dashboard_url(dash_node) + "/")
        page.get_by_label("Username").fill("admin")
        page.screenshot(path=str(shots / "login.png"))
        login(page, dash_node)
        # a few samples of traffic for the charts
        deadline = time.monotonic() + 16
        n = 0
        while time.monotonic() < deadline:
            n += 1
            publisher.publish(f"sensors/{tag}", json.dumps({"temp": 20 + n % 15}), qos=1)
            time.sleep(0.05)
        wait_until(lambda: page.locator("svg.chart polyline[points*=',']").count() >= 2,
                   timeout=10, message="charts drawn")
        # the traffic above is in the chart (messages/received between two samples)
        messages = page.locator("figure").filter(has_text="Messages per second")
        expect(messages.locator("li").first).to_have_text(re.compile(r"^received [1-9][\d.,]* /s$"))
        page.screenshot(path=str(shots / "overview.png"))
        for route, name in (("clients", "clients"), (f"rules/{rule['id']}", "rule"),
                            (f"rules/{rule['id']}/edit", "rule-edit"), ("plugins", "plugins"),
                            ("listeners", "listeners"), ("http_api", "http-api")):
            goto(page, dash_node, route)
            page.locator("table.data").first.wait_for()
            page.screenshot(path=str(shots / f"{name}.png"))
        goto(page, dash_node, "websocket")
        page.get_by_role("button", name="Connect", exact=True).click()
        page.get_by_label("Subscription topic").fill("sensors/#")
        page.get_by_role("button", name="Subscribe", exact=True).click()
        row(page, "sensors/#").wait_for()
        publisher.publish(f"sensors/{tag}", json.dumps({"temp": 31}), qos=1)
        page.get_by_role("button", name="Publish", exact=True).click()
        page.locator("#published-messages td").filter(has_text="testtopic/1").wait_for()
        page.locator("#received-messages td").filter(has_text=f"sensors/{tag}").first.wait_for()
        page.screenshot(path=str(shots / "websocket.png"), full_page=True)
        page.get_by_role("button", name=re.compile("^Theme")).click()  # system -> light
        page.get_by_role("button", name=re.compile("^Theme")).click()  # light -> dark
        goto(page, dash_node, "overview")
        page.locator("svg.chart").first.wait_for()
        page.screenshot(path=str(shots / "overview-dark.png"))
    finally:
        dash_api.delete(f"/rules/{rule['id']}")
    for name in ("login", "overview", "clients", "rule", "plugins", "websocket", "overview-dark"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
