"""Architecture rules (docs/architecture.md), checked on the source with `ast`
(nothing is imported).

    the dependency graph  each package imports only the packages `DEPENDS_ON` lists
                          for it (a package not listed there is an error: place it)
    starling.mqtt         sans-IO protocol: imports nothing from the rest of Starling,
                          and no asyncio / socket / ssl / selectors
    starling.broker       the core: never the transport, API, management facade, node,
                          CLI, or sockets
    starling.mgmt         the management facade: never the API, node, CLI or transport
    outside a package     import the package itself (its facade), never one of its
                          submodules
    no cycles             no two modules import each other, directly or through
                          others (a package's __init__ re-exporting its own modules
                          aside)
    the client seam       outside broker/ and transport/, no module names `Channel`
                          or reads `broker.channels` or a channel's `.conn`

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

#: Every plugin package or module but the framework and the auth chain
#: (starling.plugins.recon, starling.plugins.retainer, ...), as one node of the graph.
FEATURE_PLUGINS = "starling.plugins.*"
_BASE = {"starling.mqtt", "starling.config"}
_CORE = _BASE | {"starling.store", "starling.broker"}
#: What extends the broker: the plugin framework (`starling.plugins`: `Plugin`, the
#: registry, config values) is how rules, the cluster and gateways plug in.
_EXTENSION = _CORE | {"starling.plugins"}
#: Which packages (and top-level modules) each may import, besides itself: the
#: graph of docs/architecture.md, lowest first.
DEPENDS_ON: dict[str, set[str]] = {
    "starling.mqtt": set(),
    "starling.config": set(),
    "starling.store": {"starling.mqtt"},
    "starling.broker": {"starling.mqtt", "starling.store"},
    "starling.transport": {"starling.broker", "starling.mqtt"},
    #: The plugin framework (starling/plugins/__init__ and plugins/framework).
    "starling.plugins": _CORE,
    #: The auth chain and each feature plugin hold their REST routes (the API's
    #: route table and errors, the facade's field names).
    "starling.plugins.auth": _CORE | {"starling.plugins", "starling.api", "starling.mgmt"},
    FEATURE_PLUGINS: _CORE | {"starling.plugins", "starling.api", "starling.mgmt"},
    "starling.rules": _EXTENSION,
    "starling.mgmt": _CORE | {"starling.plugins", "starling.rules"},
    #: The cluster answers the management facade's calls from other nodes.
    "starling.cluster": _EXTENSION | {"starling.mgmt"},
    #: Gateways listen with the transport's TLS contexts and bind addresses.
    "starling.gateways": _EXTENSION | {"starling.transport"},
    "starling.dashboard": set(),
    #: The API reads the plugin registry and the rule engine through their facades.
    #: ... and the transport's traces and bind errors.
    "starling.api": _CORE | {"starling.mgmt", "starling.rules", "starling.plugins",
                             "starling.dashboard", "starling.transport"},
    #: Each client's life in the log, from the hooks.
    "starling.client_log": {"starling.broker", "starling.mqtt"},
    "starling.datadir": set(),
    #: Which hot path runs (compiled or pure): decided first, by the package's __init__.
    "starling.compiled": set(),
    "starling.runtime_file": set(),
    "starling.ctl_client": set(),
    "starling.ctl_ops": {"starling.ctl_client"},
    "starling.ctl": {"starling.config", "starling.ctl_client", "starling.ctl_ops",
                     "starling.runtime_file"},
    "starling.node": _CORE | {"starling", "starling.transport", "starling.plugins",
                              "starling.plugins.auth", FEATURE_PLUGINS,
                              "starling.rules", "starling.cluster", "starling.gateways",
                              "starling.mgmt", "starling.api", "starling.dashboard",
                              "starling.client_log", "starling.datadir",
                              "starling.runtime_file", "starling.compiled"},
    #: ... and the cluster: `--workers` runs its supervisor, a failed join is reported.
    "starling.cli": {"starling", "starling.compiled", "starling.config", "starling.store",
                     "starling.node", "starling.ctl", "starling.datadir", "starling.cluster"},
    "starling.__main__": {"starling.cli"},
    "starling": {"starling.compiled"},
}
#: Packages whose submodules are private: other packages import the package itself.
FACADES = ("starling.broker", "starling.mqtt", "starling.store", "starling.transport",
           "starling.plugins", "starling.rules", "starling.cluster", "starling.gateways",
           "starling.mgmt", "starling.api", "starling.dashboard")
#: The cluster's modules a lone node loads (its facade, settings, errors, the
#: `--workers` supervisor): none of them may import NATS; only the other modules
#: of starling/cluster may, which `make_cluster` loads for a clustered node.
LONE_NODE_CLUSTER = ("starling.cluster", "starling.cluster.settings", "starling.cluster.errors",
                     "starling.cluster.workers")
#: Where the live client objects (`Channel`, `broker.channels`, `.conn`) may be named.
SEAM_INSIDE = ("starling.broker", "starling.transport")


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
                public = exported(target)
                found += [Import(f"{target}.{alias.name}", node.lineno)
                          for alias in node.names if alias.name in subs - public]
    return found


def exported(package: str) -> set[str]:
    """The names a package's `__all__` lists: a submodule listed there (``fields``
    of starling.mgmt) is part of the facade, imported through the package."""
    init = ROOT.joinpath(*package.split("."), "__init__.py")
    if not init.exists():
        return set()
    for node in ast.parse(init.read_text("utf-8")).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {elt.value for elt in getattr(node.value, "elts", [])
                    if isinstance(elt, ast.Constant) and isinstance(elt.value, str)}
    return set()


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def owner(name: str) -> str:
    """The package (or top-level module) of the graph a module belongs to."""
    if name == "starling.plugins" or within(name, "starling.plugins.framework"):
        return "starling.plugins"
    if within(name, "starling.plugins.auth"):
        return "starling.plugins.auth"
    if within(name, "starling.plugins"):
        return FEATURE_PLUGINS
    parts = name.split(".")
    return ".".join(parts[:2])


def facade_of(name: str) -> str | None:
    """The package that must be imported (not its modules) to reach `name` from
    outside it: the package for `FACADES`; for plugins, `starling.plugins` (the
    framework), `starling.plugins.auth`, or the feature plugin's own package."""
    parts = name.split(".")
    if within(name, "starling.plugins.framework"):
        return "starling.plugins"
    if within(name, "starling.plugins") and len(parts) > 2:
        return ".".join(parts[:3])
    return next((facade for facade in FACADES if within(name, facade)), None)


