"""The documentation holds together: every relative link (and anchor) in
README.md, docs/ and benchmarks/README.md leads somewhere, every
``docs/<page>.md`` the docs or the code mention exists, and no page is a
placeholder ("to be written")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MENTION = re.compile(r"(?<![\w/.-])(docs/[\w/.-]+\.md)")
PLACEHOLDER = re.compile(r"to be (written|filled in)\b", re.IGNORECASE)
CODE_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped,
    spaces to '-'."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = CODE_BLOCK.sub("", page.read_text("utf-8"))
    found: set[str] = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE):
        base = slug(match.group(1))
        name, n = base, 1
        while name in found:  # repeated headings get -1, -2, ...
            name, n = f"{base}-{n}", n + 1
        found.add(name)
    return found


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_relative_links_resolve(page: Path) -> None:
    text = CODE_BLOCK.sub("", page.read_text("utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_no_placeholder_text(page: Path) -> None:
    lines = [line for line in page.read_text("utf-8").splitlines() if PLACEHOLDER.search(line)]
    assert not lines, lines


def test_every_mentioned_doc_page_exists() -> None:
    """`docs/x.md` written in a page, a docstring or a message must be a real page."""
    sources = [*PAGES, *(ROOT / "starling").rglob("*.py")]
    missing = sorted({f"{source.relative_to(ROOT)}: {name}"
                      for source in sources
                      for name in MENTION.findall(source.read_text("utf-8"))
                      if not (ROOT / name).exists()})
    assert not missing, missing
