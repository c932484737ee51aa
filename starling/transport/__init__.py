"""Asyncio shells: listeners and connections that carry bytes to the broker core."""

from __future__ import annotations

from .config import ListenerConfig
from .connection import MQTTConnection
from .fdlimit import raise_open_files_limit, warn_over_limit
from .listener import BindError, Listener, parse_bind
from .tls import TlsContext, TlsOptions
from .trace import TraceError, Tracer
from .ws import WSConnection

__all__ = ["BindError", "Listener", "ListenerConfig", "MQTTConnection", "TlsContext",
           "TlsOptions", "TraceError", "Tracer", "WSConnection", "parse_bind",
           "raise_open_files_limit", "warn_over_limit"]