def violations(module: str, package: bool, source: str) -> list[str]:
    out: list[str] = []
    mine = owner(module)
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
        if top == "nats" and (not within(module, "starling.cluster")
                              or module in LONE_NODE_CLUSTER):
            out.append(f"{where}: a lone node never imports NATS: only starling/cluster's "
                       "modules loaded by make_cluster may")
        facade = facade_of(imp.module)
        if facade is not None and imp.module != facade and not within(module, facade):
            out.append(f"{where}: import from {facade} itself, not a submodule")
        if within(imp.module, "starling"):
            theirs = owner(imp.module)
            if mine not in DEPENDS_ON:
                out.append(f"{module}: a package the dependency graph does not place "
                           "(add it to DEPENDS_ON and docs/architecture.md)")
            elif theirs != mine and theirs not in DEPENDS_ON[mine]:
                out.append(f"{where}: {mine} may import only "
                           f"{', '.join(sorted(DEPENDS_ON[mine])) or 'nothing of Starling'}")
    return out


def seam_violations(module: str, source: str) -> list[str]:
    """Outside broker/ and transport/: no `Channel`, no `broker.channels`, no `.conn`
    (hooks, plugins, rules and the API see `ClientInfo` and snapshots)."""
    if any(within(module, inside) for inside in SEAM_INSIDE):
        return []
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if (isinstance(node, ast.Name) and node.id == "Channel") or \
                (isinstance(node, ast.alias) and node.name.split(".")[-1] == "Channel") or \
                (isinstance(node, ast.Attribute) and node.attr == "Channel"):
            out.append(f"{module}:{line}: names Channel (use the client seam: ClientInfo)")
        elif isinstance(node, ast.Attribute) and node.attr == "channels" and \
                _ends_with(node.value, "broker"):
            out.append(f"{module}:{line}: reads broker.channels (use Broker.connections(), "
                       "client_info())")
        elif isinstance(node, ast.Attribute) and node.attr == "conn" and \
                _names_a_client(node.value):
            out.append(f"{module}:{line}: reads a channel's .conn")
    return out


def _ends_with(node: ast.expr, name: str) -> bool:
    """Is `node` the name `name`, or an attribute access ending in it (`x.broker`)?"""
    return (isinstance(node, ast.Name) and node.id == name) or \
        (isinstance(node, ast.Attribute) and node.attr == name)


