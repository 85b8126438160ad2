"""Non-streaming replies, usage, upstream errors and embeddings through the facade."""

from __future__ import annotations

import base64
import json
import struct

import anthropic
import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response as OpenAIResponse

from gateway.protocols.canonical import Usage
from gateway.protocols.usage import usage_from_body
from gateway.protocols.translate import (
    translate_embeddings_request,
    translate_embeddings_response,
    translate_error,
    translate_response,
)

ARGS = {"city": "Paris"}

NODE_REPLIES = {
    "messages": {
        "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": ARGS}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 15, "cache_read_input_tokens": 80, "cache_creation_input_tokens": 5,
                  "output_tokens": 42},
    },
    "chat": {
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "get_weather", "arguments": json.dumps(ARGS)}}]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 42, "total_tokens": 142,
                  "prompt_tokens_details": {"cached_tokens": 80}},
    },
    "responses": {
        "id": "resp_up", "object": "response", "created_at": 1, "model": "gpt-x", "status": "completed",
        "output": [{"type": "reasoning", "id": "rs_1", "summary": []},
                   {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
                   {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                    "arguments": json.dumps(ARGS), "status": "completed"}],
        "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 80}, "output_tokens": 42,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 142},
    },
    "gemini": {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "private", "thought": True}, {"text": "Let me check."},
            {"functionCall": {"name": "get_weather", "args": ARGS}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 40, "thoughtsTokenCount": 2,
                          "cachedContentTokenCount": 80},
    },
}
PAIRS = [(node, client) for node in NODE_REPLIES for client in ("chat", "responses", "messages") if node != client]


@pytest.mark.parametrize(("node", "client"), PAIRS)
def test_reply_translates_and_the_sdk_parses_it(node: str, client: str) -> None:
    body, usage = translate_response(node, NODE_REPLIES[node], client, "public-model", "req1")
    assert usage == Usage(100, 42, 80, 5 if node == "messages" else 0)  # only Anthropic reports cache writes
    assert json.loads(json.dumps(body)) == body  # plain JSON, nothing exotic
    if client == "chat":
        reply = ChatCompletion.model_validate(body)
        assert reply.id == "chatcmpl-req1" and reply.model == "public-model"
        assert reply.choices[0].message.content == "Let me check."
        assert reply.choices[0].finish_reason == "tool_calls"
        [call] = reply.choices[0].message.tool_calls
        assert json.loads(call.function.arguments) == ARGS and call.function.name == "get_weather"
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (100, 42)
        assert reply.usage.prompt_tokens_details.cached_tokens == 80
    elif client == "responses":
        reply = OpenAIResponse.model_validate(body)
        assert reply.id == "resp_req1" and reply.status == "completed"
        assert reply.output_text == "Let me check."
        assert reply.output[-1].type == "function_call" and json.loads(reply.output[-1].arguments) == ARGS
        assert reply.usage.input_tokens_details.cached_tokens == 80
    else:
        reply = anthropic.types.Message.model_validate(body)
        assert reply.id == "msg_req1" and reply.stop_reason == "tool_use"
        assert [b.type for b in reply.content] == ["text", "tool_use"]
        assert reply.content[1].input == ARGS
        assert reply.usage.input_tokens == 20 and reply.usage.cache_read_input_tokens == 80


def test_gemini_tool_call_gets_a_deterministic_id() -> None:
    body, _ = translate_response("gemini", NODE_REPLIES["gemini"], "chat", "m", "req1")
    assert body["choices"][0]["message"]["tool_calls"][0]["id"] == "call_req1_0"


@pytest.mark.parametrize(("reason", "chat", "messages", "responses"), [
    ("MAX_TOKENS", "length", "max_tokens", "max_output_tokens"),
    ("SAFETY", "content_filter", "refusal", "content_filter"),
    ("STOP", "stop", "end_turn", None),
])
def test_stop_reasons(reason: str, chat: str, messages: str, responses: str | None) -> None:
    node = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert translate_response("gemini", node, "chat", "m", "r")[0]["choices"][0]["finish_reason"] == chat
    assert translate_response("gemini", node, "messages", "m", "r")[0]["stop_reason"] == messages
    reply = translate_response("gemini", node, "responses", "m", "r")[0]
    assert (reply["incomplete_details"] or {}).get("reason") == responses
    OpenAIResponse.model_validate(reply)


