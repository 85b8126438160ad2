"""Gemini streams for Gemini *clients*: canonical events -> ``streamGenerateContent`` chunks.

Gemini's stream is a sequence of whole ``GenerateContentResponse`` objects:
as SSE (``?alt=sse``: ``data: {...}`` events, what the google-genai SDK and
Gemini CLI ask for) or, without ``alt=sse``, as one JSON array whose elements
arrive one by one. The gateway always produces SSE; :class:`JsonArrayFramer`
re-frames it for array clients at the edge, moving each event's JSON bytes
as they are (a pass-through stream is still not re-encoded).

A function call is one whole part in Gemini, never a fragment, so the
renderer holds a call's argument fragments until the call is complete (the
next call, text, or the end of the stream) and sends it in one chunk. The
finish reason and ``usageMetadata`` (with ``cost``) go in the last chunk, as Gemini sends them.
"""

from __future__ import annotations

from gateway.protocols.canonical import (
    STOP_END,
    Finish,
    Price,
    StreamEnd,
    StreamError,
    StreamRenderer,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageUpdate,
    dumpb,
)
from gateway.protocols.error_bodies import stream_error_event
from gateway.protocols.gemini_client import FINISH_TO_GEMINI, call_args, call_part
from gateway.protocols.names import Protocol
from gateway.protocols.sse import SSEDecoder
from gateway.protocols.usage import priced, usage_to_gemini

_END = b"\r\n\r\n"  # Google frames its SSE with CRLF


def line_safe(data: bytes) -> bytes:
    """Escape U+2028/U+2029: the JS SDK (Gemini CLI) matches each event with a regex whose ``.``
    stops at them, so a raw one in a text would stall its stream."""
    if data.find(b"\xe2\x80") < 0:
        return data
    return data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")


class GeminiStreamRenderer(StreamRenderer):
    """Canonical events -> ``data: {GenerateContentResponse}`` SSE for a Gemini client."""

    def __init__(self, model: str, request_id: str, include_usage: bool = True, price: Price | None = None) -> None:
        super().__init__()
        self._price = price  # set: the last chunk's usageMetadata carries the cost
        self._tail = b',"modelVersion":' + dumpb(model) + b',"responseId":' + dumpb(request_id) + b"}"
        self._calls: dict[int, list] = {}  # key -> [id, name, [argument fragments]], not yet sent
        self._sent_calls = False
        self._stop = STOP_END
        self._usage = Usage()

    def _chunk(self, parts: list[dict], last: bool = False) -> None:
        candidate: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
        head = b'data: {"candidates":['
        if last:
            candidate["finishReason"] = FINISH_TO_GEMINI.get(self._stop, "STOP")
            self._out.append(head + line_safe(dumpb(candidate)) + b'],"usageMetadata":'
                             + dumpb(priced(usage_to_gemini(self._usage), self._usage, self._price)) + self._tail + _END)
        else:
            self._out.append(head + line_safe(dumpb(candidate)) + b"]" + self._tail + _END)

    def _call_parts(self) -> list[dict]:
        parts = [call_part(call_id, name, call_args("".join(fragments)))
                 for call_id, name, fragments in self._calls.values()]
        self._calls.clear()
        self._sent_calls = self._sent_calls or bool(parts)
        return parts

    def on_text(self, event: TextDelta) -> None:
        self.output_chars += len(event.text)
        parts = self._call_parts() if self._calls else []
        parts.append({"text": event.text})
        self._chunk(parts)

    def on_tool_start(self, event: ToolCallStart) -> None:
        if self._calls:  # the previous call is complete: send it now rather than at the end
            self._chunk(self._call_parts())
        self._calls[event.key] = [event.id, event.name, []]

    def on_tool_delta(self, event: ToolCallDelta) -> None:
        call = self._calls.get(event.key)
        if call is not None:
            self.output_chars += len(event.arguments)
            call[2].append(event.arguments)

    def on_usage(self, event: UsageUpdate) -> None:
        self._usage = event.usage

    def on_finish(self, event: Finish) -> None:
        self._stop = event.stop_reason

    def on_end(self, event: StreamEnd) -> None:
        parts = self._call_parts() if self._calls else []
        self._chunk(parts or [{"text": ""}], last=True)
        self.ended = True

    def on_error(self, event: StreamError) -> None:
        self._out.append(b"data: " + dumpb(stream_error_event(Protocol.GEMINI, event.status, event.message)[1]) + _END)
        self.ended = True


class JsonArrayFramer:
    """SSE bytes -> the elements of one JSON array, for ``streamGenerateContent`` without ``alt=sse``.

    Each event's data is a whole JSON object and is written as it is; the
    framer adds only ``[``, the separators and the closing ``]``.
    """

    __slots__ = ("_decoder", "_opened")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._opened = False

    def feed(self, sse: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._decoder.feed(sse):
            if not event.data:
                continue
            out.append(b",\r\n" if self._opened else b"[")
            out.append(event.data)
            self._opened = True
        return b"".join(out)

    def finish(self) -> bytes:
        tail = self.feed(b"\n\n")  # an unterminated last event
        return tail + (b"]" if self._opened else b"[]")
