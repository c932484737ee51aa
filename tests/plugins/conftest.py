"""Fixtures for the plugin suites: `make_node` as tests/api's (log pipes closed
after the test), and helpers on `sys.path`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parent.parent
for _dir in (str(_TESTS), str(_TESTS / "api")):  # `helpers`, `api_support`
    if _dir not in sys.path:
        sys.path.insert(0, _dir)

from api_support import Node, close_node  # noqa: E402


@pytest.fixture
def make_node(make_node: Callable[..., Node]) -> Iterator[Callable[..., Node]]:
    """tests/conftest.py's factory; the nodes' log pipes are closed afterwards."""
    nodes: list[Node] = []

    def factory(*args: Any, **kwargs: Any) -> Node:
        node = make_node(*args, **kwargs)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        close_node(node)
