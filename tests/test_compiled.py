"""The compiled hot path (mypyc) and its pure-Python fallback (starling/compiled.py).

CI runs the suite twice: on the compiled build that `pip install -e .` made, and a
part of it with STARLING_PURE=1 (scripts/test).  `STARLING_EXPECT_HOT_PATH` tells
the first test which of the two this run must be on, so that a build that silently
fell back to pure Python cannot pass as the compiled one.  The other tests run the
decision itself in a fresh interpreter, on a package tree made in a temporary
directory (extensions are only looked at, never loaded, to decide).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import starling
from starling import compiled

PACKAGE = Path(starling.__file__).resolve().parent


def test_the_expected_hot_path_runs() -> None:
    expected = os.environ.get("STARLING_EXPECT_HOT_PATH")
    if not expected:
        pytest.skip("STARLING_EXPECT_HOT_PATH is not set (scripts/test sets it)")
    assert expected in ("compiled", "pure")
    assert compiled.COMPILED is (expected == "compiled"), compiled.describe()
    for name in compiled.MODULES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        assert module.__file__.endswith(".py") is (expected == "pure"), module.__file__


def test_starling_pure_imports_the_python_modules() -> None:
    """Whatever is installed, STARLING_PURE=1 runs every hot-path module from its .py."""
    code = ("import importlib, starling.compiled as c\n"
            "print(c.COMPILED, c.WHY_PURE)\n"
            "for m in c.MODULES: print(importlib.import_module(m).__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, STARLING_PURE="1"), check=True,
                         cwd=PACKAGE.parent).stdout.splitlines()
    assert out[0] == "False STARLING_PURE is set"
    assert len(out) == 1 + len(compiled.MODULES)
    assert all(path.endswith(".py") for path in out[1:]), out


def fake_package(root: Path, built: bool, manifest: bool = True) -> Path:
    """starling/compiled.py and the compiled modules' .py files under `root`; with
    `built`, an (empty, never loaded) extension file beside each, and the manifest."""
    pkg = root / "starling"
    pkg.mkdir()
    shutil.copy(PACKAGE / "compiled.py", pkg / "compiled.py")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    digests = {}
    for name in compiled.MODULES:
        parts = name.split(".")[1:]
        directory = pkg.joinpath(*parts[:-1])
        directory.mkdir(parents=True, exist_ok=True)
        source = directory / f"{parts[-1]}.py"
        source.write_text(f"# {name}\n")
        digests[name] = hashlib.sha256(source.read_bytes()).hexdigest()
        if built:
            (directory / f"{parts[-1]}{suffix}").write_bytes(b"")
    if built and manifest:
        (pkg / compiled.MANIFEST).write_text(json.dumps({"modules": digests}))
    return pkg


def decide(pkg: Path, **env: str) -> tuple[str, str]:
    """(COMPILED WHY_PURE, stderr) of that tree's compiled.py, run on its own."""
    code = ("import runpy, sys\n"
            f"ns = runpy.run_path({str(pkg / 'compiled.py')!r})\n"
            "print(ns['COMPILED'], ns['WHY_PURE'])")
    environ = {k: v for k, v in os.environ.items() if k != "STARLING_PURE"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(environ, **env), check=True)
    return res.stdout.strip(), res.stderr


def test_a_complete_build_is_used(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path, built=True)
    assert decide(pkg) == ("True", "")
    assert decide(pkg, STARLING_PURE="1")[0] == "False STARLING_PURE is set"
    assert decide(pkg, STARLING_PURE="0") == ("True", "")


def test_nothing_built_is_pure_without_a_word(tmp_path: Path) -> None:
    assert decide(fake_package(tmp_path, built=False)) == ("False not built", "")


def test_an_edited_source_is_not_run_compiled(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path, built=True)
    (pkg / "mqtt" / "decoder.py").write_text("# edited after the build\n")
    answer, warning = decide(pkg)
    assert answer == "False stale (source changed since the build: starling.mqtt.decoder)"
    assert "pure-Python hot path" in warning and "pip install ." in warning


def test_a_build_without_its_manifest_is_not_trusted(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path, built=True, manifest=False)
    assert decide(pkg)[0] == "False stale (no compiled.json from the build)"


def test_a_partial_build_is_not_used(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path, built=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (pkg / "broker" / f"router{suffix}").unlink()
    answer, warning = decide(pkg)
    assert answer == "False partly built (missing: starling.broker.router)"
    assert "pure-Python hot path" in warning


@pytest.mark.timeout(300)
def test_a_build_without_a_compiler_installs_pure_python(tmp_path: Path) -> None:
    """What `pip install .` runs (setup.py build_ext) where no C compiler works: the
    build succeeds, compiles nothing, and the package runs its pure-Python hot path."""
    root = PACKAGE.parent
    tree = tmp_path / "clone"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(root / name, tree / name)
    shutil.copytree(PACKAGE, tree / "starling", ignore=shutil.ignore_patterns(
        "__pycache__", "*.so", "*.pyd", compiled.MANIFEST))
    environ = {k: v for k, v in os.environ.items() if k not in ("STARLING_PURE", "PYTHONPATH")}
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"],
                           capture_output=True, text=True, cwd=tree, timeout=240,
                           env=dict(environ, CC="false"))
    assert build.returncode == 0, build.stderr[-2000:]
    assert "failed" in build.stderr  # it did try, and said so
    left = [p.name for p in (tree / "starling").rglob("*")
            if p.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
            or p.name == compiled.MANIFEST]
    assert left == []
    code = ("import starling.compiled as c, starling.mqtt as m\n"
            "print(c.describe())\n"
            "p, = m.Decoder().feed(bytes((0x30, 5, 0, 1, 0x74, 0x68, 0x69)))\n"
            "print(p.topic, p.payload, m.decoder.__file__.endswith('.py'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tree, env=environ, check=True)
    assert run.stdout.splitlines() == ["pure Python (not built)", "t b'hi' True"]
    assert run.stderr == ""
