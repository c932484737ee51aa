"""Protocol gateways: clients that speak something other than MQTT, attached to
the broker as ordinary clients (docs/gateways.md)."""
