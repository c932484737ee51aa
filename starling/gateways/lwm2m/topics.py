"""emqx_lwm2m's topic templates: mountpoint + topic, then ``%e`` → endpoint name and
``%a`` → the device's IP address."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicTemplates:
    mountpoint: str = "lwm2m/%e/"
    command: str = "dn/#"
    response: str = "up/resp"
    notify: str = "up/notify"
    register: str = "up/resp"
    update: str = "up/resp"

    def expand(self, which: str, endpoint: str, address: str) -> str:
        template = self.mountpoint + str(getattr(self, which))
        return template.replace("%e", endpoint).replace("%a", address)
