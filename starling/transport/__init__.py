"""Asyncio shells: listeners and connections that carry bytes to the broker core."""

from __future__ import annotations

from .config import ListenerConfig
from .connection import MQTTConnection
from .listener import Listener, parse_bind
from .tls import TlsContext, TlsOptions
from .ws import WSConnection

__all__ = ["Listener", "ListenerConfig", "MQTTConnection", "TlsContext", "TlsOptions",
           "WSConnection", "parse_bind"]
