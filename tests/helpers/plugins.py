"""Third-party plugins for tests: a module installed as a distribution with a
`starling.plugins` entry point, on the PYTHONPATH of the nodes a test starts."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str,
                   plugin: str | None = None) -> None:
    """Write `module` (its `register(registry)` adds plugin `plugin`, default the
    module's name) and its dist-info into `root`, and put `root` first on the
    PYTHONPATH that nodes started afterwards inherit."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist = module.replace("_", "-")
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[starling.plugins]\n{plugin or module} = {module}:register\n")
    paths = [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
