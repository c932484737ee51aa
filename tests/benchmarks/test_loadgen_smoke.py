"""Smoke test for the benchmark tooling: build loadgen, drive Debian Mosquitto briefly.

Uses the runner's own helpers (benchmarks/run.py) so the build flags and the
Mosquitto configuration tested here are the ones the benchmark uses.  Speeds are
not asserted: only that messages flowed and the stream was valid MQTT.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("starling_benchmarks_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(30)
def test_loadgen_fanin_against_mosquitto(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    run = _load_runner()
    mosquitto = run.Mosquitto()
    if mosquitto.available() is not None:
        pytest.skip("mosquitto is not installed")

    loadgen = run.build_loadgen(force=True, out=tmp_path / "loadgen")
    with mosquitto.running(tmp_path) as broker:
        result = run.run_loadgen(
            loadgen, broker.port, broker.pids,
            ["--scenario", "fanin", "--publishers", "10", "--connect-timeout", "5"],
            timeout=20, duration=1.0, warmup=0.2, cpu=None,
        )
        assert broker.alive()

    assert result.get("ok"), result
    assert result["protocol_errors"] == 0
    assert result["received"] > 0
    assert result["published"] >= result["received"] - 1000  # window: 10 publishers x 100
