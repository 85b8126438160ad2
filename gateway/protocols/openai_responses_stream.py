"""OpenAI Responses streams: node events -> canonical events -> client events.

Wire format: ``event: <type>`` + ``data: {"type": <type>, "sequence_number": n, ...}``.
A text message is ``response.output_item.added`` (message item) ->
``response.content_part.added`` (empty ``output_text``) ->
``response.output_text.delta``... -> ``response.output_text.done`` ->
``response.content_part.done`` -> ``response.output_item.done``; a tool call is
``response.output_item.added`` (function_call item) ->
``response.function_call_arguments.delta``... -> ``.done`` ->
``response.output_item.done``. The stream opens with ``response.created`` and
``response.in_progress`` and ends with ``response.completed`` (or
``response.incomplete``) carrying the whole response and its usage; there is
no ``[DONE]``.

A call of a tool the client declared as ``custom`` is rendered as a
``custom_tool_call`` item; its input is known only once the node's JSON
arguments are complete, so it is sent whole, as one
``response.custom_tool_call_input.delta`` and ``.done``, when the item closes.
Namespaced functions get their own ``name`` and ``namespace`` back
(``responses_tools.py``).
"""

from __future__ import annotations

import time

import orjson

from gateway.protocols.canonical import (
    Price,
    STOP_END,
    ClientTool,
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
from gateway.protocols.openai_responses import (
    response_object,
    status_for,
    stop_from_response,
)
from gateway.protocols.responses_tools import custom_input
from gateway.protocols.sse import SSEEvent, encode_event
from gateway.protocols.usage import priced, usage_from_responses

_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete"})


class ResponsesStreamParser:
    """Responses SSE from a node -> canonical events; reasoning events are ignored."""

    __slots__ = ("_emit", "_tools", "usage")

    def __init__(self, request_id: str, emit: Emit) -> None:
        self._emit = emit
        self._tools: set[int] = set()
        self.usage: Usage | None = None

    def parse(self, event: SSEEvent) -> None:
        if not event.data or event.data == b"[DONE]":
            return
        obj = orjson.loads(event.data)
        kind = obj.get("type")
        emit = self._emit
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            if obj.get("delta"):
                emit(TextDelta(obj["delta"]))
        elif kind == "response.function_call_arguments.delta":
            key = obj.get("output_index", 0)
            if key in self._tools and obj.get("delta"):
                emit(ToolCallDelta(key, obj["delta"]))
        elif kind == "response.output_item.added":
            item = obj.get("item") or {}
            if item.get("type") == "function_call":
                key = obj.get("output_index", 0)
                self._tools.add(key)
                emit(ToolCallStart(key, item.get("call_id") or "", item.get("name") or ""))
                if item.get("arguments"):
                    emit(ToolCallDelta(key, item["arguments"]))
        elif kind in _FINAL_EVENTS:
            response = obj.get("response") or {}
            self.usage = usage_from_responses(response.get("usage")) or Usage()
            emit(UsageUpdate(self.usage))
            emit(Finish(stop_from_response(response, bool(self._tools))))
            emit(STREAM_END)
        elif kind == "response.failed":
            error = (obj.get("response") or {}).get("error") or {}
            emit(StreamError(error.get("message") or "upstream response failed"))
        elif kind == "error":
            emit(StreamError(obj.get("message") or "upstream stream error"))


class ResponsesStreamRenderer(StreamRenderer):
    """Canonical events -> Responses SSE for a Responses client.

    Keeps the output items built so far because every ``.done`` event and the
    final ``response.completed`` repeat them whole. Text and argument fragments
    are collected in per-item lists and joined once when the item closes, so a
    long reply costs linear, not quadratic, time.
    """

    def __init__(self, model: str, request_id: str, include_usage: bool, price: Price | None = None,
                 client_tools: dict[str, ClientTool] | None = None) -> None:
        super().__init__(price)
        self._client_tools = client_tools or {}
        self._model = model
        self._request_id = request_id
        self._created_at = int(time.time())
        self._seq = 0
        self._started = False
        self._items: list[dict] = []  # output items, in output_index order
        self._fragments: list[list[str]] = []  # text or argument fragments of each item
        self._open: dict | None = None  # the item still receiving deltas
        self._open_index = 0
        self._tools: dict[int, int] = {}  # node key -> output_index
        self._stop = STOP_END
        self._usage: Usage | None = None

    def _event(self, payload: dict) -> None:
        payload["sequence_number"] = self._seq
        self._seq += 1
        self._out.append(encode_event(dumpb(payload), payload["type"]))

    def _start(self) -> None:
        self._started = True
        response = response_object(self._request_id, self._model, self._created_at, "in_progress", [], None, None)
        self._event({"type": "response.created", "response": response})
        self._event({"type": "response.in_progress", "response": response})

    def _add_item(self, item: dict) -> int:
        if not self._started:
            self._start()
        self._close_item()
        index = len(self._items)
        self._items.append(item)
        self._fragments.append([])
        self._open = item
        self._open_index = index
        self._event({"type": "response.output_item.added", "output_index": index, "item": item})
        return index

    def _close_item(self) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        index = self._open_index
        self._join(index)
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            self._event({"type": "response.output_text.done", **common, "text": part["text"], "logprobs": []})
            self._event({"type": "response.content_part.done", **common, "part": part})
        elif item["type"] == "custom_tool_call":
            common = {"item_id": item["id"], "output_index": index}
            self._event({"type": "response.custom_tool_call_input.delta", **common, "delta": item["input"]})
            self._event({"type": "response.custom_tool_call_input.done", **common, "input": item["input"]})
        else:
            self._event({"type": "response.function_call_arguments.done", "item_id": item["id"],
                         "output_index": index, "arguments": item["arguments"]})
        self._event({"type": "response.output_item.done", "output_index": index, "item": item})

    def _join(self, index: int) -> None:
        item, fragments = self._items[index], self._fragments[index]
        if item["type"] == "message":
            item["content"][0]["text"] = "".join(fragments)
        elif item["type"] == "custom_tool_call":
            item["input"] = custom_input("".join(fragments))
        else:
            item["arguments"] = "".join(fragments)

    def on_text(self, event: TextDelta) -> None:
        item = self._open
        if item is None or item["type"] != "message":
            index = len(self._items)
            item_id = f"msg_{self._request_id}_{index}"
            item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            self._add_item(item)
            item["content"].append({"type": "output_text", "text": "", "annotations": []})
            self._event({"type": "response.content_part.added", "item_id": item_id, "output_index": index,
                         "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})
        self.output_chars += len(event.text)
        self._fragments[self._open_index].append(event.text)
        self._event({"type": "response.output_text.delta", "item_id": item["id"],
                     "output_index": self._open_index, "content_index": 0, "delta": event.text,
                     "logprobs": []})

    def on_tool_start(self, event: ToolCallStart) -> None:
        index = len(self._items)
        self._tools[event.key] = index
        item_id = f"fc_{self._request_id}_{index}"
        tool = self._client_tools.get(event.name)
        if tool is not None and tool.custom:
            self._add_item({"id": item_id, "type": "custom_tool_call", "status": "in_progress", "call_id": event.id,
                            "name": tool.name, "input": ""})
            return
        item: dict[str, object] = {"id": item_id, "type": "function_call", "status": "in_progress", "call_id": event.id,
                "name": event.name, "arguments": ""}
        if tool is not None:
            item["name"], item["namespace"] = tool.name, tool.namespace
        self._add_item(item)

    def on_tool_delta(self, event: ToolCallDelta) -> None:
        index = self._tools.get(event.key)
        if index is None:
            return  # a fragment for a call the node never opened: nothing to attach it to
        item = self._items[index]
        self.output_chars += len(event.arguments)
        self._fragments[index].append(event.arguments)
        if item["type"] == "custom_tool_call":
            return  # its input is sent whole when the item closes
        self._event({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                     "output_index": index, "delta": event.arguments})

    def on_usage(self, event: UsageUpdate) -> None:
        self._usage = event.usage

    def on_finish(self, event: Finish) -> None:
        self._stop = event.stop_reason

    def on_end(self, event: StreamEnd) -> None:
        if not self._started:
            self._start()
        self._close_item()
        for index in self._tools.values():
            self._join(index)  # fragments that arrived after their item closed
        stop = STOP_TOOL_USE if self._tools and self._stop == STOP_END else self._stop
        status = status_for(stop)
        # A node that never reported usage still yields a usage object: the SDK expects one.
        usage = self._usage or Usage()
        response = response_object(self._request_id, self._model, self._created_at, status, self._items, usage, stop)
        priced(response["usage"], usage, self.price)
        self._event({"type": "response.completed" if status == "completed" else "response.incomplete",
                     "response": response})
        self.ended = True

    def on_error(self, event: StreamError) -> None:
        self._event(stream_error_event(Protocol.RESPONSES, event.status, event.message)[1])
        self.ended = True
