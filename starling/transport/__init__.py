"""Asyncio shells: listeners and connections that carry bytes to the broker core."""

from __future__ import annotations

from .connection import MQTTConnection
from .fdlimit import raise_open_files_limit, warn_over_limit
from .listener import Listener, ListenerConfig, parse_bind
from .tls import TlsOptions
from .ws import WSConnection

__all__ = ["Listener", "ListenerConfig", "MQTTConnection", "TlsOptions", "WSConnection",
           "parse_bind", "raise_open_files_limit", "warn_over_limit"]
