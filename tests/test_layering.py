"""Architecture rules, checked on the source with `ast` (nothing is imported).

    starling.mqtt       sans-IO protocol: imports nothing from the rest of Starling,
                        and no asyncio / socket / ssl / selectors
    starling.broker     the core: never the transport, API, management facade, node,
                        CLI, or sockets
    starling.mgmt       the management facade: never the API, node, CLI or transport
    outside a package   import `starling.broker` / `starling.mqtt` themselves, never
                        one of their submodules

Every import statement counts, including those under ``if TYPE_CHECKING:`` and
inside functions.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "starling"

IO_MODULES = {"asyncio", "socket", "ssl", "selectors"}
BROKER_FORBIDDEN = ("starling.transport", "starling.api", "starling.node", "starling.cli",
                    "starling.mgmt", "socket")
#: The management facade serves the API; it never depends on it, on sockets or on the node.
MGMT_FORBIDDEN = ("starling.api", "starling.node", "starling.cli", "starling.transport")
FACADES = ("starling.broker", "starling.mqtt")


@dataclass(frozen=True)
class Import:
    module: str  #: absolute dotted name of what is imported
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def submodules(package: str) -> set[str]:
    """Names of the modules and subpackages of a starling package, on disk."""
    directory = ROOT.joinpath(*package.split("."))
    names = {p.stem for p in directory.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in directory.glob("*/__init__.py")}
    return names


def imports(source: str, module: str, package: bool) -> list[Import]:
    """Every import in `source`, resolved to absolute names.  ``from X import y`` yields
    X, and also X.y when y is a submodule of a starling package."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(target, node.lineno))
            if target == "starling" or target.startswith("starling."):
                subs = submodules(target) if ROOT.joinpath(*target.split(".")).is_dir() else set()
                found += [Import(f"{target}.{alias.name}", node.lineno)
                          for alias in node.names if alias.name in subs]
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module: str, package: bool, source: str) -> list[str]:
    out: list[str] = []
    for imp in imports(source, module, package):
        where = f"{module}:{imp.line} imports {imp.module}"
        top = imp.module.split(".")[0]
        if within(module, "starling.mqtt"):
            if within(imp.module, "starling") and not within(imp.module, "starling.mqtt"):
                out.append(f"{where}: the protocol layer must not import the rest of Starling")
            if top in IO_MODULES:
                out.append(f"{where}: the protocol layer is sans-IO")
        if within(module, "starling.broker"):
            for forbidden in BROKER_FORBIDDEN:
                if within(imp.module, forbidden):
                    out.append(f"{where}: the broker core must not depend on {forbidden}")
        if within(module, "starling.mgmt"):
            for forbidden in MGMT_FORBIDDEN:
                if within(imp.module, forbidden):
                    out.append(f"{where}: the management facade must not depend on {forbidden}")
        for facade in FACADES:
            inside = within(module, facade)
            if not inside and imp.module.startswith(facade + "."):
                out.append(f"{where}: import from {facade} itself, not a submodule")
    return out


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_source_tree_found() -> None:
    names = {module_name(p) for p in source_files()}
    assert {"starling.mqtt", "starling.mqtt.decoder", "starling.broker",
            "starling.broker.router", "starling.transport"} <= names


@pytest.mark.parametrize("path", source_files(), ids=lambda p: module_name(p))
def test_layering(path: Path) -> None:
    problems = violations(module_name(path), is_package(path), path.read_text("utf-8"))
    assert problems == []


# -- the checker itself must be able to fail ----------------------------------------------

@pytest.mark.parametrize(("module", "package", "source"), [
    ("starling.mqtt.decoder", False, "import asyncio"),
    ("starling.mqtt.decoder", False, "from socket import socket"),
    ("starling.mqtt.decoder", False, "import ssl.SSLContext"),
    ("starling.mqtt.decoder", False, "import selectors"),
    ("starling.mqtt.decoder", False, "from starling.broker import Message"),
    ("starling.mqtt.decoder", False, "from ..broker import Message"),
    ("starling.mqtt", True, "from .. import config"),
    ("starling.mqtt.encoder", False, "def f():\n    from starling.config import Config\n"),
    ("starling.broker.channel", False, "from starling.transport import Listener"),
    ("starling.broker.channel", False, "from ..transport.connection import MQTTConnection"),
    ("starling.broker.channel", False, "from starling import node"),
    ("starling.broker.channel", False, "from starling import cli"),
    ("starling.broker.channel", False, "import starling.api.handlers"),
    ("starling.broker.channel", False, "import socket"),
    ("starling.broker.channel", False, "from typing import TYPE_CHECKING\n"
                                       "if TYPE_CHECKING:\n    from starling.node import Node\n"),
    ("starling.broker.channel", False, "from starling.mqtt.properties import PropertyId"),
    ("starling.broker.channel", False, "from starling.mqtt import properties"),
    ("starling.transport.connection", False, "from starling.broker.router import Router"),
    ("starling.transport.connection", False, "from ..broker.session import Session"),
    ("starling.transport.connection", False, "from ..broker import session"),
    ("starling.broker.queries", False, "from starling.mgmt import fields"),
    ("starling.mgmt.facade", False, "from starling.api import ApiContext"),
    ("starling.mgmt.local", False, "from ..node import Node"),
    ("starling.mgmt.clients", False, "from starling.broker.queries import BrokerQueries"),
    ("starling.node", False, "from .broker.options import BrokerOptions"),
    ("starling.node", False, "import starling.mqtt.decoder"),
    ("starling.cli", False, "from starling.mqtt.topics import matches"),
])
def test_checker_flags(module: str, package: bool, source: str) -> None:
    assert violations(module, package, source)


@pytest.mark.parametrize(("module", "package", "source"), [
    ("starling.mqtt.decoder", False, "from .errors import MalformedPacket"),
    ("starling.mqtt", True, "from .decoder import Decoder"),
    ("starling.mqtt.decoder", False, "from collections.abc import Callable"),
    ("starling.broker.channel", False, "from starling.mqtt import PropertyId, encode"),
    ("starling.broker.channel", False, "import asyncio"),
    ("starling.broker.channel", False, "from . import metrics as m"),
    ("starling.broker.broker", False, "from .router import Router"),
    ("starling.broker", True, "from .broker import Broker"),
    ("starling.transport.connection", False, "from starling.broker import Broker, Channel"),
    ("starling.node", False, "from .broker import Broker, BrokerOptions"),
    ("starling.node", False, "from .transport import Listener"),
    ("starling.mgmt.local", False, "from starling.broker import Broker, BrokerQueries"),
    ("starling.api.app", False, "from starling.mgmt import Page, QueryError"),
])
def test_checker_allows(module: str, package: bool, source: str) -> None:
    assert violations(module, package, source) == []
