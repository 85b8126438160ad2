"""StreamTranslator: every node protocol x every other client protocol, bytes in, bytes out.

Each upstream recording is fed whole, byte by byte, and split in two at every
byte boundary; the client bytes must be identical in every case. The client
bytes are then read by the official SDK's own stream helpers (through an
httpx mock transport), which accumulate the final message: that is the proof
that clients parse what we emit.
"""

from __future__ import annotations

import json
import time

import anthropic
import httpx2 as httpx  # the SDKs installed here use the httpx2 fork
import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.protocols.canonical import Usage, dumps
from gateway.protocols.sse import SSEDecoder
from gateway.protocols.translate import StreamTranslator

TEXT = "Héllo wörld ✓ "  # multi-byte UTF-8, so byte splits land inside characters
ARGS = '{"city": "Paris", "unit": "°C"}'


def _sse(events: list[tuple[str | None, dict | str]]) -> bytes:
    out = b""
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        if name:
            out += f"event: {name}\n".encode()
        out += f"data: {payload}\n\n".encode()
    return out


def _anthropic_node() -> bytes:
    def delta(index: int, d: dict) -> tuple[str, dict]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}
    return _sse([
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 20, "cache_read_input_tokens": 80, "cache_creation_input_tokens": 0,
                      "output_tokens": 1}}}),
        ("ping", {"type": "ping"}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        delta(0, {"type": "thinking_delta", "thinking": "secret thoughts"}),
        delta(0, {"type": "signature_delta", "signature": "c2ln"}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "text", "text": ""}}),
        delta(1, {"type": "text_delta", "text": TEXT[:6]}),
        delta(1, {"type": "text_delta", "text": TEXT[6:]}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}),
        delta(2, {"type": "input_json_delta", "partial_json": ""}),
        delta(2, {"type": "input_json_delta", "partial_json": ARGS[:9]}),
        delta(2, {"type": "input_json_delta", "partial_json": ARGS[9:]}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 42}}),
        ("message_stop", {"type": "message_stop"}),
    ])


def _chat_node() -> bytes:
    head = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}

    def chunk(delta: dict, finish: str | None = None) -> tuple[None, dict]:
        return None, {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return _sse([
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": TEXT[:6]}),
        chunk({"content": TEXT[6:]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_01", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ARGS[:9]}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ARGS[9:]}}]}),
        chunk({}, "tool_calls"),
        (None, {**head, "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 42, "total_tokens": 142,
                                                 "prompt_tokens_details": {"cached_tokens": 80}}}),
        (None, "[DONE]"),
    ])


def _responses_node() -> bytes:
    seq = iter(range(100))

    def ev(payload: dict) -> tuple[str, dict]:
        return payload["type"], {**payload, "sequence_number": next(seq)}
    base = {"id": "resp_up", "object": "response", "created_at": 1, "model": "gpt-x", "output": [],
            "status": "in_progress", "usage": None}
    message = {"id": "msg_up", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    call = {"id": "fc_up", "type": "function_call", "status": "in_progress", "call_id": "call_01",
            "name": "get_weather", "arguments": ""}
    part = {"type": "output_text", "text": "", "annotations": []}
    loc = {"item_id": "msg_up", "output_index": 1, "content_index": 0}
    return _sse([
        ev({"type": "response.created", "response": base}),
        ev({"type": "response.in_progress", "response": base}),
        ev({"type": "response.output_item.added", "output_index": 0,
            "item": {"id": "rs_up", "type": "reasoning", "summary": []}}),
        ev({"type": "response.output_item.done", "output_index": 0,
            "item": {"id": "rs_up", "type": "reasoning", "summary": []}}),
        ev({"type": "response.output_item.added", "output_index": 1, "item": message}),
        ev({"type": "response.content_part.added", **loc, "part": part}),
        ev({"type": "response.output_text.delta", **loc, "delta": TEXT[:6], "logprobs": []}),
        ev({"type": "response.output_text.delta", **loc, "delta": TEXT[6:], "logprobs": []}),
        ev({"type": "response.output_text.done", **loc, "text": TEXT, "logprobs": []}),
        ev({"type": "response.content_part.done", **loc, "part": {**part, "text": TEXT}}),
        ev({"type": "response.output_item.done", "output_index": 1, "item": message}),
        ev({"type": "response.output_item.added", "output_index": 2, "item": call}),
        ev({"type": "response.function_call_arguments.delta", "item_id": "fc_up", "output_index": 2,
            "delta": ARGS[:9]}),
        ev({"type": "response.function_call_arguments.delta", "item_id": "fc_up", "output_index": 2,
            "delta": ARGS[9:]}),
        ev({"type": "response.function_call_arguments.done", "item_id": "fc_up", "output_index": 2,
            "arguments": ARGS}),
        ev({"type": "response.output_item.done", "output_index": 2, "item": {**call, "arguments": ARGS}}),
        ev({"type": "response.completed", "response": {
            **base, "status": "completed", "output": [message, {**call, "arguments": ARGS}],
            "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 80}, "output_tokens": 42,
                      "output_tokens_details": {"reasoning_tokens": 10}, "total_tokens": 142}}}),
    ])


def _gemini_node() -> bytes:
    def usage(out: int) -> dict:
        return {"promptTokenCount": 100, "candidatesTokenCount": out, "thoughtsTokenCount": 2,
                "cachedContentTokenCount": 80, "totalTokenCount": 102 + out}
    return _sse([
        (None, {"candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": True}, {"text": TEXT[:6]}]}, "index": 0}],
            "usageMetadata": usage(3), "modelVersion": "gemini-x", "responseId": "r1"}),
        (None, {"candidates": [{"content": {"role": "model", "parts": [{"text": TEXT[6:]}]}, "index": 0}],
                "usageMetadata": usage(20)}),
        (None, {"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": json.loads(ARGS)}, "thoughtSignature": "c2ln"}]},
            "finishReason": "STOP", "index": 0}], "usageMetadata": usage(40)}),
    ])


