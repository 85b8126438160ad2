"""Same protocol on both sides: relay the stream's bytes, only watching for usage.

A tap reads each event's name and, only when the event can carry usage, its
JSON; every other event is forwarded as the raw bytes the upstream sent. Two
changes are ever made: on chat streams the gateway always asks the upstream for
the usage chunk (billing needs it) and drops it again when the client did not
ask; and the event that carries the final usage (chat's usage chunk, Messages'
``message_delta``, Responses' ``response.completed``) is re-encoded with
``usage.cost`` added, when the tap has a price.

Taps present the same ``feed``/``finish``/``usage`` shape as the translators'
``StreamTranslator``, so the relay loop does not care which it holds.
"""

from __future__ import annotations

import ujson

from gateway.protocols.canonical import Price, Usage, dumpb
from gateway.protocols.sse import SSEDecoder, SSEEvent, encode_event
from gateway.protocols.usage import priced, usage_from_anthropic, usage_from_chat, usage_from_responses


class _Tap:
    """Common relay: complete events out as raw bytes (or re-encoded with their cost), a partial event held back."""

    def __init__(self, price: Price | None = None) -> None:
        self._decoder = SSEDecoder()
        self._price = price
        self.usage: Usage | None = None
        self.events = 0  # each event ~ one output token: the estimate for abandoned streams

    def feed(self, chunk: bytes) -> bytes:
        events = self._decoder.feed(chunk)
        if not events:
            return b""
        self.events += len(events)
        return self._relay(events)

    def finish(self) -> bytes:
        return self._relay(self._decoder.flush())

    def _relay(self, events: list[SSEEvent]) -> bytes:
        kept = [out for out in map(self._out, events) if out is not None]
        return kept[0] if len(kept) == 1 else b"".join(kept)

    @property
    def output_estimate(self) -> int:
        return self.events

    def _out(self, event: SSEEvent) -> bytes | None:
        """The bytes to relay for one event (usually ``event.raw``), or None to drop it."""
        raise NotImplementedError

    def _with_cost(self, event: SSEEvent, payload: dict, usage_object: dict) -> bytes:
        """The event re-encoded with ``usage.cost`` for the usage seen so far; raw if there is no price."""
        if self._price is None or self.usage is None:
            return event.raw
        priced(usage_object, self.usage, self._price)
        return encode_event(dumpb(payload), event.event)


class ChatTap(_Tap):
    def __init__(self, include_usage: bool, price: Price | None = None) -> None:
        super().__init__(price)
        self._include_usage = include_usage

    def _out(self, event: SSEEvent) -> bytes | None:
        if b'"usage"' not in event.data:
            return event.raw
        try:
            chunk = ujson.loads(event.data)
        except ValueError:
            return event.raw
        usage = usage_from_chat(chunk.get("usage")) if isinstance(chunk, dict) else None
        if usage is None:
            return event.raw
        self.usage = usage
        # Drop only a usage-only chunk the client never asked for; a chunk
        # that also carries choices (some providers do that) stays whole.
        if self._include_usage:
            return self._with_cost(event, chunk, chunk["usage"])
        return event.raw if chunk.get("choices") else None


class MessagesTap(_Tap):
    """``message_start`` carries input and cache counts, each ``message_delta`` the cumulative rest: merged."""

    def __init__(self, price: Price | None = None) -> None:
        super().__init__(price)
        self._raw_usage: dict = {}

    def _out(self, event: SSEEvent) -> bytes | None:
        name = event.event
        if name != "message_start" and name != "message_delta":
            return event.raw
        try:
            payload = ujson.loads(event.data)
            source = payload["message"]["usage"] if name == "message_start" else payload["usage"]
        except (ValueError, TypeError, KeyError):
            return event.raw
        if not isinstance(source, dict):
            return event.raw
        self._raw_usage.update((k, v) for k, v in source.items() if v is not None)
        self.usage = usage_from_anthropic(self._raw_usage)
        return event.raw if name == "message_start" else self._with_cost(event, payload, source)


class ResponsesTap(_Tap):
    _FINAL = ("response.completed", "response.incomplete", "response.failed")

    def _out(self, event: SSEEvent) -> bytes | None:
        name = event.event
        data = event.data
        if not (name in self._FINAL or (name is None and b'"response.' in data and b'"usage"' in data)):
            return event.raw
        try:
            payload = ujson.loads(data)
            usage_object = payload["response"]["usage"]
        except (ValueError, TypeError, KeyError):
            return event.raw
        usage = usage_from_responses(usage_object)
        if usage is None:
            return event.raw
        self.usage = usage
        return self._with_cost(event, payload, usage_object)


def make_tap(protocol: str, include_usage: bool, price: Price | None = None) -> _Tap:
    """The tap for a same-protocol stream; ``price`` turns on ``usage.cost`` in the final usage event."""
    if protocol == "chat":
        return ChatTap(include_usage, price)
    if protocol == "messages":
        return MessagesTap(price)
    if protocol == "responses":
        return ResponsesTap(price)
    raise ValueError(f"no pass-through tap for {protocol!r}")

