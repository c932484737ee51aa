"""Names on NATS: subjects, KV buckets and KV keys for one cluster.

Node names (``starling@10.0.0.1``), client ids and topics may hold characters
NATS forbids in a subject token (``.``, space, ``*``, ``>``) or in a KV key
(anything outside ``[-/_=.a-zA-Z0-9]``; Debian's 2.9.10 also never answers a
key with an empty token).  `token` escapes every byte outside
``[A-Za-z0-9-]`` as ``=XX``, which is valid in both; a token longer than
`MAX_TOKEN` becomes ``_`` and a SHA-256 (``_`` never appears in an escaped
token, so the two forms cannot collide).  Values carry the real strings, so
nothing needs the token to be reversible.

Every subject starts with ``starling.<cluster>.`` and every bucket with
``starling_<cluster>_``: nodes of two clusters on the same NATS servers
never see each other.
"""

from __future__ import annotations

import hashlib
import string

#: Longest escaped token used as is (subjects and keys stay well under NATS's
#: 4096-byte control line).
MAX_TOKEN = 200
_KEEP = frozenset((string.ascii_letters + string.digits + "-").encode())
#: What each byte becomes in a token.
_ESCAPED = tuple(chr(b) if b in _KEEP else f"={b:02X}" for b in range(256))


def token(text: str) -> str:
    """`text` as one subject token / KV key token."""
    raw = text.encode("utf-8")
    out = "".join([_ESCAPED[b] for b in raw])
    if not out:
        return "=="  # the empty string (a lone "=" cannot come from escaping)
    if len(out) > MAX_TOKEN:
        return "_" + hashlib.sha256(raw).hexdigest()
    return out


class Names:
    """Subjects and buckets of cluster `cluster`."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.prefix = f"starling.{cluster}"

    # -- subjects ------------------------------------------------------------------
    def forward(self, node: str) -> str:
        """Messages for `node`'s subscribers (batches from the other nodes)."""
        return f"{self.prefix}.fwd.{token(node)}"

    def rpc(self, node: str) -> str:
        """Calls to `node` (request/reply)."""
        return f"{self.prefix}.rpc.{token(node)}"

    def routes(self, node: str) -> str:
        """`node`'s route changes."""
        return f"{self.prefix}.routes.{token(node)}"

    @property
    def all_routes(self) -> str:
        return f"{self.prefix}.routes.*"

    # -- JetStream key-value buckets -------------------------------------------------
    def bucket(self, what: str) -> str:
        """Bucket `what` (nodes, clients, retained, tables) of this cluster."""
        return f"starling_{self.cluster}_{what}"
