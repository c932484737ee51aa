"""The soak in short: two minutes of mixed traffic (benchmarks/soak.py, which the
one-hour run uses too) leave no file descriptor or asyncio task behind, and the
node's memory stops growing once warm. Behaviour, not speed: the figures of the
one-hour run are in benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"
#: RSS may grow this much between the end of the warm-up and the end of the run.
RSS_GROWTH_LIMIT_KIB = 8 * 1024


@pytest.mark.timeout(400)
def test_two_minute_soak_leaks_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SOAK_PY), "--duration", "120", "--interval", "5",
         "--warmup", "40", "--json", str(out)],
        capture_output=True, text=True, timeout=360)
    assert out.exists(), done.stderr[-3000:]
    result = json.loads(out.read_text())
    counts = result["counts"]
    assert result["errors"] == [], result["errors"]
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]

    # Every part of the traffic ran: a part that silently stopped would hide a leak.
    for key in ("published_q0", "published_q1", "published_q2", "watch_q2", "watch_will",
                "watch_rule", "persistent_visits", "persistent_received", "retained_read",
                "wills_sent", "api_calls"):
        assert counts.get(key, 0) > 0, (key, counts)
    assert all(matched > 0 for matched in result["rules_matched"].values())
    assert result["loop_lag_ms"]["samples"] > 60

    # Nothing left behind once every client has gone.
    assert result["fd_leak"] <= 0, (result["baseline"], result["final"])
    assert result["task_leak"] <= 0, (result["baseline"], result["final"])
    assert result["final"]["connections"] == 0

    # Memory: flat once warm.
    assert result["rss_growth_after_warmup_kib"] < RSS_GROWTH_LIMIT_KIB, result["rss_kib"]
