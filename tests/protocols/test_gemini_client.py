"""Gemini as a client protocol, sans-IO: requests, responses, streams, embeddings, pass-through.

Streams are fed whole, byte by byte and split in two at every byte; the
bytes out must not change. What comes out is then read by the google-genai
SDK itself (through an httpx mock transport), the proof that it parses.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx2 as httpx  # the SDKs installed here use the httpx2 fork
import pytest
from google import genai
from google.genai import types

from gateway.protocols.error_bodies import error_body, stream_error_frame
from gateway.protocols.canonical import ProtocolError, Usage
from gateway.protocols.gemini_client import openapi_to_json_schema, request_from_gemini
from gateway.protocols.gemini_stream import JsonArrayFramer
from gateway.protocols.passthrough import make_tap
from gateway.protocols.usage import usage_from_body
from gateway.protocols.sse import SSEDecoder
from gateway.protocols.translate import (
    StreamTranslator,
    passthrough_request,
    translate_embeddings_request,
    translate_embeddings_response,
    translate_request,
    translate_response,
)
from tests.protocols.test_translate_stream import ARGS, NODES, TEXT

IMAGE = "iVBORw0KGgo="
REQUEST: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
    "contents": [
        {"role": "user", "parts": [{"text": "Hi"}, {"inlineData": {"mimeType": "image/png", "data": IMAGE}}]},
        {"role": "model", "parts": [{"text": "secret", "thought": True}, {"text": "Let me look."},
                                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                     "thoughtSignature": "c2ln"},
                                    {"functionCall": {"id": "toolu_9", "name": "get_time", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "toolu_9", "name": "get_time",
                                                         "response": {"output": "noon"}}},
                                   {"functionResponse": {"name": "get_weather",
                                                         "response": {"temp": 18, "sky": "sunny"}}}]},
    ],
    "tools": [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather",
         "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING", "nullable": True}},
                        "required": ["city"], "propertyOrdering": ["city"]}},
        {"name": "get_time", "parameters_json_schema": {"type": "object", "properties": {}}}]},
        {"googleSearch": {}}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"],
                         "responseMimeType": "application/json",
                         "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}},
                         "thinkingConfig": {"thinkingBudget": 1024}},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}


def test_request_to_chat() -> None:
    body = translate_request("gemini", REQUEST, "chat", "gpt-x", stream=True)
    assert body["model"] == "gpt-x" and body["stream"] is True
    assert body["max_completion_tokens"] == 100 or body.get("max_tokens") == 100
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9 and body["stop"] == ["END"]
    messages = body["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief.\nBe kind."}
    assert messages[1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + IMAGE}}
    calls = messages[2]["tool_calls"]
    assert messages[2]["content"] == "Let me look."  # the thought part is dropped
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("call_1", "get_weather", {"city": "Paris"}), ("toolu_9", "get_time", {})]
    # ids kept; the id-less response answers the id-less call of its name
    assert [(m["tool_call_id"], m["content"]) for m in messages[3:5]] == [
        ("toolu_9", "noon"), ("call_1", '{"temp":18,"sky":"sunny"}')]
    weather = body["tools"][0]["function"]
    assert weather["parameters"] == {"type": "object", "properties": {"city": {"type": ["string", "null"]}},
                                     "required": ["city"]}
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]  # googleSearch dropped
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object",
                                                                "properties": {"a": {"type": "integer"}}}
    assert "safetySettings" not in json.dumps(body) and "thinking" not in json.dumps(body)


def test_non_function_tools_are_named_as_dropped() -> None:
    assert request_from_gemini(REQUEST).dropped_tools == ["googleSearch"]


def test_request_to_anthropic() -> None:
    body = translate_request("gemini", REQUEST, "messages", "claude-x")
    assert body["system"] == "Be brief.\nBe kind." and body["max_tokens"] == 100
    assert body["stop_sequences"] == ["END"] and body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    user, assistant, results = body["messages"]
    assert user["content"][1]["source"] == {"type": "base64", "media_type": "image/png", "data": IMAGE}
    assert [b["type"] for b in assistant["content"]] == ["text", "tool_use", "tool_use"]
    assert [b["tool_use_id"] for b in results["content"]] == ["toolu_9", "call_1"]
    assert "response_format" not in body and "output_format" not in body  # no JSON mode: dropped, not refused


def test_passthrough_keeps_everything_but_gateway_fields() -> None:
    body = passthrough_request("gemini", {**REQUEST, "fallback_models": ["x"]}, "gemini-own")
    assert body == REQUEST  # safetySettings, thinkingConfig, googleSearch: the Gemini node gets them all


@pytest.mark.parametrize(("change", "param"), [
    ({"contents": []}, "contents"),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [{"role": "user", "parts": [{"banana": 1}]}]}, "contents[0].parts[0]"),
    ({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "contents[0].parts[0].functionResponse"),
    ({"generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
    ({"generationConfig": {"maxOutputTokens": 0}}, "generationConfig.maxOutputTokens"),
    ({"generationConfig": {"temperature": 3}}, "generationConfig.temperature"),
    ({"toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}, "toolConfig.functionCallingConfig.mode"),
])
def test_bad_requests_name_the_field(change: dict[str, Any], param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        request_from_gemini({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **change})
    assert caught.value.param == param


def test_openapi_schema_in_snake_case() -> None:
    assert openapi_to_json_schema({"type": "ARRAY", "items": {"type": "STRING"}, "min_items": 1,
                                   "any_of": [{"type": "NUMBER"}]}) == {
        "type": "array", "items": {"type": "string"}, "minItems": 1, "anyOf": [{"type": "number"}]}


# --- responses --------------------------------------------------------------------------


def _sdk_response(body: dict[str, Any]) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(body)


def test_chat_response_with_cached_tokens() -> None:
    node = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Sure.",
                "tool_calls": [{"id": "call_7", "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109,
                      "prompt_tokens_details": {"cached_tokens": 80}}}
    body, usage = translate_response("chat", node, "gemini", "public", "req1")
    assert usage == Usage(100, 9, 80)
    reply = _sdk_response(body)
    assert reply.text == "Sure." and reply.candidates[0].finish_reason == types.FinishReason.STOP
    (call,) = reply.function_calls
    assert (call.id, call.name, call.args) == ("call_7", "get_weather", {"city": "Paris"})
    meta = reply.usage_metadata
    assert (meta.prompt_token_count, meta.candidates_token_count, meta.cached_content_token_count,
            meta.total_token_count) == (100, 9, 80, 109)
    assert reply.model_version == "public" and reply.response_id == "req1"


@pytest.mark.parametrize(("stop", "finish"), [("max_tokens", "MAX_TOKENS"), ("end_turn", "STOP"),
                                              ("stop_sequence", "STOP"), ("refusal", "SAFETY")])
def test_anthropic_stop_reasons(stop: str, finish: str) -> None:
    node = {"id": "m", "type": "message", "role": "assistant", "model": "c", "content": [{"type": "text", "text": "x"}],
            "stop_reason": stop, "usage": {"input_tokens": 5, "cache_read_input_tokens": 10, "output_tokens": 1}}
    body, usage = translate_response("messages", node, "gemini", "public", "r")
    assert body["candidates"][0]["finishReason"] == finish
    assert body["usageMetadata"] == {"promptTokenCount": 15, "candidatesTokenCount": 1, "totalTokenCount": 16,
                                     "cachedContentTokenCount": 10}


def test_passthrough_usage_of_a_whole_reply() -> None:
    usage = usage_from_body("gemini", {"usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3,
                                                         "thoughtsTokenCount": 2, "cachedContentTokenCount": 4}})
    assert usage == Usage(7, 5, 4)


# --- streams ----------------------------------------------------------------------------


def _run(node: str, pieces: list[bytes]) -> tuple[bytes, StreamTranslator]:
    translator = StreamTranslator(node, "gemini", "public-model", "req123", True)
    return b"".join(translator.feed(p) for p in pieces) + translator.finish(), translator


def _sdk_stream(body: bytes, alt_sse: bool = True) -> list[types.GenerateContentResponse]:
    """The SDK's own streaming path, reading ``body`` as the HTTP response."""
    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.url.params.get("alt") == "sse") is alt_sse
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    options = types.HttpOptions(base_url="http://gateway.test", httpx_client=httpx.Client(
        transport=httpx.MockTransport(handler)))
    sdk = genai.Client(api_key="k", http_options=options)
    return list(sdk.models.generate_content_stream(model="m", contents="hi"))


