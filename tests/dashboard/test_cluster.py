"""The dashboard of a cluster in a real browser: two real nodes joined through a
real nats-server, the dashboard opened on the first. The overview lists both nodes,
and the node selector of the per-node pages shows the other node's listeners and
clients, and kicks a client that lives on the other node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.clients import Clients, uid
from helpers.cluster import Cluster
from helpers.dashboard import PASSWORD, goto, login
from helpers.nats_server import NatsServer

pytestmark = pytest.mark.needs_browser

DASHBOARD = {"dashboard.bind": "127.0.0.1:0", "dashboard.default_user.password": PASSWORD}


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect
    return playwright_expect(locator)


def row(page: Any, text: str) -> Any:
    return page.locator("table.data tbody tr").filter(has_text=text)


@pytest.fixture(scope="module")
def two_nodes(spawn_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nats = NatsServer().start()
    try:
        made = Cluster(spawn_node, tmp_path_factory.mktemp("dash-cluster"), nats, count=2,
                       **DASHBOARD)
        try:
            yield made
        finally:
            made.stop()
    finally:
        nats.close()


def choose_node(page: Any, name: str) -> None:
    page.get_by_label("Node", exact=True).select_option(name)


def test_overview_lists_every_node(page: Any, two_nodes: Cluster, tmp_path: Path) -> None:
    n1, n2 = two_nodes.nodes
    login(page, n1)
    goto(page, n1, "overview")
    main = page.locator("main")
    expect(main).to_contain_text(n1.name)
    expect(main).to_contain_text(n2.name)
    options = page.get_by_label("Node", exact=True).locator("option")
    expect(options).to_have_text([n1.name, n2.name])


def test_the_node_selector_shows_the_other_node(page: Any, two_nodes: Cluster,
                                                clients: Clients) -> None:
    n1, n2 = two_nodes.nodes
    login(page, n1)
    goto(page, n1, "listeners")
    for node in (n1, n2):
        choose_node(page, node.name)
        host, port = node.listeners["mqtt:tcp:default"]
        expect(row(page, "mqtt:tcp:default")).to_contain_text(f"{host}:{port}")

    client_id = uid("on-n2")
    paho = clients(n2, client_id)
    goto(page, n1, "clients")
    choose_node(page, n1.name)
    expect(page.locator("main")).not_to_contain_text(client_id)
    choose_node(page, n2.name)
    line = row(page, client_id)
    expect(line).to_be_visible()
    # kicked from the first node's dashboard, though it lives on the second
    line.get_by_role("link", name=client_id).click()
    page.get_by_role("button", name="Kick", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Kick", exact=True).click()
    paho.wait_disconnected()
    expect(page.get_by_text(f"{client_id} is not connected")).to_be_visible()
