"""Same protocol on both sides: relay the stream's bytes, only watching for usage.

A tap reads each event's name and, only when the event can carry usage, its
JSON; every other event is forwarded as the raw bytes the upstream sent. Two
changes are ever made: on chat streams the gateway always asks the upstream for
the usage chunk (billing needs it) and drops it again when the client did not
ask; and the event that carries the final usage (chat's usage chunk, Messages'
``message_delta``, Responses' ``response.completed``) is re-encoded with
``usage.cost`` added, when the tap has a price. A stream that turns out not to
be what it claims ends with the protocol's error event (see ``_Tap``).

Most events need none of that, so a chunk made only of ordinary events
(``_plain``: split at its blank lines, each block checked by its ends and
a few searches, all in C) is relayed as it came, its events only counted: no
event objects, no parsing. (A compiled ``fullmatch`` did the same checks at
~30 instructions per byte in ``sre``; these cost a few hundred per event.) Anything else (a partial event, CR line ends,
the final or usage event, a possible error) goes through the decoder, which
judges it exactly as before; the fast path only ever takes chunks the
decoder would have relayed unchanged.

Taps present the same ``feed``/``finish``/``usage`` shape as the translators'
``StreamTranslator``, so the relay loop does not care which it holds.
"""

from __future__ import annotations

import orjson

from gateway.protocols.canonical import Price, Usage, dumpb
from gateway.protocols.error_bodies import stream_error_frame
from gateway.protocols.gemini_stream import line_safe
from gateway.protocols.names import Protocol
from gateway.protocols.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent, encode_event
from gateway.protocols.stream_tap import StreamTap
from gateway.protocols.stream_check import is_error_payload, well_formed
from gateway.protocols.usage import (
    priced,
    usage_from_anthropic,
    usage_from_chat,
    usage_from_gemini,
    usage_from_responses,
)


# Event boundaries a chunk that is not plain as a whole is tried at, from its end: a stream's usage and
# final events (chat: usage, [DONE]; Messages: message_delta, message_stop) come last.
_HEAD_TRIES = 3


def _blocks(chunk: bytes) -> list[bytes] | None:
    """The event blocks of a chunk of whole, LF-framed events without a CR (the decoder would fold one),
    or None. A block that is empty or holds a stray blank line fails the callers' checks."""
    if not chunk.endswith(b"\n\n") or chunk.find(b"\r") >= 0:
        return None
    blocks = chunk.split(b"\n\n")
    if blocks.pop():  # not empty after the last blank line: an odd run of LFs at the end ("}\n\n\n")
        return None
    return blocks


def _named_plain(chunk: bytes, read: tuple[bytes, ...]) -> int:
    """Events if ``chunk`` is only ``event: NAME\ndata: {...}\n\n`` events, their payloads one line from "{"
    to "}" (``well_formed``), no NAME starting with one of ``read`` (the names the tap looks at); else 0."""
    blocks = _blocks(chunk)
    if blocks is None:
        return 0
    for block in blocks:
        line_end = block.find(b"\n")
        if (line_end < 0 or not block.startswith(b"event: ") or not block.startswith(b"data: {", line_end + 1)
                or not block.endswith(b"}") or block.find(b"\n", line_end + 1) >= 0):
            return 0
        name = block[7:line_end]
        if name.startswith(read):
            return 0
    return len(blocks)


