"""Starling: an MQTT broker in Python with the EMQ X v3 management REST API."""

from __future__ import annotations

# First: decides, before any other module of the package is imported, whether the
# compiled hot path or the pure-Python one is imported (starling/compiled.py).
from . import compiled as _compiled  # noqa: F401

__version__ = "0.1.0"

__all__ = ["__version__"]