NODES = {"messages": _anthropic_node, "chat": _chat_node, "responses": _responses_node, "gemini": _gemini_node}
PAIRS = [(node, client) for node in NODES for client in ("chat", "responses", "messages") if node != client]


@pytest.fixture(autouse=True)
def _frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``created`` timestamps come from time.time(); freeze it so outputs compare bytewise."""
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)


def _run(node: str, client: str, pieces: list[bytes], include_usage: bool = True) -> tuple[bytes, StreamTranslator]:
    translator = StreamTranslator(node, client, "public-model", "req123", include_usage)
    out = b"".join(translator.feed(p) for p in pieces) + translator.finish()
    return out, translator


@pytest.mark.parametrize(("node", "client"), PAIRS)
def test_output_is_independent_of_chunking(node: str, client: str) -> None:
    upstream = NODES[node]()
    whole, translator = _run(node, client, [upstream])
    assert translator.usage == Usage(100, 42, 80)
    # Gemini sends arguments as an object; they are re-serialised compactly.
    args = dumps(json.loads(ARGS)) if node == "gemini" else ARGS
    assert translator.output_chars == len(TEXT) + len(args)
    assert _run(node, client, [upstream[i:i + 1] for i in range(len(upstream))])[0] == whole
    for cut in range(1, len(upstream)):
        assert _run(node, client, [upstream[:cut], upstream[cut:]])[0] == whole, cut


def _transport(body: bytes) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    return httpx.Client(transport=httpx.MockTransport(handler))


def _openai(body: bytes) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1", http_client=_transport(body))


@pytest.mark.parametrize("node", [n for n in NODES if n != "chat"])
def test_chat_client_sdk_accumulates(node: str) -> None:
    out, _ = _run(node, "chat", [NODES[node]()])
    events = SSEDecoder().feed(out)
    assert events[-1].data == b"[DONE]"
    for event in events[:-1]:
        ChatCompletionChunk.model_validate(json.loads(event.data))
    with _openai(out).chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}],
                                              stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content == TEXT
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", json.loads(ARGS))
    assert final.usage.prompt_tokens == 100 and final.usage.completion_tokens == 42
    assert final.usage.prompt_tokens_details.cached_tokens == 80


def test_chat_client_without_include_usage_gets_no_usage_chunk() -> None:
    out, _ = _run("messages", "chat", [_anthropic_node()], include_usage=False)
    chunks = [json.loads(e.data) for e in SSEDecoder().feed(out)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[0]["id"] == "chatcmpl-req123" and chunks[0]["model"] == "public-model"


@pytest.mark.parametrize("node", [n for n in NODES if n != "responses"])
def test_responses_client_sdk_accumulates(node: str) -> None:
    out, _ = _run(node, "responses", [NODES[node]()])
    adapter = TypeAdapter(ResponseStreamEvent)
    events = SSEDecoder().feed(out)
    for n, event in enumerate(events):
        parsed = adapter.validate_python(json.loads(event.data))
        assert parsed.type == event.event and parsed.sequence_number == n
    with _openai(out).responses.stream(model="m", input="hi") as stream:
        final = stream.get_final_response()
    assert final.id == "resp_req123" and final.status == "completed"
    assert final.output_text == TEXT
    call = final.output[-1]
    assert (call.type, call.name, call.call_id != "") == ("function_call", "get_weather", True)
    assert json.loads(call.arguments) == json.loads(ARGS)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (100, 42)
    assert final.usage.input_tokens_details.cached_tokens == 80


def _anthropic_client(body: bytes) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-test", base_url="http://gateway.test", http_client=_transport(body))


@pytest.mark.parametrize("node", [n for n in NODES if n != "messages"])
def test_messages_client_sdk_accumulates(node: str) -> None:
    out, _ = _run(node, "messages", [NODES[node]()])
    adapter = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    events = SSEDecoder().feed(out)
    for event in events:
        assert adapter.validate_python(json.loads(event.data)).type == event.event
    if node == "gemini":  # Gemini reports the prompt up front, so message_start already has it
        assert json.loads(events[0].data)["message"]["usage"]["input_tokens"] == 20
    with _anthropic_client(out).messages.stream(model="m", max_tokens=10,
                                                messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_message()
    assert final.id == "msg_req123" and final.model == "public-model"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == TEXT
    assert (final.content[1].name, final.content[1].input) == ("get_weather", json.loads(ARGS))
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 42
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) == 100
    assert final.usage.cache_read_input_tokens == 80


@pytest.mark.parametrize("client", ["chat", "responses", "messages"])
def test_a_stream_the_node_cut_short_ends_with_the_error_event(client: str) -> None:
    """The node's stream ends after the text (no message_stop / [DONE]): the client's stream ends with its
    protocol's error event, never a made-up success (contract §4)."""
    node = "chat" if client == "messages" else "messages"
    upstream = NODES[node]()
    cut = upstream.rindex(b"\n\n", 0, upstream.index(b'"tool_use"' if node == "messages" else b'"tool_calls"')) + 2
    out, translator = _run(node, client, [upstream[:cut]])
    events = SSEDecoder().feed(out)
    if client == "chat":
        assert b"[DONE]" not in out and json.loads(events[-1].data)["error"]["message"]
    else:
        assert events[-1].event == "error" and "message_stop" not in [e.event for e in events]
        assert "response.completed" not in [e.event for e in events]
    assert "final event" in translator.upstream_error
    assert translator.output_chars == len(TEXT)
    assert translator.finish() == b""  # idempotent