class _Tap:
    """Common relay: complete events out as raw bytes (or re-encoded with their cost), a partial event held back.

    It also judges the stream (contract §4): an event that is not well formed
    or over ``max_event_bytes``, or an end without the protocol's final event,
    ends the client's stream with the protocol's error event; the node's own
    error event is relayed and ends it too. Either way ``upstream_error`` says
    why, and the relay stops reading.
    """

    def __init__(self, price: Price | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._decoder = SSEDecoder(max_event_bytes)
        self._max_event_bytes = max_event_bytes
        self._price = price
        self._protocol = Protocol.CHAT
        self.usage: Usage | None = None
        self.events = 0  # each event ~ one output token: the estimate for abandoned streams
        self.upstream_error: str | None = None
        self._complete = False  # the protocol's final event went by

    def feed(self, chunk: bytes) -> bytes:
        if self.upstream_error is not None:
            return b""
        head = b""
        if self._decoder.idle and len(chunk) <= self._max_event_bytes:
            plain = self._plain(chunk)
            if plain:
                self.events += plain
                return chunk
            cut, plain = self._plain_head(chunk)
            if plain:  # a burst's last read: ordinary events, then the usage or final ones; decode only those
                self.events += plain
                head, chunk = chunk[:cut], chunk[cut:]
        events = self._decoder.feed(chunk)
        out = self._relay(events) if events else b""
        if self._decoder.overflowed and self.upstream_error is None:
            out += self._fail(f"the upstream sent a stream event over {self._max_event_bytes} bytes")
        return head + out if head else out

    def finish(self) -> bytes:
        if self.upstream_error is not None:
            return b""
        out = self._relay(self._decoder.flush())
        if not self._complete and self.upstream_error is None:
            out += self._fail("the upstream stream ended without its final event")
        return out

    def _relay(self, events: list[SSEEvent]) -> bytes:
        self.events += len(events)
        kept: list[bytes] = []
        for event in events:
            if self._judge(event):
                out = self._out(event)
                if out is not None:
                    kept.append(out)
            elif self.upstream_error is None:  # not well formed: stop before it
                kept.append(self._fail("the upstream sent a stream event that is not JSON"))
            else:  # the node's own error event: relayed as sent, and the end
                kept.append(event.raw)
            if self.upstream_error is not None:
                break
        return kept[0] if len(kept) == 1 else b"".join(kept)

    def _fail(self, reason: str) -> bytes:
        self.upstream_error = reason
        return stream_error_frame(self._protocol, 502, reason)  # the node failed: a 502 in the protocol's shape

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def output_tokens_estimate(self) -> int:
        """One token per relayed event (the events are not decoded, so their text is not counted)."""
        return self.events

    def _plain(self, chunk: bytes) -> int:
        """How many events ``chunk`` holds if it is whole events (LF framed, one-line JSON object payloads)
        that ``_judge`` would pass and ``_out`` relay unchanged; 0 sends it through the decoder (always safe)."""
        return 0

    def _plain_head(self, chunk: bytes) -> tuple[int, int]:
        """For a chunk that is not plain as a whole: where the longest plain run of whole events at its start
        ends and how many events it holds, trying the boundaries before its last ``_HEAD_TRIES`` events (a
        stream's special events come last); ``(0, 0)`` when there is none. ``_plain`` checks each head whole."""
        first = chunk.find(b"\n\n") + 2
        if first < 2 or not self._plain(chunk[:first]):  # (a stream's first read starts with a special event)
            return 0, 0
        end = len(chunk)
        for _ in range(_HEAD_TRIES):
            end = chunk.rfind(b"\n\n", 0, end - 2) + 2
            if end < 2:
                break
            plain = self._plain(chunk[:end])
            if plain:
                return end, plain
        return 0, 0

    def _judge(self, event: SSEEvent) -> bool:
        """True to relay the event; False if it is malformed or (``upstream_error`` set) the node's error."""
        raise NotImplementedError

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
    def __init__(self, include_usage: bool, price: Price | None = None,
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(price, max_event_bytes)
        self._include_usage = include_usage

    def _plain(self, chunk: bytes) -> int:
        # no usage chunk, no error object (``is_error_payload`` looks for ``error"``), no [DONE] (not an object)
        if chunk.find(b'"usage"') >= 0 or chunk.find(b'error"') >= 0:
            return 0
        blocks = _blocks(chunk)
        if blocks is None:
            return 0
        for block in blocks:
            if not block.startswith(b"data: {") or not block.endswith(b"}") or block.find(b"\n") >= 0:
                return 0
        return len(blocks)

    def _judge(self, event: SSEEvent) -> bool:
        data = event.data
        if data == b"[DONE]":
            self._complete = True
            return True
        if is_error_payload(data):
            self.upstream_error = "the node reported an error in its stream"
            return False
        return well_formed(data)

    def _out(self, event: SSEEvent) -> bytes | None:
        if event.data.find(b'"usage"') < 0:
            return event.raw
        try:
            chunk = orjson.loads(event.data)
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

    def __init__(self, price: Price | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(price, max_event_bytes)
        self._protocol = Protocol.MESSAGES
        self._raw_usage: dict = {}

    def _plain(self, chunk: bytes) -> int:
        return _named_plain(chunk, (b"error", b"message_"))

    def _judge(self, event: SSEEvent) -> bool:
        name = event.event
        if name == "error":
            self.upstream_error = "the node reported an error in its stream"
            return False
        if name == "message_stop":
            self._complete = True
        return well_formed(event.data)

    def _out(self, event: SSEEvent) -> bytes | None:
        name = event.event
        if name != "message_start" and name != "message_delta":
            return event.raw
        try:
            payload = orjson.loads(event.data)
            source = payload["message"]["usage"] if name == "message_start" else payload["usage"]
        except (ValueError, TypeError, KeyError):
            return event.raw
        if not isinstance(source, dict):
            return event.raw
        self._raw_usage.update((k, v) for k, v in source.items() if v is not None)
        self.usage = usage_from_anthropic(self._raw_usage)
        return event.raw if name == "message_start" else self._with_cost(event, payload, source)


_RESPONSES_READ = (b"error", b"response.completed", b"response.incomplete", b"response.failed")


class ResponsesTap(_Tap):
    _FINAL = ("response.completed", "response.incomplete", "response.failed")
    _FAILED = ("response.failed", "error")

    def __init__(self, price: Price | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(price, max_event_bytes)
        self._protocol = Protocol.RESPONSES

    def _plain(self, chunk: bytes) -> int:
        return _named_plain(chunk, _RESPONSES_READ)

    def _judge(self, event: SSEEvent) -> bool:
        if not well_formed(event.data):
            return False
        name = event.event
        if name is None:  # a provider that names events only inside the JSON (rare): parse it to know
            try:
                name = orjson.loads(event.data).get("type")
            except (ValueError, AttributeError):
                return False
        if name in self._FAILED:
            self.upstream_error = "the node reported an error in its stream"
            return False
        if name in self._FINAL:
            self._complete = True
        return True

    def _out(self, event: SSEEvent) -> bytes | None:
        name = event.event
        data = event.data
        if not (name in self._FINAL or (name is None and data.find(b'"response.') >= 0 and data.find(b'"usage"') >= 0)):
            return event.raw
        try:
            payload = orjson.loads(data)
            usage_object = payload["response"]["usage"]
        except (ValueError, TypeError, KeyError):
            return event.raw
        usage = usage_from_responses(usage_object)
        if usage is None:
            return event.raw
        self.usage = usage
        return self._with_cost(event, payload, usage_object)


class GeminiTap(_Tap):
    """Every Gemini chunk repeats a cumulative ``usageMetadata``, so only the last one matters: the
    chunk with the finish reason is parsed (and re-encoded with ``usageMetadata.cost``); the others'
    usage bytes are kept and parsed once, only if the stream ends without a finish reason."""

    def __init__(self, price: Price | None = None, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._last_data: bytes | None = None
        self._usage: Usage | None = None
        super().__init__(price, max_event_bytes)
        self._protocol = Protocol.GEMINI

    def _judge(self, event: SSEEvent) -> bool:
        data = event.data
        if is_error_payload(data):
            self.upstream_error = "the node reported an error in its stream"
            return False
        if data.find(b'"finishReason"') >= 0:  # Gemini has no end event: its final candidate carries the reason
            self._complete = True
        return well_formed(data)

    def _out(self, event: SSEEvent) -> bytes | None:
        data = event.data
        if data.find(b'"usageMetadata"') < 0:
            return event.raw
        if data.find(b'"finishReason"') < 0:
            self._last_data = data
            return event.raw
        try:
            payload = orjson.loads(data)
            meta = payload["usageMetadata"]
        except (ValueError, TypeError, KeyError):
            return event.raw
        usage = usage_from_gemini(meta)
        if usage is None:
            return event.raw
        self.usage, self._last_data = usage, None
        return line_safe(self._with_cost(event, payload, meta))

    @property
    def usage(self) -> Usage | None:
        if self._last_data is not None:  # cut off before the last chunk: the newest usage seen, parsed once
            data, self._last_data = self._last_data, None
            try:
                parsed = usage_from_gemini(orjson.loads(data).get("usageMetadata"))
            except (ValueError, AttributeError):
                parsed = None
            if parsed is not None:
                self._usage = parsed
        return self._usage

    @usage.setter
    def usage(self, value: Usage | None) -> None:
        self._usage = value


def make_tap(protocol: Protocol, include_usage: bool, price: Price | None = None,
             max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> StreamTap:
    """The tap for a same-protocol stream; ``price`` turns on ``usage.cost`` in the final usage event."""
    if protocol == Protocol.CHAT:
        return ChatTap(include_usage, price, max_event_bytes)
    if protocol == Protocol.MESSAGES:
        return MessagesTap(price, max_event_bytes)
    if protocol == Protocol.RESPONSES:
        return ResponsesTap(price, max_event_bytes)
    if protocol == Protocol.GEMINI:
        return GeminiTap(price, max_event_bytes)
    raise ValueError(f"no pass-through tap for '{protocol}'")

