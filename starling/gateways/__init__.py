"""Protocol gateways: clients that do not speak MQTT join the broker as ordinary
clients (docs/gateways.md).  Each protocol is a subpackage: a sans-IO codec, a
protocol state machine, and a thin asyncio adapter loaded as an EMQ X plugin."""
