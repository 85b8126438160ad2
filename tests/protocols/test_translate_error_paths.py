"""Every way a translator refuses a request names the field at fault, at any depth.

A translator walks every message and part of a request, and an agent's
request carries its whole session, so the walk builds a field's path only
for an error. These cases put the fault after a valid element (index 1, not
0) wherever the shape allows, so a path that loses or repeats an index fails.
The paths of canonical renderers (``messages[i]`` of the canonical
conversation, where consecutive turns of one role are merged) are as the
translators always reported them.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocols.translate import ProtocolError, translate_request

URL_IMAGE = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
URL_DOCUMENT = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def _messages(*turns: dict[str, Any]) -> dict[str, Any]:
    return {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}, *turns]}


def _chat(*turns: Any, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}, *turns], **fields}


def _responses(*items: Any, **fields: Any) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": "hi"}, *items], **fields}


def _gemini(*contents: Any, **fields: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}, *contents], **fields}


def _gemini_part(part: Any) -> dict[str, Any]:
    return _gemini({"role": "user", "parts": [{"text": "a"}, part]})


CASES = [
    # Messages client -> canonical
    ("messages", _messages({"role": "robot", "content": "x"}), "chat", "messages[1].role"),
    ("messages", _messages({"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "video"}]}),
     "chat", "messages[1].content[1].type"),
    ("messages", _messages({"role": "assistant", "content": [
        {"type": "text", "text": "a"}, {"type": "image", "source": {"type": "file", "file_id": "f"}}]}),
     "chat", "messages[1].content[1].source"),
    ("messages", _messages({"role": "assistant", "content": [
        {"type": "text", "text": "a"}, {"type": "document", "source": {"type": "file", "file_id": "f"}}]}),
     "chat", "messages[1].content[1].source.type"),
    ("messages", _messages({"role": "assistant", "content": [{"type": "text", "text": "a"}, {
        "type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "a"}, URL_DOCUMENT]}]}),
     "chat", "messages[1].content[1].content[1].type"),
    ("messages", _messages({"role": "assistant", "content": [{"type": "text", "text": "a"}, {
        "type": "tool_result", "tool_use_id": "t",
        "content": [{"type": "text", "text": "a"}, {"type": "image", "source": {"type": "file"}}]}]}),
     "chat", "messages[1].content[1].content[1].source"),
    # canonical -> Chat node, Responses node, Gemini node, Messages node
    ("messages", _messages({"role": "assistant", "content": "a"}, {"role": "user", "content": [URL_DOCUMENT]}),
     "chat", "messages[2]"),
    ("messages", _messages({"role": "assistant", "content": [{"type": "text", "text": "a"}, URL_IMAGE]}),
     "responses", "messages[1]"),
    ("messages", _messages({"role": "assistant", "content": "a"}, {"role": "user", "content": [URL_IMAGE]}),
     "gemini", "messages[2]"),
    ("messages", _messages({"role": "assistant", "content": "a"}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "nowhere", "content": "x"}]}), "gemini", "messages[2]"),
    ("chat", _chat({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "nope"}}]}),
     "gemini", "messages[1]"),
    ("chat", _chat({"role": "assistant", "content": None, "tool_calls": [
        CALL, {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}),
     "messages", "messages[1].tool_calls"),
    ("gemini", _gemini({"role": "user", "parts": [{"functionCall": {"name": "f", "args": {}}}]}),
     "chat", "messages[0]"),
    # Chat client -> canonical
    ("chat", _chat("not an object"), "messages", "messages[1]"),
    ("chat", _chat({"role": "robot", "content": "x"}), "messages", "messages[1].role"),
    ("chat", _chat({"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}),
     "messages", "messages[1].content[1]"),
    ("chat", _chat({"role": "system", "content": 5}), "messages", "messages[1].content"),
    ("chat", _chat({"role": "user", "content": 5}), "messages", "messages[1].content"),
    ("chat", _chat({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]}),
     "messages", "messages[1].content[1].image_url.url"),
    ("chat", _chat({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "file", "file": {}}]}),
     "messages", "messages[1].content[1].file"),
    ("chat", _chat({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "input_audio"}]}),
     "messages", "messages[1].content[1].type"),
    ("chat", _chat({"role": "assistant", "content": 5}), "messages", "messages[1].content"),
    ("chat", _chat({"role": "assistant", "content": None, "tool_calls": [CALL, {"id": "c2", "type": "function"}]}),
     "messages", "messages[1].tool_calls[1].function"),
    ("chat", _chat({"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a"},
                                                                      {"type": "image_url"}]}),
     "messages", "messages[1].content[1]"),
    ("chat", _chat(tools=[{"type": "function", "function": {"name": "f"}}, {"type": "custom", "custom": {}}]),
     "messages", "tools[1]"),
    # Responses client -> canonical
    ("responses", _responses({"role": "robot", "content": "x"}), "chat", "input[1].role"),
    ("responses", _responses({"role": "user", "content": [{"type": "input_text", "text": "a"},
                                                          {"type": "input_file", "file_id": "file_1"}]}),
     "chat", "input[1].content[1]"),
    ("responses", _responses({"type": "function_call_output", "call_id": "c1",
                              "output": [{"type": "input_text", "text": "a"}, {"type": "input_audio"}]}),
     "chat", "input[1].output[1]"),
    ("responses", _responses({"type": "function_call_output", "call_id": "c1", "output": [
        {"type": "input_file", "file_data": "data:application/pdf;base64,QQ=="}]}), "chat", "input[1].output"),
    ("responses", _responses({"type": "item_reference", "id": "x"}), "chat", "input[1].type"),
    ("responses", _responses(tools=[{"type": "function", "name": "f"}, {"type": "namespace", "name": "n", "tools": [
        {"type": "function", "name": "g"}, {"type": "warp"}]}]), "chat", "tools[1].tools[1].type"),
    # Gemini client -> canonical
    ("gemini", _gemini("not an object"), "chat", "contents[1]"),
    ("gemini", _gemini({"role": "system", "parts": []}), "chat", "contents[1].role"),
    ("gemini", _gemini({"role": "user", "parts": "x"}), "chat", "contents[1].parts"),
    ("gemini", _gemini_part("x"), "chat", "contents[1].parts[1]"),
    ("gemini", _gemini_part({"text": 5}), "chat", "contents[1].parts[1].text"),
    ("gemini", _gemini_part({"inlineData": "x"}), "chat", "contents[1].parts[1].inlineData"),
    ("gemini", _gemini_part({"inlineData": {"mimeType": "image/png"}}), "chat", "contents[1].parts[1].inlineData"),
    ("gemini", _gemini_part({"fileData": {"mimeType": "image/png"}}), "chat", "contents[1].parts[1].fileData"),
    ("gemini", _gemini_part({"functionCall": {"args": {}}}), "chat", "contents[1].parts[1].functionCall.name"),
    ("gemini", _gemini_part({"functionCall": {"name": "f", "args": [1]}}), "chat",
     "contents[1].parts[1].functionCall.args"),
    ("gemini", _gemini_part({"functionResponse": {"name": "f", "response": [1]}}), "chat",
     "contents[1].parts[1].functionResponse.response"),
    ("gemini", _gemini_part({"functionResponse": {"name": "f", "response": {}}}), "chat",
     "contents[1].parts[1].functionResponse"),
    ("gemini", _gemini_part({"banana": 1}), "chat", "contents[1].parts[1]"),
    ("gemini", _gemini(systemInstruction={"parts": [{"text": "a"}, {"inlineData": {}}]}), "chat",
     "systemInstruction.parts[1]"),
    ("gemini", _gemini(tools=[{"functionDeclarations": [{"name": "f"}]}, "x"]), "chat", "tools[1]"),
    ("gemini", _gemini(tools=[{"googleSearch": {}}, {"functionDeclarations": [{"name": "f"}, {"description": "d"}]}]),
     "chat", "tools[1].functionDeclarations[1].name"),
    ("gemini", _gemini(tools=[{"functionDeclarations": [{"name": "f"}, {"name": "g", "parametersJsonSchema": 5}]}]),
     "chat", "tools[0].functionDeclarations[1].parameters"),
]


@pytest.mark.parametrize(("client", "body", "node", "param"), CASES)
def test_a_refused_request_names_the_field(client: str, body: dict[str, Any], node: str, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        translate_request(client, body, node, "m")
    assert caught.value.param == param
    assert caught.value.message


def test_the_same_requests_without_the_fault_translate() -> None:
    """The cases' valid parts really are valid: without the faulty element, each translates."""
    assert translate_request("messages", _messages({"role": "assistant", "content": [{"type": "text", "text": "a"}]}),
                             "chat", "m")
    assert translate_request("chat", _chat({"role": "assistant", "content": None, "tool_calls": [CALL]}),
                             "messages", "m")
    assert translate_request("responses", _responses({"role": "user", "content": [
        {"type": "input_text", "text": "a"}]}), "chat", "m")
    assert translate_request("gemini", _gemini({"role": "user", "parts": [{"text": "a"}]}),
                             "chat", "m")
