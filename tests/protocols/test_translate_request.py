"""Request translation: client body in, node body out, for each pair that differs."""

from __future__ import annotations

import pytest

from gateway.protocols.canonical import DEFAULT_MAX_TOKENS
from gateway.protocols.translate import ProtocolError, translate_request

PNG = "iVBORw0KGgo="

CHAT_CONVERSATION = {
    "model": "public",
    "fallback_models": ["other"],
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Look it up",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "max_completion_tokens": 100,
    "temperature": 1.5,
    "stop": "END",
    "stream": True,
    "stream_options": {"include_usage": False},
}

ANTHROPIC_CONVERSATION = {
    "model": "public",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
            {"type": "text", "text": "Thanks"}]},
    ],
    "tools": [{"name": "get_weather", "description": "Look it up",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "u-1"},
    "stream": True,
}

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


def test_chat_to_messages() -> None:
    assert translate_request("chat", CHAT_CONVERSATION, "messages", "claude-up") == {
        "model": "claude-up",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
                {"type": "text", "text": "Thanks"}]},
        ],
        "temperature": 1.0,  # clamped to Anthropic's range
        "stop_sequences": ["END"],
        "tools": [{"name": "get_weather", "description": "Look it up", "input_schema": SCHEMA}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }


def test_messages_to_chat() -> None:
    assert translate_request("messages", ANTHROPIC_CONVERSATION, "chat", "gpt-up") == {
        "model": "gpt-up",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 100,
        "temperature": 0.5,
        "parallel_tool_calls": False,
        "user": "u-1",
        "stop": ["END"],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA,
                                                    "description": "Look it up"}}],
        "tool_choice": "auto",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_messages_to_responses() -> None:
    body = dict(ANTHROPIC_CONVERSATION, stop_sequences=[])
    assert translate_request("messages", body, "responses", "gpt-up") == {
        "model": "gpt-up",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                         {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}",
                                          "detail": "auto"}]},
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "18C"},
            {"role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
        ],
        "store": False,
        "max_output_tokens": 100,
        "temperature": 0.5,
        "parallel_tool_calls": False,
        "safety_identifier": "u-1",
        "tools": [{"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": False,
                   "description": "Look it up"}],
        "tool_choice": "auto",
        "stream": True,
    }


def test_responses_to_chat() -> None:
    body = {
        "model": "public", "instructions": "Be brief.", "max_output_tokens": 50, "stream": True,
        "input": [
            {"role": "developer", "content": "Use metric."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                                            {"type": "input_image", "image_url": "https://x/y.png"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": True}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA, "strict": True}},
    }
    assert translate_request("responses", body, "chat", "gpt-up") == {
        "model": "gpt-up",
        "messages": [
            {"role": "system", "content": "Be brief.\n\nUse metric."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        "max_completion_tokens": 50,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA, "strict": True}},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_responses_string_input_to_messages_defaults_max_tokens() -> None:
    assert translate_request("responses", {"model": "p", "input": "Hi"}, "messages", "claude-up") == {
        "model": "claude-up", "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_chat_to_gemini() -> None:
    body = dict(CHAT_CONVERSATION, response_format={"type": "json_object"})
    assert translate_request("chat", body, "gemini", "gemini-up") == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
            {"role": "model", "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": "skip_thought_signature_validator"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
                                       {"text": "Thanks"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": SCHEMA,
                                             "description": "Look it up"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 1.5, "stopSequences": ["END"],
                             "responseMimeType": "application/json"},
    }


def test_messages_to_gemini_error_result_and_named_tool_choice() -> None:
    body = {
        "model": "p", "max_tokens": 10, "top_k": 5,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "run", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "exit 1",
                                          "is_error": True}]},
        ],
        "tools": [{"name": "run", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "run"},
    }
    out = translate_request("messages", body, "gemini", "g")
    assert out["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "run", "response": {"error": "exit 1"}}}]}
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["run"]}}
    assert out["generationConfig"] == {"maxOutputTokens": 10, "topK": 5}


@pytest.mark.parametrize(("client", "body", "node", "param"), [
    ("chat", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}, "gemini", "messages[0]"),
    ("chat", {"messages": [{"role": "user", "content": "x"}], "n": 2}, "messages", "n"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages", "messages[0].content[0].type"),
    ("chat", {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
     "messages", "response_format"),
    ("chat", {"messages": [{"role": "user", "content": "x"}], "stop": ["a"]}, "responses", "stop"),
    ("chat", {"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages", "messages[0].tool_calls"),
    ("chat", {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "gemini", "messages[0]"),
    ("responses", {"input": "x", "previous_response_id": "resp_1"}, "chat", "previous_response_id"),
    ("responses", {"input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "teleport"}]},
     "messages", "tools[1].type"),
    ("responses", {"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "warp"}]}]},
     "chat", "tools[0].tools[0].type"),
    ("responses", {"input": [{"type": "item_reference", "id": "x"}]}, "chat", "input[0].type"),
])
def test_untranslatable_requests_name_the_field(client: str, body: dict, node: str, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        translate_request(client, body, node, "m")
    assert caught.value.param == param
    assert caught.value.message


def test_gateway_only_fields_are_never_copied() -> None:
    for node in ("messages", "responses", "gemini"):
        body = dict(CHAT_CONVERSATION, stop=None)
        assert "fallback_models" not in translate_request("chat", body, node, "m")
