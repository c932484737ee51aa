"""Protocol gateways: clients that do not speak MQTT join the broker as ordinary
clients (docs/gateways.md).  Each protocol is a subpackage: a sans-IO codec, a
protocol state machine, and a thin asyncio adapter loaded as an EMQ X plugin."""

from __future__ import annotations

from .coap.broker_hub import broker_hub
from .coap.plugin import CoapPlugin
from .lwm2m.plugin import Lwm2mPlugin
from .mqttsn.plugin import SnPlugin
from .stomp.plugin import StompPlugin

__all__ = ["CoapPlugin", "Lwm2mPlugin", "SnPlugin", "StompPlugin", "broker_hub"]