def test_an_empty_stream_is_an_error_not_an_empty_reply() -> None:
    out, translator = _run("gemini", "messages", [])
    names = [e.event for e in SSEDecoder().feed(out)]
    assert names == ["error"]
    assert translator.usage is None


def test_node_error_event_becomes_client_error_event() -> None:
    upstream = _sse([
        ("message_start", {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                                                "model": "c", "content": [], "usage": {
                                                                    "input_tokens": 5, "output_tokens": 0}}}),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ])
    out, translator = _run("messages", "chat", [upstream])
    assert translator.upstream_error == "Overloaded"
    events = SSEDecoder().feed(out)
    assert json.loads(events[-1].data) == {"error": {"message": "Overloaded", "type": "server_error",
                                                     "param": None, "code": None}}
    assert not out.endswith(b"[DONE]\n\n")

    chat_error = _sse([(None, {"error": {"message": "boom", "type": "server_error"}})])
    out, translator = _run("chat", "messages", [chat_error])
    last = SSEDecoder().feed(out)[-1]
    assert last.event == "error"
    assert json.loads(last.data) == {"type": "error", "error": {"type": "api_error", "message": "boom"}}

    out, _ = _run("gemini", "responses", [_sse([(None, {"error": {"code": 429, "message": "quota",
                                                                   "status": "RESOURCE_EXHAUSTED"}})])])
    last = SSEDecoder().feed(out)[-1]
    assert json.loads(last.data)["type"] == "error" and json.loads(last.data)["code"] == "rate_limit_error"


