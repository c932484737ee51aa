"""The listener's `listen()` backlog (`listeners.<kind>.<name>.backlog`,
docs/reliability.md "Connection storms and the listen backlog"): what the kernel
reports for the node's listening socket (`ss`, Send-Q of a LISTEN socket is its
backlog), for the default and a configured value, and a bad value refused at start."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.nodes import ON_MOSQUITTO

pytestmark = pytest.mark.skipif(ON_MOSQUITTO, reason="Starling's listener settings")


def listen_backlog(port: int) -> int:
    """The backlog the kernel holds for the socket listening on `port`."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out and out[0] == "LISTEN", out
    return int(out[2])  # State Recv-Q Send-Q ...: Send-Q is the backlog


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


def test_default_backlog_is_4096_capped_by_somaxconn(make_node: Callable[..., Any]) -> None:
    node = make_node()
    assert listen_backlog(node.port) == min(4096, somaxconn())


def test_backlog_is_a_listener_setting(make_node: Callable[..., Any]) -> None:
    node = make_node({"listeners.tcp.default.backlog": "100"})
    assert listen_backlog(node.port) == 100


def test_bad_backlog_is_refused_naming_the_key(make_node: Callable[..., Any]) -> None:
    with pytest.raises(RuntimeError) as failed:
        make_node({"listeners.tcp.default.backlog": "0"})
    assert "listeners.tcp.default.backlog" in str(failed.value)
