"""Same protocol on both sides: relay the stream's bytes, only watching for usage.

A tap reads each event's name and, only when the event can carry usage, its
JSON; every event is forwarded as the raw bytes the upstream sent. The one
change ever made: on chat streams the gateway always asks the upstream for the
usage chunk (billing needs it) and drops it again when the client did not ask.

Taps present the same ``feed``/``finish``/``usage`` shape as the translators'
``StreamTranslator``, so the relay loop does not care which it holds.
"""

from __future__ import annotations

from typing import Any

import ujson

from gateway.protocols.canonical import Usage
from gateway.protocols.sse import SSEDecoder


def usage_from_openai(usage: Any) -> Usage | None:
    """Chat and embeddings ``usage``: prompt/completion tokens, cached in the details."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details") or {}
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                 int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0)


def usage_from_responses(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    return Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0),
                 int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0)


def usage_from_anthropic(usage: Any, into: Usage | None = None) -> Usage | None:
    """Anthropic counts cache reads apart from input; the canonical input includes them."""
    if not isinstance(usage, dict):
        return into
    result = into or Usage()
    cached = int(usage.get("cache_read_input_tokens") or 0)
    if "input_tokens" in usage:
        result.input_tokens = int(usage.get("input_tokens") or 0) + cached + \
            int(usage.get("cache_creation_input_tokens") or 0)
        result.cached_tokens = cached
    if "output_tokens" in usage:
        result.output_tokens = int(usage.get("output_tokens") or 0)
    return result


def usage_from_body(protocol: str, body: Any) -> Usage | None:
    """Usage of a whole (non-streamed) response body in its own protocol."""
    if not isinstance(body, dict):
        return None
    if protocol in ("chat", "embeddings"):
        return usage_from_openai(body.get("usage"))
    if protocol == "responses":
        return usage_from_responses(body.get("usage"))
    if protocol == "messages":
        return usage_from_anthropic(body.get("usage"))
    return None


class _Tap:
    """Common relay: complete events out as raw bytes, a partial event held back."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.usage: Usage | None = None
        self.events = 0  # each event ~ one output token: the estimate for abandoned streams

    def feed(self, chunk: bytes) -> bytes:
        events = self._decoder.feed(chunk)
        if not events:
            return b""
        self.events += len(events)
        kept = [event.raw for event in events if self._keep(event.event, event.data)]
        return kept[0] if len(kept) == 1 else b"".join(kept)

    def finish(self) -> bytes:
        events = self._decoder.flush()
        return b"".join(event.raw for event in events if self._keep(event.event, event.data))

    @property
    def output_estimate(self) -> int:
        return self.events

    def _keep(self, name: str | None, data: bytes) -> bool:
        raise NotImplementedError


class ChatTap(_Tap):
    def __init__(self, include_usage: bool) -> None:
        super().__init__()
        self._include_usage = include_usage

    def _keep(self, name: str | None, data: bytes) -> bool:
        if b'"usage"' not in data:
            return True
        try:
            chunk = ujson.loads(data)
        except ValueError:
            return True
        usage = usage_from_openai(chunk.get("usage")) if isinstance(chunk, dict) else None
        if usage is None:
            return True
        self.usage = usage
        # Drop only a usage-only chunk the client never asked for; a chunk
        # that also carries choices (some providers do that) stays whole.
        return self._include_usage or bool(chunk.get("choices"))


class MessagesTap(_Tap):
    def _keep(self, name: str | None, data: bytes) -> bool:
        if name == "message_start" or name == "message_delta":
            try:
                event = ujson.loads(data)
            except ValueError:
                return True
            source = event.get("message", {}).get("usage") if name == "message_start" else event.get("usage")
            self.usage = usage_from_anthropic(source, self.usage)
        return True


class ResponsesTap(_Tap):
    _FINAL = ("response.completed", "response.incomplete", "response.failed")

    def _keep(self, name: str | None, data: bytes) -> bool:
        if name in self._FINAL or (name is None and b'"response.' in data and b'"usage"' in data):
            try:
                event = ujson.loads(data)
            except ValueError:
                return True
            usage = usage_from_responses((event.get("response") or {}).get("usage"))
            if usage is not None:
                self.usage = usage
        return True


def make_tap(protocol: str, include_usage: bool) -> _Tap:
    if protocol == "chat":
        return ChatTap(include_usage)
    if protocol == "messages":
        return MessagesTap()
    if protocol == "responses":
        return ResponsesTap()
    raise ValueError(f"no pass-through tap for {protocol!r}")