@pytest.mark.parametrize("node", [n for n in NODES if n != "gemini"])
def test_stream_is_independent_of_chunking_and_parsed_by_the_sdk(node: str) -> None:
    upstream = NODES[node]()
    whole, translator = _run(node, [upstream])
    assert translator.usage == Usage(100, 42, 80)
    assert _run(node, [upstream[i:i + 1] for i in range(len(upstream))])[0] == whole
    for cut in range(1, len(upstream)):
        assert _run(node, [upstream[:cut], upstream[cut:]])[0] == whole, cut
    chunks = _sdk_stream(whole)
    assert "".join(c.text or "" for c in chunks if c.candidates[0].content.parts[0].text is not None) == TEXT
    calls = [call for c in chunks for call in c.function_calls or ()]
    assert [(call.id, call.name, call.args) for call in calls] == [("call_01" if node != "messages" else "toolu_01",
                                                                    "get_weather", json.loads(ARGS))]
    assert [c.candidates[0].finish_reason for c in chunks if c.candidates[0].finish_reason] == [
        types.FinishReason.STOP]
    meta = chunks[-1].usage_metadata
    assert (meta.prompt_token_count, meta.candidates_token_count, meta.cached_content_token_count) == (100, 42, 80)


def test_json_array_framing_at_every_split() -> None:
    whole, _ = _run("chat", [NODES["chat"]()])
    events = [json.loads(e.data) for e in SSEDecoder().feed(whole)]
    for cut in range(0, len(whole), 3):
        framer = JsonArrayFramer()
        out = framer.feed(whole[:cut]) + framer.feed(whole[cut:]) + framer.finish()
        assert json.loads(out) == events
    empty = JsonArrayFramer()
    assert json.loads(empty.feed(b": ping\n\n") + empty.finish()) == []


