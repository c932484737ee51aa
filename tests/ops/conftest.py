"""Fixtures for the operability suites: starting `python -m starling` the way an
operator does, including starts that must fail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent.parent)
if _TESTS_DIR not in sys.path:  # `helpers`
    sys.path.insert(0, _TESTS_DIR)

from helpers.nodes import BASE_SETTINGS  # noqa: E402

Run = Callable[..., subprocess.CompletedProcess[str]]


def settings_args(settings: dict[str, str]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture
def start_fails(tmp_path: Path) -> Run:
    """Run ``starling start`` expected to exit by itself; returns the finished process.
    Settings are BASE_SETTINGS (free ports, extra listeners off) plus `settings`."""

    def run(*args: str, settings: dict[str, str] | None = None,
            data_dir: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "starling", "start",
                   "--data-dir", str(data_dir or tmp_path / "data"),
                   *settings_args({**BASE_SETTINGS, **(settings or {})}), *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, PYTHONUNBUFFERED="1"))
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"the node started although it should not have: "
                                 f"{exc.stderr!r}") from None

    return run


@pytest.fixture
def api(api_node: Any) -> Iterator[httpx.Client]:
    """An authenticated client for `api_node`'s management API."""
    with api_node.api() as client:
        yield client
