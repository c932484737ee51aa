"""Asyncio shells: listeners and connections that carry bytes to the broker core."""

from __future__ import annotations

from .connection import MQTTConnection
from .listener import Listener, ListenerConfig, parse_bind

__all__ = ["Listener", "ListenerConfig", "MQTTConnection", "parse_bind"]
