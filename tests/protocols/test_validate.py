"""validate_request: malformed Messages / Responses requests name the field at fault."""

from __future__ import annotations

import copy

import pytest

from gateway.protocols.translate import ProtocolError, validate_request

GOOD_MESSAGES = {
    "model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "s"}],
    "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "x"},
                                          {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]},
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "tool", "name": "f"},
}

GOOD_RESPONSES = {
    "model": "m", "instructions": "be nice", "max_output_tokens": 5,
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
              {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
              {"type": "function_call_output", "call_id": "c", "output": "ok"}],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
}


def test_valid_requests_pass() -> None:
    validate_request("messages", GOOD_MESSAGES)
    validate_request("responses", GOOD_RESPONSES)
    validate_request("responses", {"model": "m", "input": "hi"})
    validate_request("chat", {"messages": [{"role": "user", "content": "hi"}]})


def _broken(base: dict, path: list, value: object) -> dict:
    body = copy.deepcopy(base)
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(("path", "value", "param"), [
    (["max_tokens"], KeyError, "max_tokens"),
    (["max_tokens"], 0, "max_tokens"),
    (["max_tokens"], True, "max_tokens"),
    (["messages"], [], "messages"),
    (["messages", 0, "role"], "tool", "messages[0].role"),
    (["messages", 0, "content"], 5, "messages[0].content"),
    (["messages", 1, "content", 1, "type"], "video", "messages[1].content[1].type"),
    (["messages", 1, "content", 1, "input"], "{}", "messages[1].content[1].input"),
    (["messages", 2, "content", 0, "tool_use_id"], "t2", "messages[2].content[0].tool_use_id"),
    (["messages", 2, "content", 1, "source"], {"type": "base64", "data": "x"}, "messages[2].content[1].source.media_type"),
    (["system"], [{"type": "image"}], "system[0]"),
    (["tools", 0, "input_schema"], KeyError, "tools[0].input_schema"),
    (["tools", 0, "name"], "", "tools[0].name"),
    (["tool_choice"], {"type": "sometimes"}, "tool_choice"),
    (["tool_choice", "name"], KeyError, "tool_choice.name"),
])
def test_messages_errors(path: list, value: object, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_request("messages", _broken(GOOD_MESSAGES, path, value))
    assert caught.value.param == param


def test_tool_result_before_its_tool_use_is_rejected() -> None:
    body = copy.deepcopy(GOOD_MESSAGES)
    body["messages"] = [body["messages"][2]]
    with pytest.raises(ProtocolError) as caught:
        validate_request("messages", body)
    assert caught.value.param == "messages[0].content[0].tool_use_id"


@pytest.mark.parametrize(("path", "value", "param"), [
    (["input"], 5, "input"),
    (["input", 0, "role"], "robot", "input[0].role"),
    (["input", 0, "content", 0, "type"], "text", "input[0].content[0].type"),
    (["input", 1, "arguments"], {}, "input[1].arguments"),
    (["input", 2, "output"], 7, "input[2].output"),
    (["instructions"], ["x"], "instructions"),
    (["max_output_tokens"], -1, "max_output_tokens"),
    (["tools", 0, "name"], KeyError, "tools[0].name"),
    (["tools"], {"type": "function"}, "tools"),
])
def test_responses_errors(path: list, value: object, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_request("responses", _broken(GOOD_RESPONSES, path, value))
    assert caught.value.param == param


GOOD_CHAT = {
    "model": "m", "user": "u1",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "name": "ann", "content": [{"type": "text", "text": "hi"},
                                                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
}


def test_valid_chat_passes() -> None:
    validate_request("chat", GOOD_CHAT)


@pytest.mark.parametrize(("path", "value", "param"), [
    (["messages"], {}, "messages"),
    (["messages", 0], "hi", "messages[0]"),
    (["messages", 0, "role"], "robot", "messages[0].role"),
    (["messages", 1, "name"], "", "messages[1].name"),
    (["messages", 3, "tool_call_id"], 7, "messages[3].tool_call_id"),
    (["messages", 1, "content"], 5, "messages[1].content"),
    (["messages", 1, "content", 1], {"image_url": {}}, "messages[1].content[1]"),
    (["messages", 1, "content", 0, "text"], 5, "messages[1].content[0].text"),
    (["messages", 2, "tool_calls"], {}, "messages[2].tool_calls"),
    (["messages", 2, "tool_calls", 0, "function"], "f", "messages[2].tool_calls[0]"),
    (["messages", 2, "tool_calls", 0, "id"], "", "messages[2].tool_calls[0].id"),
    (["messages", 2, "tool_calls", 0, "function", "name"], "x" * 300, "messages[2].tool_calls[0].function.name"),
    (["tools"], {}, "tools"),
    (["tools", 0], "f", "tools[0]"),
    (["tools", 0, "function"], KeyError, "tools[0].function"),
    (["tools", 0, "function", "name"], KeyError, "tools[0].function.name"),
    (["user"], "", "user"),
])
def test_chat_errors(path: list, value: object, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_request("chat", _broken(GOOD_CHAT, path, value))
    assert caught.value.param == param


@pytest.mark.parametrize(("path", "value", "param"), [
    (["messages", 0], "hi", "messages[0]"),
    (["messages", 1, "content", 0], "t", "messages[1].content[0]"),
    (["messages", 1, "content", 1, "id"], "x" * 600, "messages[1].content[1].id"),
    (["messages", 2, "content", 0, "content", 0], {"type": "video"}, "messages[2].content[0].content[0]"),
    (["messages", 2, "content", 1, "source", "url"], 5, "messages[2].content[1].source.url"),
    (["messages", 2, "content", 2, "source", "type"], "ftp", "messages[2].content[2].source.type"),
    (["messages", 0], {"role": "system", "content": [{"type": "image"}]}, "messages[0].content"),
    (["system", 0, "text"], 5, "system[0]"),
    (["tools", 0], "f", "tools[0]"),
    (["tools", 1, "type"], 5, "tools[1].type"),
    (["stop_sequences"], ["a", 1], "stop_sequences"),
])
def test_more_messages_errors(path: list, value: object, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_request("messages", _broken(GOOD_MESSAGES, path, value))
    assert caught.value.param == param


@pytest.mark.parametrize(("path", "value", "param"), [
    (["input", 0], "hi", "input[0]"),
    (["input", 0, "type"], 5, "input[0].type"),
    (["input", 0, "content"], 5, "input[0].content"),
    (["input", 1, "call_id"], "", "input[1].call_id"),
    (["input", 2, "output"], [{"text": "no type"}], "input[2].output[0]"),
    (["input", 1], {"type": "custom_tool_call", "call_id": "c", "name": "f", "input": 5}, "input[1].input"),
    (["tools", 0], "f", "tools[0]"),
    (["tools", 0, "parameters"], "x", "tools[0].parameters"),
    (["tools", 0], {"type": "namespace", "name": "ns", "tools": "x"}, "tools[0].tools"),
    (["tools", 0], {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": ""}]},
     "tools[0].tools[0].name"),
])
def test_more_responses_errors(path: list, value: object, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_request("responses", _broken(GOOD_RESPONSES, path, value))
    assert caught.value.param == param
