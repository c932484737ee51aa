"""Pages: what a list costs, and how a page is cut from several nodes' lists.

A page is built in chunks of `CHUNK` rows with the event loop let run in between,
so even a 10,000-row page (EMQ X's default `_limit`) never holds the loop for
more than a chunk's worth of work; a scan over every client (a filter on the user
name) looks at `SCAN_CHUNK` ids between yields.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

#: Rows built between two yields to the event loop (about a millisecond of work).
CHUNK = 100
#: Client ids looked at by a scan between two yields.
SCAN_CHUNK = 2000

#: Offsets beyond this are past the end of any list (islice takes up to sys.maxsize).
MAX_OFFSET = sys.maxsize - 2 * CHUNK

Row = dict[str, Any]
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class PageSpec:
    """EMQ X's `_page` (from 1) and `_limit`."""

    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


@dataclass(slots=True)
class Page:
    """One page of a list: `count` is the whole list's length (every answering node's).
    `failed` names the nodes that did not answer: ``[{"node", "error"}]``."""

    rows: list[Row]
    page: int
    limit: int
    count: int
    failed: list[Row] = field(default_factory=list)


async def pause() -> None:
    """Let the event loop serve everything else that is ready (sockets, timers)."""
    await asyncio.sleep(0)


async def build_rows(fetch: Callable[[int, int], Sequence[S]], render: Callable[[S], Row],
                     offset: int, limit: int) -> list[Row]:
    """Rows `offset .. offset+limit` of a list read by `fetch(offset, n)`, rendered, in
    chunks.  Entries may come and go between chunks (as between two pages)."""
    rows: list[Row] = []
    if offset > MAX_OFFSET:
        return rows  # past any end (and beyond what islice takes)
    while len(rows) < limit:
        want = min(CHUNK, limit - len(rows))
        part = fetch(offset + len(rows), want)
        rows.extend(render(s) for s in part)
        if len(part) < want:
            break
        await pause()
    return rows


async def render_rows(items: Sequence[S], render: Callable[[S], Row]) -> list[Row]:
    """`render` over `items`, in chunks."""
    rows: list[Row] = []
    for i in range(0, len(items), CHUNK):
        if i:
            await pause()
        rows.extend(render(s) for s in items[i:i + CHUNK])
    return rows


async def scan(ids: Sequence[str], read: Callable[[Sequence[str]], Sequence[tuple[str, S]]],
               keep: Callable[[S], bool]) -> list[str]:
    """The ids whose value (`read` gives (id, value) for the ids still there) `keep`
    accepts, looking at `SCAN_CHUNK` ids between yields."""
    found: list[str] = []
    for i in range(0, len(ids), SCAN_CHUNK):
        if i:
            await pause()
        found.extend(cid for cid, value in read(ids[i:i + SCAN_CHUNK]) if keep(value))
    return found


def windows(counts: Sequence[int], offset: int, limit: int) -> list[tuple[int, int]]:
    """Where a page of the concatenation of several lists falls in each: for list i,
    (offset in it, rows to take), (0, 0) when the page takes nothing from it."""
    out: list[tuple[int, int]] = []
    start = 0
    remaining = limit
    for count in counts:
        end = start + count
        if remaining > 0 and offset < end:
            first = max(0, offset - start)
            take = min(count - first, remaining)
            out.append((first, take))
            remaining -= take
        else:
            out.append((0, 0))
        start = end
    return out
