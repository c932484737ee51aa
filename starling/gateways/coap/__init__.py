"""emqx_coap: CoAP clients publish and observe MQTT topics (docs/gateways.md).

Sans-IO pieces (`requests`, `pubsub`) hold the URL scheme and the /ps topic
tree; `sessions`, `site` and `transport` are the asyncio adapter on aiocoap,
shared with emqx_lwm2m where LwM2M rides on CoAP (`transport`, `hub`).
"""
