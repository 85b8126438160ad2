"""Anthropic Messages streams: node events -> canonical events -> client events.

Wire format: ``event: <type>`` + ``data: {"type": <type>, ...}`` for
``message_start`` (message with ``usage.input_tokens``),
``content_block_start`` (``text`` / ``tool_use`` with ``input: {}`` /
``thinking``), ``content_block_delta`` (``text_delta``, ``input_json_delta``
with ``partial_json``, ``thinking_delta``, ``signature_delta``),
``content_block_stop``, ``message_delta`` (``stop_reason`` and cumulative
``usage.output_tokens``), ``message_stop``, ``ping`` and ``error``.
"""

from __future__ import annotations

import orjson

from gateway.protocols.anthropic import (
    STOP_FROM_ANTHROPIC,
    STOP_TO_ANTHROPIC,
)
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
    dumps,
)
from gateway.protocols.error_bodies import stream_error_event
from gateway.protocols.names import Protocol
from gateway.protocols.sse import SSEEvent, encode_event
from gateway.protocols.usage import priced, usage_from_anthropic, usage_to_anthropic


class MessagesStreamParser:
    """Anthropic SSE from a node -> canonical events; thinking deltas are dropped."""

    __slots__ = ("_emit", "_tool_blocks", "_raw_usage", "usage")

    def __init__(self, request_id: str, emit: Emit) -> None:
        self._emit = emit
        self._tool_blocks: set[int] = set()
        self._raw_usage: dict = {}
        self.usage: Usage | None = None

    def parse(self, event: SSEEvent) -> None:
        if not event.data:
            return
        obj = orjson.loads(event.data)
        kind = obj.get("type")
        emit = self._emit
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            delta_kind = delta.get("type")
            if delta_kind == "text_delta":
                if delta.get("text"):
                    emit(TextDelta(delta["text"]))
            elif delta_kind == "input_json_delta":
                index = obj.get("index", 0)
                if index in self._tool_blocks and delta.get("partial_json"):
                    emit(ToolCallDelta(index, delta["partial_json"]))
        elif kind == "content_block_start":
            block = obj.get("content_block") or {}
            index = obj.get("index", 0)
            if block.get("type") == "tool_use":
                self._tool_blocks.add(index)
                emit(ToolCallStart(index, block.get("id") or "", block.get("name") or ""))
                if block.get("input"):
                    emit(ToolCallDelta(index, dumps(block["input"])))
            elif block.get("type") == "text" and block.get("text"):
                emit(TextDelta(block["text"]))
        elif kind == "message_start":
            self._update_usage((obj.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            delta = obj.get("delta") or {}
            self._update_usage(obj.get("usage"))
            if delta.get("stop_reason"):
                emit(Finish(STOP_FROM_ANTHROPIC.get(delta["stop_reason"], STOP_END), delta.get("stop_sequence")))
        elif kind == "message_stop":
            emit(STREAM_END)
        elif kind == "error":
            error = obj.get("error") or {}
            status = 529 if error.get("type") == "overloaded_error" else 500
            emit(StreamError(error.get("message") or "upstream stream error", status))

    def _update_usage(self, usage: dict | None) -> None:
        """message_delta repeats only some fields (cumulative), so merge, then convert."""
        if not usage:
            return
        self._raw_usage.update((k, v) for k, v in usage.items() if v is not None)
        self.usage = usage_from_anthropic(self._raw_usage) or Usage()
        self._emit(UsageUpdate(self.usage))


class MessagesStreamRenderer(StreamRenderer):
    """Canonical events -> Anthropic SSE for a Messages client.

    ``message_start`` is sent lazily with the first content so that it carries
    whatever input usage the node reported up front (Gemini, Anthropic); nodes
    that report usage only at the end (Chat, Responses) get their input tokens
    into ``message_delta.usage``, which the Anthropic SDK merges.
    """

    def __init__(self, model: str, request_id: str, include_usage: bool, price: Price | None = None) -> None:
        super().__init__(price)
        self._model = model
        self._id = "msg_" + request_id
        self._started = False
        self._open: int | None = None  # index of the open content block
        self._open_is_text = False
        self._text_head = b""  # the open text block's delta framing, up to the text
        self._next_index = 0
        self._tool_blocks: dict[int, int] = {}
        self._stop = STOP_END
        self._stop_sequence: str | None = None
        self._usage = Usage()

    def _event(self, name: str, payload: dict) -> None:
        self._out.append(encode_event(dumpb(payload), name))

    def _start(self) -> None:
        self._started = True
        usage = usage_to_anthropic(self._usage)
        usage["output_tokens"] = 0
        self._event("message_start", {"type": "message_start", "message": {
            "id": self._id, "type": "message", "role": "assistant", "model": self._model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}})

    def _open_block(self, block: dict) -> int:
        if not self._started:
            self._start()
        self._close_block()
        index = self._open = self._next_index
        self._next_index += 1
        self._open_is_text = block["type"] == "text"
        if self._open_is_text:  # what every text delta of this block starts with: framed once, not per delta
            self._text_head = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                               b'"delta":{"type":"text_delta","text":' % index)
        self._event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        return index

    def _close_block(self) -> None:
        if self._open is not None:
            self._event("content_block_stop", {"type": "content_block_stop", "index": self._open})
            self._open = None
            self._open_is_text = False

    def on_text(self, event: TextDelta) -> None:
        if not self._open_is_text:
            self._open_block({"type": "text", "text": ""})
        self.output_chars += len(event.text)
        # = self._event("content_block_delta", {..., "index": ..., "delta": {"type": "text_delta", "text": ...}})
        self._out.append(self._text_head + dumpb(event.text) + b"}}\n\n")

    def on_tool_start(self, event: ToolCallStart) -> None:
        self._tool_blocks[event.key] = self._open_block(
            {"type": "tool_use", "id": event.id, "name": event.name, "input": {}})

    def on_tool_delta(self, event: ToolCallDelta) -> None:
        index = self._tool_blocks.get(event.key)
        if index is None:
            return  # a fragment for a call the node never opened: nothing to attach it to
        # Nodes stream calls one after another; a late fragment still goes to its
        # own block index, which the SDK's accumulator resolves by index.
        self.output_chars += len(event.arguments)
        self._event("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": "input_json_delta", "partial_json": event.arguments}})

    def on_usage(self, event: UsageUpdate) -> None:
        self._usage = event.usage

    def on_finish(self, event: Finish) -> None:
        self._stop = event.stop_reason
        self._stop_sequence = event.stop_sequence

    def on_end(self, event: StreamEnd) -> None:
        if not self._started:
            self._start()
        self._close_block()
        stop = STOP_TOOL_USE if self._tool_blocks and self._stop == STOP_END else self._stop
        self._event("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": STOP_TO_ANTHROPIC.get(stop, "end_turn"), "stop_sequence": self._stop_sequence},
            "usage": priced(usage_to_anthropic(self._usage), self._usage, self.price)})
        self._event("message_stop", {"type": "message_stop"})
        self.ended = True

    def on_error(self, event: StreamError) -> None:
        self._event("error", stream_error_event(Protocol.MESSAGES, event.status, event.message)[1])
        self.ended = True
