"""Build: the hot path compiled with mypyc when a C compiler is there.

Everything else is in pyproject.toml.  `starling.compiled.MODULES` lists the
modules compiled (each stays in the package as its ``.py`` too, the fallback).
Each extension is optional: without a working compiler (CC=false, no gcc) the
build goes on and installs the pure-Python package.  STARLING_PURE=1 at build
time skips compiling altogether.  Beside the extensions the build writes
`starling/compiled.json`, the SHA-256 of each compiled source: a compiled module
whose ``.py`` no longer matches is not used (starling/compiled.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = runpy.run_path(os.path.join(HERE, "starling", "compiled.py"))


def source(module: str) -> str:
    return os.path.join("starling", *module.split(".")[1:]) + ".py"


def digest(path: str) -> str:
    with open(os.path.join(HERE, path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


#: What mypyc compiles, hashed before it reads the sources.
SOURCES = {m: digest(source(m)) for m in SPEC["MODULES"]}


class BuildExt(build_ext):
    """build_ext, then the manifest of what was compiled, if all of it was."""

    def run(self) -> None:
        super().run()
        built = [ext for ext in self.extensions
                 if os.path.exists(self.get_ext_fullpath(ext.name))]
        if not self.extensions or len(built) < len(self.extensions):
            return  # nothing or not everything compiled: the pure-Python package
        lib = HERE if self.inplace else self.build_lib
        path = os.path.join(lib, "starling", SPEC["MANIFEST"])
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"modules": SOURCES}, f, indent=1)


def compiled_extensions() -> list:
    if os.environ.get("STARLING_PURE", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # mypy is in build-system.requires; a --no-build-isolation build may lack it
        print("setup.py: mypyc not available: the pure-Python package only", file=sys.stderr)
        return []
    # mypy follows the compiled modules' imports into the rest of the package, whose
    # third-party libraries (nats-py, httpx, ...) are not in the isolated build
    # environment: their errors there are silenced; the compiled modules themselves
    # are still checked.  A type error there fails the compile, not the install.
    try:
        extensions = mypycify(["--follow-imports=silent",
                               *(source(m) for m in SPEC["MODULES"])],
                              opt_level="3", group_name=SPEC["GROUP"])
    except SystemExit as exc:
        print(f"setup.py: mypyc could not compile the hot path ({exc}): the pure-Python "
              "package only", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True  # a failed compile leaves the pure-Python module in use
    return extensions


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": BuildExt})
