"""Every input the fuzzers kept (corpus/<target>/) or that once crashed a target
(crashers/<target>/) replays through its target: a regression test per file,
run without atheris."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import targets  # noqa: E402


def corpus_files() -> list[tuple[str, Path]]:
    found = []
    for kind in ("corpus", "crashers"):
        for name in sorted(targets.TARGETS):
            directory = HERE / kind / name
            if directory.is_dir():
                found += [(name, p) for p in sorted(directory.iterdir()) if p.is_file()]
    return found


FILES = corpus_files()


@pytest.fixture(scope="module", autouse=True)
def close_api_harness() -> Iterator[None]:
    yield
    while targets._api:
        targets._api.pop().close()


def test_every_target_has_a_corpus() -> None:
    names = {name for name, path in FILES if path.parent.parent.name == "corpus"}
    assert names == set(targets.TARGETS)


@pytest.mark.parametrize(("target", "path"), FILES,
                         ids=[f"{p.parent.parent.name}/{n}/{p.name[:16]}" for n, p in FILES])
def test_replay(target: str, path: Path) -> None:
    targets.TARGETS[target](path.read_bytes())