def test_anthropic_stop_sequence_and_chat_length_round_trip() -> None:
    node = {**NODE_REPLIES["messages"], "content": [{"type": "text", "text": "a"}],
            "stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert translate_response("messages", node, "chat", "m", "r")[0]["choices"][0]["finish_reason"] == "stop"
    chat = {**NODE_REPLIES["chat"], "choices": [{"index": 0, "finish_reason": "length",
                                                  "message": {"role": "assistant", "content": "a"}}]}
    reply = translate_response("chat", chat, "messages", "m", "r")[0]
    assert reply["stop_reason"] == "max_tokens"
    assert reply["content"] == [{"type": "text", "text": "a"}]


def test_invalid_tool_arguments_from_an_openai_model_still_give_an_object() -> None:
    chat = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}}]}
    reply, usage = translate_response("chat", chat, "messages", "m", "r")
    assert reply["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {"arguments": "{oops"}}]
    assert usage == Usage()
    anthropic.types.Message.model_validate(reply)


@pytest.mark.parametrize(("protocol", "body", "expected"), [
    ("chat", NODE_REPLIES["chat"], Usage(100, 42, 80)),
    ("responses", NODE_REPLIES["responses"], Usage(100, 42, 80)),
    ("messages", NODE_REPLIES["messages"], Usage(100, 42, 80, 5)),
    ("gemini", NODE_REPLIES["gemini"], Usage(100, 42, 80)),
    ("embeddings", {"usage": {"prompt_tokens": 7, "total_tokens": 7}}, Usage(7, 0, 0)),
    ("chat", {"choices": []}, None),
])
def test_usage_from_body(protocol: str, body: dict, expected: Usage | None) -> None:
    assert usage_from_body(protocol, body) == expected


ERRORS = {
    "openai": (429, b'{"error": {"message": "Rate limit reached", "type": "requests", "param": null, '
                    b'"code": "rate_limit_exceeded"}}'),
    "anthropic": (529, b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'),
    "gemini": (400, b'{"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}'),
    "gemini_list": (503, b'[{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]'),
    "text": (502, b"<html>Bad Gateway</html>"),
    "empty": (500, b""),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_keep_the_message_in_the_clients_shape(name: str) -> None:
    status, body = ERRORS[name]
    message = {"openai": "Rate limit reached", "anthropic": "Overloaded", "gemini": "API key not valid.",
               "gemini_list": "The model is overloaded.", "text": "<html>Bad Gateway</html>",
               "empty": "upstream returned HTTP 500"}[name]
    chat = translate_error("gemini", status, body, "chat")
    assert set(chat["error"]) == {"message", "type", "param", "code"}
    assert chat["error"]["message"] == message
    messages = translate_error("chat", status, body, "messages")
    assert messages["type"] == "error" and messages["error"]["message"] == message
    anthropic.types.ErrorResponse.model_validate(messages)


def test_error_types_follow_the_status() -> None:
    assert translate_error("messages", 529, ERRORS["anthropic"][1], "messages")["error"]["type"] == "overloaded_error"
    assert translate_error("gemini", 429, b"{}", "messages")["error"]["type"] == "rate_limit_error"
    assert translate_error("gemini", 401, b"{}", "messages")["error"]["type"] == "authentication_error"
    assert translate_error("gemini", 404, b"{}", "responses")["error"]["type"] == "not_found_error"
    assert translate_error("chat", 429, ERRORS["openai"][1], "chat")["error"] == {
        "message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}
    gemini = translate_error("gemini", 400, ERRORS["gemini"][1], "chat")["error"]
    assert (gemini["type"], gemini["code"]) == ("invalid_request_error", "INVALID_ARGUMENT")
    assert translate_error("messages", 529, ERRORS["anthropic"][1], "chat")["error"]["type"] == "server_error"


def test_errors_make_the_sdks_raise_the_right_exception() -> None:
    status, body = ERRORS["gemini"]
    translated = translate_error("gemini", status, body, "chat")
    import httpx2
    request = httpx2.Request("POST", "http://x/v1/chat/completions")
    response = httpx2.Response(status, json=translated, request=request)
    client = openai.OpenAI(api_key="k", base_url="http://x/v1")
    error = client._make_status_error_from_response(response)
    assert isinstance(error, openai.BadRequestError) and "API key not valid." in str(error)


def test_gemini_embeddings_round_trip() -> None:
    request = {"model": "emb", "input": ["hello", "wörld!!"], "dimensions": 3}
    assert translate_embeddings_request("embeddings", "gemini_embeddings", request, "text-embedding-004") == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 3},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "wörld!!"}]}, "outputDimensionality": 3},
    ]}
    node = {"embeddings": [{"values": [0.5, -1.0, 0.25]}, {"values": [1.0, 2.0, 3.0]}]}
    body, usage = translate_embeddings_response("embeddings", "gemini_embeddings", node, "emb", request)
    reply = CreateEmbeddingResponse.model_validate(body)
    assert [d.embedding for d in reply.data] == [[0.5, -1.0, 0.25], [1.0, 2.0, 3.0]]
    assert [d.index for d in reply.data] == [0, 1]
    # 5 + 7 characters -> ceil(12 / 4) = 3 tokens
    assert usage == Usage(3, 0, 0) and body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_gemini_embeddings_base64_as_the_openai_sdk_requests_by_default() -> None:
    node = {"embeddings": [{"values": [0.5, -1.0, 0.25]}]}
    body, _ = translate_embeddings_response("embeddings", "gemini_embeddings", node, "emb", {"input": "hi", "encoding_format": "base64"})
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (0.5, -1.0, 0.25)


def test_gemini_embeddings_reject_token_arrays() -> None:
    from gateway.protocols.translate import ProtocolError
    with pytest.raises(ProtocolError) as caught:
        translate_embeddings_request("embeddings", "gemini_embeddings", {"input": [[1, 2, 3]]}, "m")
    assert caught.value.param == "input[0]"
