"""The hot path, compiled or not: which modules `pip install .` compiles with mypyc,
and whether this process runs them compiled.

`setup.py` compiles `MODULES` into C extensions when it finds a C compiler (each
an optional extension: without a compiler, or if one fails to build, the package
installs as pure Python).  An extension module sits beside its ``.py`` file and
Python imports it first; the ``.py`` files stay, as the fallback:

- ``STARLING_PURE=1`` in the environment makes this process import the pure-Python
  modules even where compiled ones are installed;
- compiled modules whose ``.py`` source changed since the build (edited, or
  another commit checked out: the build records each source's SHA-256 in
  `MANIFEST`) are not used either: the pure modules run, with a warning on
  stderr, rather than code the source no longer says.

The compiled modules share one native library (``starling/hotpath__mypyc*.so``);
they are used all together or not at all.  This module must stay importable on
its own (setup.py reads `MODULES` from it without importing the package).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: Compiled with mypyc (strictly typed, no monkey-patching of their classes).
MODULES: tuple[str, ...] = (
    "starling.mqtt._primitives",
    "starling.mqtt.packets",
    "starling.mqtt.properties",
    "starling.mqtt.topics",
    "starling.mqtt.decoder",
    "starling.mqtt.encoder",
    "starling.broker.router",
    "starling.broker.message",
    # The cluster's forwarded messages (imported only by a clustered node).
    "starling.cluster.forwards",
    "starling.transport.lean",
)
#: The name of the library the compiled modules share (mypyc's "group").
GROUP = "starling.hotpath"
#: Written by the build beside the package's modules: {"modules": {name: sha256 of source}}.
MANIFEST = "compiled.json"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _paths(module: str) -> tuple[str, str]:
    """(directory, file stem) of a module of this package."""
    parts = module.split(".")[1:]
    return os.path.join(_PACKAGE_DIR, *parts[:-1]), parts[-1]


def _extension(directory: str, stem: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(directory, stem + suffix)
        if os.path.exists(path):
            return path
    return None


def _decide() -> tuple[bool, str]:
    """(compiled?, why not) for this process."""
    if os.environ.get("STARLING_PURE", "") not in ("", "0"):
        return False, "STARLING_PURE is set"
    missing = [m for m in MODULES if _extension(*_paths(m)) is None]
    if len(missing) == len(MODULES):
        return False, "not built"
    if missing:
        return False, "partly built (missing: " + ", ".join(missing) + ")"
    try:
        with open(os.path.join(_PACKAGE_DIR, MANIFEST), encoding="utf-8") as f:
            built: dict[str, str] = json.load(f)["modules"]
    except (OSError, ValueError, KeyError, TypeError):
        return False, f"stale (no {MANIFEST} from the build)"
    stale = []
    for module in MODULES:
        directory, stem = _paths(module)
        try:
            with open(os.path.join(directory, stem + ".py"), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue  # only the compiled module was installed: nothing to compare
        if built.get(module) != digest:
            stale.append(module)
    if stale:
        return False, "stale (source changed since the build: " + ", ".join(stale) + ")"
    return True, ""


class _PureFinder(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` (or ``.pyc``) of the compiled modules, never their extension."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        loaders = [(importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
                   (importlib.machinery.SourcelessFileLoader,
                    importlib.machinery.BYTECODE_SUFFIXES)]
        for entry in path or sys.path:
            spec = importlib.machinery.FileFinder(entry, *loaders).find_spec(fullname)
            if spec is not None:
                return spec
        return None


COMPILED, WHY_PURE = _decide()
if not COMPILED:
    sys.meta_path.insert(0, _PureFinder())
    if WHY_PURE.startswith(("stale", "partly")):
        print(f"starling: running the pure-Python hot path: the compiled one is {WHY_PURE}; "
              "rebuild it with `pip install .` (`-e .` for an editable install)", file=sys.stderr)


def describe() -> str:
    """One line for the log and `--version`: which hot path runs."""
    return "compiled (mypyc)" if COMPILED else f"pure Python ({WHY_PURE})"
