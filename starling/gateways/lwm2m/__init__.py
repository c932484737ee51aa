"""emqx_lwm2m: LwM2M 1.0 device management bridged to MQTT (docs/gateways.md).

Sans-IO pieces (`tlv`, `content`, `objectdb`, `paths`, `commands`, `replies`,
`registration`) hold the protocol; `server` and `plugin` are the asyncio
adapter on aiocoap.
"""
