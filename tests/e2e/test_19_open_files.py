"""The node takes the whole open-file limit it may, and says when a listener's
max_connections promises more connections than that limit lets it hold."""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.nodes import ON_MOSQUITTO

pytestmark = pytest.mark.skipif(ON_MOSQUITTO, reason="Starling's own start-up")
Node = Any


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    """Start nodes with a soft limit below the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 512)
    if hard != resource.RLIM_INFINITY and hard <= low:
        pytest.skip("the hard open-file limit is too low to lower the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        yield low
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_files_limits(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError("no open-files line in /proc/<pid>/limits")


def test_soft_limit_raised_to_the_hard_one(make_node: Callable[..., Node],
                                           low_soft_limit: int) -> None:
    node = make_node({"listeners.tcp.default.max_connections": "100"})
    assert node.proc is not None
    soft, hard = open_files_limits(node.proc.pid)
    assert soft == hard
    assert soft != str(low_soft_limit)
    assert not [line for line in node.log_lines if "open-file limit" in line]


def test_warns_when_max_connections_exceeds_the_limit(make_node: Callable[..., Node]) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit on this machine")
    too_many = hard + 1000
    node = make_node({"listeners.tcp.default.max_connections": str(too_many),
                      "listeners.tcp.internal.bind": "127.0.0.1:0",
                      "listeners.tcp.internal.max_connections": "100"})
    line = node.wait_log(r"listener mqtt:tcp:default: max_connections")
    assert "WARNING" in line
    assert str(too_many) in line
    assert f"RLIMIT_NOFILE {hard}" in line
    assert not [x for x in node.log_lines if "mqtt:tcp:internal: max_connections" in x]
