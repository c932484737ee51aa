"""Fixtures for the ACL suite: nodes come from tests/conftest.py (`make_node`);
`acl_support` has the clients."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _dir in (str(_HERE.parent), str(_HERE)):  # `helpers`, `acl_support`
    if _dir not in sys.path:
        sys.path.insert(0, _dir)