def test_line_separators_are_escaped_for_the_js_sdk() -> None:
    node = b'data: {"choices":[{"index":0,"delta":{"content":"a\xe2\x80\xa8b"}}]}\n\ndata: [DONE]\n\n'
    out, _ = _run("chat", [node])
    assert b"\xe2\x80\xa8" not in out and b"a\\u2028b" in out
    assert "".join(c.text or "" for c in _sdk_stream(out)) == "a\u2028b"


def test_gemini_tap_relays_events_and_reads_the_last_usage() -> None:
    upstream = NODES["gemini"]()
    for crlf in (False, True):  # Google frames with CRLF; the SSE decoder folds line ends to LF
        sent = upstream.replace(b"\n\n", b"\r\n\r\n") if crlf else upstream
        for cut in range(0, len(sent), 5):
            tap = make_tap("gemini", False)
            out = tap.feed(sent[:cut]) + tap.feed(sent[cut:]) + tap.finish()
            assert out == upstream
        assert tap.usage == Usage(100, 42, 80)


def test_error_shapes() -> None:
    assert json.loads(error_body("gemini", 402, "your balance is exhausted")) == {"error": {
        "code": 402, "message": "your balance is exhausted", "status": "RESOURCE_EXHAUSTED"}}
    frame = stream_error_frame("gemini", 502, "boom")
    assert json.loads(SSEDecoder().feed(frame)[0].data)["error"]["status"] == "UNAVAILABLE"
    out, translator = _run("chat", [b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'])
    assert json.loads(SSEDecoder().feed(out)[0].data) == {"error": {
        "code": 500, "message": "overloaded", "status": "INTERNAL"}}
    assert translator.upstream_error == "overloaded"


# --- embeddings -------------------------------------------------------------------------


def test_embed_content_on_an_openai_node() -> None:
    request = {"content": {"parts": [{"text": "hello"}, {"text": "world"}]}, "outputDimensionality": 3,
               "taskType": "RETRIEVAL_QUERY"}
    assert translate_embeddings_request("gemini_embed", "embeddings", request, "emb-x") == {
        "model": "emb-x", "input": ["hello world"], "encoding_format": "float", "dimensions": 3}
    vector = base64.b64encode(struct.pack("<2f", 0.5, -1.0)).decode()  # a node that answers base64 anyway
    node = {"data": [{"index": 0, "embedding": vector}], "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    body, usage = translate_embeddings_response("gemini_embed", "embeddings", node, "public", request)
    assert body == {"embedding": {"values": [0.5, -1.0]}} and usage == Usage(2, 0, 0)
    types.EmbedContentResponse.model_validate({"embeddings": [body["embedding"]]})


def test_batch_embed_on_gemini_nodes() -> None:
    one = {"content": {"parts": [{"text": "hi"}]}, "taskType": "RETRIEVAL_QUERY"}
    assert translate_embeddings_request("gemini_embed", "gemini_embeddings", one, "own") == {
        "requests": [{**one, "model": "models/own"}]}
    batch = {"requests": [{"model": "models/public", **one}, {"model": "models/public", **one}]}
    assert passthrough_request("gemini_embeddings", batch, "own") == {
        "requests": [{**one, "model": "models/own"}] * 2}
    node = {"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}
    body, usage = translate_embeddings_response("gemini_embeddings", "gemini_embeddings", node, "p", batch)
    assert body == node and usage == Usage(1, 0, 0)  # ceil(4 characters / 4)


def test_batch_embed_refuses_non_text() -> None:
    with pytest.raises(ProtocolError) as caught:
        translate_embeddings_request("gemini_embeddings", "embeddings",
                                     {"requests": [{"content": {"parts": [{"inlineData": {}}]}}]}, "m")
    assert caught.value.param == "requests[0].content"


def _price(usage: Usage) -> int:
    return usage.input_tokens * 1000 + usage.output_tokens * 3000  # nano-dollars


def test_cost_in_the_last_chunk_translated_and_passed_through() -> None:
    translator = StreamTranslator("chat", "gemini", "m", "r", True, _price)
    out = translator.feed(NODES["chat"]()) + translator.finish()
    last = json.loads(SSEDecoder().feed(out)[-1].data)
    assert last["usageMetadata"]["cost"] == (100 * 1000 + 42 * 3000) / 1e9
    tap = make_tap("gemini", False, _price)
    out = tap.feed(NODES["gemini"]()) + tap.finish()
    events = [json.loads(e.data) for e in SSEDecoder().feed(out)]
    assert [("cost" in e["usageMetadata"]) for e in events] == [False, False, True]  # the finishing chunk only
    assert events[-1]["usageMetadata"]["cost"] == (100 * 1000 + 42 * 3000) / 1e9