def test_malformed_node_event_is_an_error_not_an_exception() -> None:
    out, translator = _run("chat", "messages", [b"data: {not json\n\n"])
    assert translator.upstream_error == "upstream sent a malformed stream event"
    assert SSEDecoder().feed(out)[-1].event == "error"


def test_chat_node_parallel_tool_calls_map_to_separate_blocks() -> None:
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "g"}
    upstream = _sse([(None, {**head, "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"index": 1, "id": "call_b", "type": "function", "function": {"name": "b", "arguments": "{\"x\":1}"}},
    ]}, "finish_reason": "tool_calls"}]}), (None, "[DONE]")])
    out, _ = _run("chat", "messages", [upstream])
    with _anthropic_client(out).messages.stream(model="m", max_tokens=10,
                                                messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_message()
    assert [(b.id, b.name, b.input) for b in final.content] == [("call_a", "a", {}), ("call_b", "b", {"x": 1})]
    assert final.stop_reason == "tool_use"


def test_max_tokens_stop_maps_to_each_client() -> None:
    upstream = _sse([(None, {"candidates": [{"content": {"role": "model", "parts": [{"text": "cut"}]},
                                             "finishReason": "MAX_TOKENS"}],
                             "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 5}})])
    chat = [json.loads(e.data) for e in SSEDecoder().feed(_run("gemini", "chat", [upstream])[0])[:-1]]
    assert chat[-2]["choices"][0]["finish_reason"] == "length"
    messages = SSEDecoder().feed(_run("gemini", "messages", [upstream])[0])
    assert json.loads(messages[-2].data)["delta"]["stop_reason"] == "max_tokens"
    last = json.loads(SSEDecoder().feed(_run("gemini", "responses", [upstream])[0])[-1].data)
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_messages_text_deltas_are_the_payloads_dumpb_encodes_whole():
    """The Messages renderer frames a text block's deltas once per block (``_text_head``): each delta must
    be byte for byte the event the whole payload encodes to, whatever the text holds and whichever block."""
    from gateway.protocols.anthropic_stream import MessagesStreamRenderer
    from gateway.protocols.canonical import TextDelta, ToolCallStart, dumpb
    from gateway.protocols.sse import encode_event

    texts = ["plain", 'quote " and \\ back', "slash / ü 日本 \u2028", "line\nbreak\t\x01"]
    renderer = MessagesStreamRenderer("m", "rid", False)
    for text in texts[:2]:
        renderer.handle(TextDelta(text))
    renderer.handle(ToolCallStart(0, "call_1", "f"))  # block 1; the text after it opens block 2
    for text in texts[2:]:
        renderer.handle(TextDelta(text))
    deltas = [e.raw for e in SSEDecoder().feed(renderer.take()) if e.event == "content_block_delta"]
    expected = [encode_event(dumpb({"type": "content_block_delta", "index": index,
                                    "delta": {"type": "text_delta", "text": text}}), "content_block_delta")
                for index, text in zip((0, 0, 2, 2), texts)]
    assert deltas == expected
