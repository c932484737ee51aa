"""The banned table: clients refused at CONNECT (EMQ X v3 `emqx_banned`, facts §5.12).

A ban is keyed by (`as`, `who`), `as` being ``client_id``, ``username`` or
``ip_address``.  All three kinds are enforced at CONNECT (EMQ X v3 looked IP
bans up under the wrong key and never enforced those made through the API;
we do).  `until` is an epoch time in seconds, or None for "never expires":
an expired ban is ignored at once by `match` and removed by `sweep`, which
the broker's housekeeping calls every second.

Adding a ban calls the `on_ban` callback, with which the broker closes the
connections the new ban covers.  The table does no I/O: it lives in memory
until a store is attached (`attach`, the same shape as the apps registry's),
after which every change is written through as a JSON row, so bans can
outlive a restart once the node wires it.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

CLIENT_ID: Final = "client_id"
USERNAME: Final = "username"
IP_ADDRESS: Final = "ip_address"
#: The `as` values of EMQ X v3, in its error message's order.
BAN_KINDS: tuple[str, ...] = (CLIENT_ID, USERNAME, IP_ADDRESS)
#: The store's table (kv) for bans.
TABLE: Final = "banned"


def normalize_ip(address: str) -> str:
    """The canonical text of an IP address ("::ffff:10.0.0.1" is "10.0.0.1");
    anything that is not an address is returned unchanged."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass(frozen=True, slots=True)
class Ban:
    """One row of the table.  `as` is a Python keyword, hence `kind`."""

    kind: str  #: client_id | username | ip_address
    who: str
    reason: str | None = None
    desc: str | None = None
    by: str | None = None
    #: Epoch seconds after which the ban no longer applies; None = never.
    until: float | None = None
    #: When the ban was made (epoch seconds).
    at: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in BAN_KINDS:
            raise ValueError(f"ban kind must be one of {list(BAN_KINDS)}, not {self.kind!r}")
        if self.kind == IP_ADDRESS:
            object.__setattr__(self, "who", normalize_ip(self.who))

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.who)

    def expired(self, now: float) -> bool:
        return self.until is not None and self.until <= now

    def to_json(self) -> str:
        return json.dumps({"as": self.kind, "who": self.who, "reason": self.reason,
                           "desc": self.desc, "by": self.by, "until": self.until,
                           "at": self.at})

    @classmethod
    def from_json(cls, text: str) -> Ban:
        row = json.loads(text)
        return cls(row["as"], row["who"], row.get("reason"), row.get("desc"), row.get("by"),
                   row.get("until"), row.get("at") or 0.0)


def store_key(kind: str, who: str) -> str:
    """The row key of a ban in the store's `banned` table."""
    return f"{kind}:{who}"


class Banned:
    def __init__(self, on_ban: Callable[[Ban], None] | None = None) -> None:
        self._bans: dict[tuple[str, str], Ban] = {}
        #: (until, kind, who) of bans that expire, soonest first; stale entries
        #: (the ban was deleted or replaced) are skipped when popped.
        self._expiry: list[tuple[float, str, str]] = []
        self._save: Callable[[str, str, str], None] | None = None
        self._delete: Callable[[str, str], None] | None = None
        self.on_ban = on_ban
        #: CONNECTs refused because of a ban, since start.
        self.refused = 0
        #: Connections closed because a ban was made while they were connected.
        self.kicked = 0

    def attach(self, stored: Mapping[str, str], save: Callable[[str, str, str], None],
               delete: Callable[[str, str], None]) -> None:
        """Hand the table to a store: load the rows it holds (key → JSON, as
        `save` wrote them) and from now on write every change back with
        ``save(TABLE, key, json)`` / ``delete(TABLE, key)``."""
        for text in stored.values():
            self._index(Ban.from_json(text))
        self._save = save
        self._delete = delete

    def apply_row(self, key: str, text: str | None) -> None:
        """A ban made or lifted on another node of the cluster: in force here too
        (connections it covers are closed), without writing it back."""
        if text is None:
            kind, _, who = key.partition(":")
            self._bans.pop((kind, who), None)
            return
        ban = Ban.from_json(text)
        self._index(ban)
        if self.on_ban is not None and not ban.expired(time.time()):
            self.on_ban(ban)

    def _index(self, ban: Ban) -> None:
        self._bans.pop(ban.key, None)  # a replaced ban moves to the end
        self._bans[ban.key] = ban
        if ban.until is not None:
            heapq.heappush(self._expiry, (ban.until, ban.kind, ban.who))

    def _forget(self, kind: str, who: str) -> None:
        del self._bans[(kind, who)]
        if self._delete is not None:
            self._delete(TABLE, store_key(kind, who))

    # -- changes -------------------------------------------------------------------
    def add(self, ban: Ban) -> Ban:
        """Add or replace the ban of (kind, who); connections it covers are closed."""
        if not ban.at:
            ban = Ban(ban.kind, ban.who, ban.reason, ban.desc, ban.by, ban.until, time.time())
        self._index(ban)
        if self._save is not None:
            self._save(TABLE, store_key(ban.kind, ban.who), ban.to_json())
        if self.on_ban is not None and not ban.expired(time.time()):
            self.on_ban(ban)
        return ban

    def delete(self, kind: str, who: str) -> bool:
        """Remove a ban; False if there was none."""
        if kind == IP_ADDRESS:
            who = normalize_ip(who)
        if (kind, who) not in self._bans:
            return False
        self._forget(kind, who)
        return True

    def sweep(self, now: float | None = None) -> int:
        """Remove expired bans; return how many went."""
        now = time.time() if now is None else now
        heap = self._expiry
        removed = 0
        while heap and heap[0][0] <= now:
            until, kind, who = heapq.heappop(heap)
            ban = self._bans.get((kind, who))
            if ban is not None and ban.until == until:
                self._forget(kind, who)
                removed += 1
        return removed

    # -- reads -----------------------------------------------------------------------
    def match(self, client_id: str, username: str | None, peerhost: str | None,
              now: float | None = None) -> Ban | None:
        """The ban, if any, that refuses this client (checked at CONNECT)."""
        bans = self._bans
        if not bans:
            return None
        now = time.time() if now is None else now
        for key in ((CLIENT_ID, client_id),
                    (USERNAME, username) if username is not None else None,
                    (IP_ADDRESS, normalize_ip(peerhost)) if peerhost else None):
            if key is None:
                continue
            ban = bans.get(key)
            if ban is not None and not ban.expired(now):
                return ban
        return None

    def get(self, kind: str, who: str) -> Ban | None:
        if kind == IP_ADDRESS:
            who = normalize_ip(who)
        ban = self._bans.get((kind, who))
        return ban if ban is not None and not ban.expired(time.time()) else None

    def all(self) -> list[Ban]:
        """Bans in force, oldest first."""
        now = time.time()
        return [ban for ban in self._bans.values() if not ban.expired(now)]
