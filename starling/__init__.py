"""Starling: an MQTT broker in Python with the EMQ X v3 management REST API."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
