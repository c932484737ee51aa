"""`__all__` of each public package lists exactly what it exports (after httpx's
test_exported_members): nothing public is left out, nothing listed is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

PACKAGES = ["starling.mqtt", "starling.broker", "starling.transport", "starling.plugins"]
PACKAGES += ["starling.rules"]


def public_names(module: ModuleType) -> set[str]:
    """Names a `from module import *` user could reasonably expect: not private, not a
    submodule (bound by importing it), not the `from __future__ import annotations` flag."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, ModuleType) and value.__name__.startswith(module.__name__ + "."):
            continue
        if type(value).__module__ == "__future__":  # the `annotations` compiler flag
            continue
        names.add(name)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_all_matches_exported_names(package: str) -> None:
    module = importlib.import_module(package)
    listed = list(module.__all__)
    assert len(listed) == len(set(listed)), "duplicates in __all__"
    exported = public_names(module)
    assert set(listed) - exported == set(), "listed in __all__ but not defined"
    assert exported - set(listed) == set(), "public but missing from __all__"


@pytest.mark.parametrize("package", PACKAGES)
def test_star_import_gives_exactly_all(package: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(importlib.import_module(package).__all__)


def test_checker_notices_a_missing_name() -> None:
    fake = ModuleType("fake_pkg")
    fake.__all__ = ["a"]  # type: ignore[attr-defined]
    fake.a = 1  # type: ignore[attr-defined]
    fake.b = 2  # type: ignore[attr-defined]
    fake._private = 3  # type: ignore[attr-defined]
    fake.sub = ModuleType("fake_pkg.sub")  # type: ignore[attr-defined]
    assert public_names(fake) == {"a", "b"}
