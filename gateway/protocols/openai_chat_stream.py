"""OpenAI Chat Completions streams: node chunks -> canonical events -> client chunks.

Wire format (``chat.completion.chunk``): every event is ``data: {json}``; the
first chunk's delta carries ``role``; text arrives as ``delta.content``; tool
calls as ``delta.tool_calls[{index, id?, type?, function: {name?, arguments}}]``
where only the first fragment of a call has ``id`` and ``name``; the last
choice chunk has ``finish_reason``; with ``stream_options.include_usage`` one
more chunk has ``choices: []`` and ``usage``; then ``data: [DONE]``.
"""

from __future__ import annotations

import time

import orjson

from gateway.protocols.canonical import (
    Price,
    STOP_END,
    STOP_TOOL_USE,
    STREAM_END,
    Emit,
    Finish,
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
from gateway.protocols.names import Protocol
from gateway.protocols.openai_chat import (
    FINISH_FROM_CHAT,
    FINISH_TO_CHAT,
)
from gateway.protocols.sse import SSEEvent, encode_event
from gateway.protocols.usage import priced, usage_from_chat, usage_to_chat

_DONE = b"[DONE]"


class ChatStreamParser:
    """Chat chunks from an OpenAI-compatible node -> canonical events."""

    __slots__ = ("_emit", "_started", "usage")

    def __init__(self, request_id: str, emit: Emit) -> None:
        self._emit = emit
        self._started: set[int] = set()
        self.usage: Usage | None = None

    def parse(self, event: SSEEvent) -> None:
        data = event.data
        if data == _DONE:
            self._emit(STREAM_END)
            return
        if not data:
            return
        chunk = orjson.loads(data)
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            self._emit(StreamError(message or "upstream stream error"))
            return
        emit = self._emit
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                emit(TextDelta(text))
            for position, call in enumerate(delta.get("tool_calls") or ()):
                # Some OpenAI-compatible servers omit "index" on single calls.
                key = call.get("index", position)
                fn = call.get("function") or {}
                if key not in self._started:
                    self._started.add(key)
                    emit(ToolCallStart(key, call.get("id") or f"call_{key}", fn.get("name") or ""))
                if fn.get("arguments"):
                    emit(ToolCallDelta(key, fn["arguments"]))
            reason = choice.get("finish_reason")
            if reason:
                emit(Finish(FINISH_FROM_CHAT.get(reason, STOP_END)))
        usage = chunk.get("usage")
        if usage:
            self.usage = usage_from_chat(usage) or Usage()
            emit(UsageUpdate(self.usage))


class ChatStreamRenderer(StreamRenderer):
    """Canonical events -> ``chat.completion.chunk`` SSE for a Chat client.

    Every chunk shares id/object/created/model, so that JSON prefix is encoded
    once and each event costs one ``dumps`` of its ``delta``. The finish chunk,
    the optional usage chunk and ``[DONE]`` are held until the end because
    other protocols report usage only after their stop reason.
    """

    def __init__(self, model: str, request_id: str, include_usage: bool, price: Price | None = None) -> None:
        super().__init__(price)
        self._include_usage = include_usage
        self._head = dumpb({"id": "chatcmpl-" + request_id, "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": model})[:-1]
        self._prefix = b"data: " + self._head + b',"choices":[{"index":0,"delta":'
        self._indexes: dict[int, int] = {}
        self._started = False
        self._stop = STOP_END
        self._usage = Usage()

    def _delta(self, delta: dict) -> None:
        if not self._started:
            self._started = True
            self._out.append(self._prefix + b'{"role":"assistant","content":""},"finish_reason":null}]}\n\n')
        self._out.append(self._prefix + dumpb(delta) + b',"finish_reason":null}]}\n\n')

    def on_text(self, event: TextDelta) -> None:
        self.output_chars += len(event.text)
        self._delta({"content": event.text})

    def on_tool_start(self, event: ToolCallStart) -> None:
        index = self._indexes[event.key] = len(self._indexes)
        self._delta({"tool_calls": [{"index": index, "id": event.id, "type": "function",
                                     "function": {"name": event.name, "arguments": ""}}]})

    def on_tool_delta(self, event: ToolCallDelta) -> None:
        index = self._indexes.get(event.key)
        if index is None:
            return  # a fragment for a call the node never opened: nothing to attach it to
        self.output_chars += len(event.arguments)
        self._delta({"tool_calls": [{"index": index, "function": {"arguments": event.arguments}}]})

    def on_usage(self, event: UsageUpdate) -> None:
        self._usage = event.usage

    def on_finish(self, event: Finish) -> None:
        self._stop = event.stop_reason

    def on_end(self, event: StreamEnd) -> None:
        stop = STOP_TOOL_USE if self._indexes and self._stop == STOP_END else self._stop
        finish = FINISH_TO_CHAT.get(stop, "stop")
        if not self._started:
            self._delta({"content": ""})
        self._out.append(self._prefix + b'{},"finish_reason":' + dumpb(finish) + b"}]}\n\n")
        if self._include_usage:
            self._out.append(b"data: " + self._head + b',"choices":[],"usage":'
                             + dumpb(priced(usage_to_chat(self._usage), self._usage, self.price)) + b"}\n\n")
        self._out.append(b"data: [DONE]\n\n")
        self.ended = True

    def on_error(self, event: StreamError) -> None:
        self._out.append(encode_event(dumpb(stream_error_event(Protocol.CHAT, event.status, event.message)[1])))
        self.ended = True
