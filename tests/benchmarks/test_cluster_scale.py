"""benchmarks/cluster_scale.py at a tiny size: two nodes joined through a real
nats-server, loadgen holding 100 connections on each, the storm, and the
cluster-wide view.  Behaviour, not speed: the figures are in benchmarks/README.md."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.servers import find_program

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cluster_scale.py"


@pytest.mark.timeout(240)
def test_two_nodes_hold_connect_storm_and_see_each_other(tmp_path: Path) -> None:
    find_program("gcc")  # skipped locally when missing, a failure under .ci/run
    find_program("nats-server", "/usr/sbin")
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--nodes", "2", "--connections", "200", "--hold", "2",
         "--json", str(out)], capture_output=True, text=True, timeout=200)
    assert out.exists(), done.stdout + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]

    total = result["total"]
    assert total["ok"] and total["connected"] == 200
    assert total["storm_connected"] == 200
    assert total["closed_not_by_client"] == 0
    assert total["connect_rate"] > 0 and total["rss_per_conn_kib"] is not None
    assert [n["node"] for n in result["nodes"]] == ["n1@127.0.0.1", "n2@127.0.0.1"]
    for node in result["nodes"]:
        assert node["connected"] == node["connections"] == 100, node
        # Closed only after the clients' DISCONNECTs (the storm's, then at the end).
        assert set(node["shutdown_count"]) == {"normal"}, node
        assert node["shutdown_count"]["normal"] >= 100, node
    # The first node's GET /nodes saw both nodes, each with its own 100.
    assert result["view"]["nodes"] == {
        "n1@127.0.0.1": {"status": "Running", "connections": 100},
        "n2@127.0.0.1": {"status": "Running", "connections": 100}}

    # Nothing left running: the nodes' MQTT ports are closed.
    for node in result["raw"]:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", node["port"]), timeout=1)
