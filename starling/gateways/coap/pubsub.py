"""The ``/ps`` topics of emqx_coap (an early draft-ietf-core-coap-pubsub), sans-IO.

A topic is created (POST of a link ``<name>;ct=N``) or comes to be on its
first publish; it keeps the last payload published on it, that payload's
Content-Format and its Max-Age, so a GET reads the last value as long as it
is fresh.  Deleting a topic deletes the topics below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: How long a value stays readable when the publish carried no Max-Age (RFC 7252's default).
DEFAULT_MAX_AGE = 60
_LINK = re.compile(r"^\s*<([^>]*)>(.*)$")


class PsError(ValueError):
    """A request the topic tree refuses (answered 4.00)."""


@dataclass(slots=True)
class PsTopic:
    content_format: int | None
    payload: bytes | None = None
    max_age: int = DEFAULT_MAX_AGE
    stored_at: float = 0.0

    def fresh_for(self, now: float) -> int:
        """Seconds the stored value is still fresh (0: stale or none)."""
        if self.payload is None:
            return 0
        return max(0, int(self.stored_at + self.max_age - now))


def parse_create(payload: bytes) -> tuple[str, int | None]:
    """A CREATE payload ``<topic>;ct=N`` → (topic, ct)."""
    match = _LINK.match(payload.decode("utf-8", "replace"))
    if match is None or not match.group(1).strip("/"):
        raise PsError("CREATE needs a link <topic>;ct=N")
    content_format = None
    for param in match.group(2).split(";"):
        key, _, value = param.strip().partition("=")
        if key == "ct":
            try:
                content_format = int(value.strip('"'))
            except ValueError:
                raise PsError(f"ct must be a number, not {value!r}") from None
    return match.group(1).strip("/"), content_format


class PsTopics:
    def __init__(self) -> None:
        self._topics: dict[str, PsTopic] = {}

    def __contains__(self, topic: str) -> bool:
        return topic in self._topics

    def create(self, topic: str, content_format: int | None) -> bool:
        """True when the topic is new."""
        if topic in self._topics:
            return False
        self._topics[topic] = PsTopic(content_format)
        return True

    def check(self, topic: str, content_format: int | None) -> None:
        """A publish in a format other than the topic's is refused."""
        current = self._topics.get(topic)
        if (current is not None and current.content_format is not None
                and content_format is not None and content_format != current.content_format):
            raise PsError(f"topic {topic!r} holds content format {current.content_format}, "
                          f"not {content_format}")

    def store(self, topic: str, payload: bytes, content_format: int | None,
              max_age: int | None, now: float) -> bool:
        """Keep the last value; True when the topic came to be with it."""
        self.check(topic, content_format)
        current = self._topics.get(topic)
        created = current is None
        if current is None:
            current = self._topics[topic] = PsTopic(content_format)
        current.payload = payload
        current.max_age = DEFAULT_MAX_AGE if max_age is None else max_age
        current.stored_at = now
        if current.content_format is None:
            current.content_format = content_format
        return created

    def read(self, topic: str) -> PsTopic | None:
        return self._topics.get(topic)

    def delete(self, topic: str) -> int:
        """Remove `topic` and every topic below it; how many went."""
        gone = [t for t in self._topics if t == topic or t.startswith(topic + "/")]
        for name in gone:
            del self._topics[name]
        return len(gone)