def _names_a_client(node: ast.expr) -> bool:
    """Does `node` name a channel or client (`channel`, `self.client`, `ch`)?"""
    name = node.id if isinstance(node, ast.Name) else \
        node.attr if isinstance(node, ast.Attribute) else ""
    return "channel" in name or "client" in name or name == "ch"


def module_graph() -> dict[str, set[str]]:
    """Module → the Starling modules it imports.  Left out: a package's __init__
    importing its own modules (that is its facade), and ``from . import sub``
    counted as the package itself (it imports only `sub`)."""
    paths = {module_name(p): p for p in source_files()}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = is_package(path)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            found = {imp.module for imp in imports(ast.unparse(node), name, package)}
            if isinstance(node, ast.ImportFrom):
                for target in list(found):
                    if target in paths and is_package(paths[target]) and all(
                            alias.name in submodules(target) for alias in node.names):
                        found.discard(target)
            graph[name] |= {target for target in found if target in paths and target != name
                            and not (package and within(target, name))}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


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


@pytest.mark.parametrize("path", source_files(), ids=lambda p: module_name(p))
def test_client_seam(path: Path) -> None:
    assert seam_violations(module_name(path), path.read_text("utf-8")) == []


def test_no_import_cycles() -> None:
    assert cycles(module_graph()) == []


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
    ("starling.broker.queries", False, "from starling.mgmt import fields"),
    ("starling.mgmt.facade", False, "from starling.api import ApiContext"),
    ("starling.mgmt.local", False, "from ..node import Node"),
    ("starling.mgmt.clients", False, "from starling.broker.queries import BrokerQueries"),
    # the dependency graph
    ("starling.store.sqlite", False, "from starling.broker import Message"),
    ("starling.rules.engine", False, "from starling.plugins.framework.registry import Plugin"),
    ("starling.rules.engine", False, "from starling.plugins.auth import AclFile"),
    ("starling.node", False, "from .plugins.auth.passwords import make"),
    ("starling.plugins.recon.plugin", False, "from starling.plugins.auth.passwords import make"),
    ("starling.plugins.framework.registry", False, "from starling.api import RouteTable"),
    ("starling.mgmt.local", False, "from starling.plugins.recon import ReconPlugin"),
    ("starling.ctl_ops", False, "from .ctl import ApiClient"),
    ("starling.plugins.recon", False, "from starling.rules import RuleEngine"),
    ("starling.api.app", False, "from starling.rules.engine import RuleEngine"),
    ("starling.api.app", False, "from starling.node import Node"),
    ("starling.node", False, "from .api.routes.configs import RuntimeConfig"),
    ("starling.ctl_ops", False, "from .node import Node"),
    ("starling.newthing", False, "from starling.broker import Broker"),
    ("starling.node", False, "import nats"),
    ("starling.cluster", True, "from nats.js.kv import KeyValue"),
    ("starling.cluster.settings", False, "import nats.errors"),
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
    ("starling.api.routes.rules", False, "from starling.mgmt import fields"),
    ("starling.plugins.recon", False, "from starling.broker import ClientInfo"),
    ("starling.mgmt.facade", False, "from starling.rules import RuleEngine"),
    ("starling.rules.plugin", False, "from starling.plugins import Plugin"),
    ("starling.node", False, "from .plugins.recon import ReconPlugin"),
    ("starling.node", False, "from .plugins.auth import AclFile"),
    ("starling.plugins.recon.routes", False, "from starling.api import RouteTable"),
    ("starling.plugins.recon.routes", False, "from .plugin import ReconPlugin"),
    ("starling.plugins.auth.ldap", False, "from ..framework import ConfigKey"),
    ("starling.ctl", False, "from .ctl_ops import add_commands"),
    ("starling.cluster.link", False, "import nats.errors"),
    ("starling.cluster", True, "from .link import Cluster"),
])
def test_checker_allows(module: str, package: bool, source: str) -> None:
    assert violations(module, package, source) == []


@pytest.mark.parametrize("source", [
    "from starling.broker import Channel",
    "def f(c: Channel) -> None: ...",
    "n = len(self.broker.channels)",
    "n = len(broker.channels)",
    "peer = channel.conn.peerhost",
    "peer = self.client.conn.peername",
])
def test_seam_checker_flags(source: str) -> None:
    assert seam_violations("starling.plugins.recon", source)
    assert seam_violations("starling.transport.connection", source) == []


def test_seam_checker_allows_other_connections() -> None:
    assert seam_violations("starling.plugins.auth.ldap", "self._local.conn = conn") == []


def test_cycle_checker_flags() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
