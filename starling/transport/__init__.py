"""Asyncio shells: listeners and connections that carry bytes to the broker core."""

from __future__ import annotations

from .connection import MQTTConnection
from .listener import BindError, Listener, ListenerConfig, parse_bind
from .tls import TlsOptions
from .ws import WSConnection

__all__ = ["BindError", "Listener", "ListenerConfig", "MQTTConnection", "TlsOptions", "WSConnection",
           "parse_bind"]
