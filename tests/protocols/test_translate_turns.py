"""How a session's turns render for each node protocol, pinned.

The renderers go over a conversation's turns and parts in plain loops, without a comprehension or a sort
key per turn (an agent's request carries hundreds of turns). These cases cover what those loops decide:
tool results answered out of call order and with text before them, an error result carrying an image
between two texts, and empty texts. The expected bodies are what the renderers produced before those
loops were rewritten (01741ed).
"""

from __future__ import annotations

from gateway.protocols.translate import translate_request

PNG = "iVBORw0KGgo="
MESSAGES = {"max_tokens": 50, "messages": [
    {"role": "user", "content": "Run both."},
    {"role": "assistant", "content": [{"type": "text", "text": "Calling."},
                                      {"type": "tool_use", "id": "A", "name": "f", "input": {"x": 1}},
                                      {"type": "tool_use", "id": "B", "name": "g", "input": {"y": 2}}]},
    {"role": "user", "content": [
        {"type": "text", "text": "here:"},
        {"type": "tool_result", "tool_use_id": "B", "content": [{"type": "text", "text": "b-out"}]},
        {"type": "tool_result", "tool_use_id": "A", "is_error": True, "content": [
            {"type": "text", "text": "a1"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "a2"}]},
        {"type": "text", "text": ""}]},
    {"role": "assistant", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Done."}]},
    {"role": "user", "content": "ok"}]}
CHAT = {"messages": [
    {"role": "user", "content": "Run both."},
    {"role": "assistant", "content": "Calling.", "tool_calls": [
        {"id": "A", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
        {"id": "B", "type": "function", "function": {"name": "g", "arguments": "{\"y\":2}"}}]},
    {"role": "user", "content": "here:"},
    {"role": "tool", "tool_call_id": "B", "content": "b-out"},
    {"role": "tool", "tool_call_id": "A", "content": "a-out"},
    {"role": "user", "content": "ok"}]}

EXPECTED_CHAT = {
    "model": "m",
    "messages": [
        {"role": "user", "content": "Run both."},
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [
                {"id": "A", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                {"id": "B", "type": "function", "function": {"name": "g", "arguments": "{\"y\":2}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "B", "content": "b-out"},
        {"role": "tool", "tool_call_id": "A", "content": "a1a2"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "here:"},
                {"type": "text", "text": "(images returned by tool call A)"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": ""},
            ],
        },
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "ok"},
    ],
    "max_completion_tokens": 50,
}

EXPECTED_RESPONSES = {
    "model": "m",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Run both."}]},
        {"role": "assistant", "content": "Calling."},
        {"type": "function_call", "call_id": "A", "name": "f", "arguments": "{\"x\":1}"},
        {"type": "function_call", "call_id": "B", "name": "g", "arguments": "{\"y\":2}"},
        {"type": "function_call_output", "call_id": "B", "output": "b-out"},
        {
            "type": "function_call_output",
            "call_id": "A",
            "output": [
                {"type": "input_text", "text": "a1"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                {"type": "input_text", "text": "a2"},
            ],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "here:"}, {"type": "input_text", "text": ""}]},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": [{"type": "input_text", "text": "ok"}]},
    ],
    "store": False,
    "max_output_tokens": 50,
}

EXPECTED_GEMINI = {
    "contents": [
        {"role": "user", "parts": [{"text": "Run both."}]},
        {
            "role": "model",
            "parts": [
                {"text": "Calling."},
                {
                    "functionCall": {"name": "f", "args": {"x": 1}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {
                    "functionCall": {"name": "g", "args": {"y": 2}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "f", "response": {"error": "a1a2"}}},
                {"functionResponse": {"name": "g", "response": {"output": "b-out"}}},
                {"text": "here:"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            ],
        },
        {"role": "model", "parts": [{"text": "Done."}]},
        {"role": "user", "parts": [{"text": "ok"}]},
    ],
    "generationConfig": {"maxOutputTokens": 50},
}

EXPECTED_MESSAGES = {
    "model": "m",
    "max_tokens": 8192,
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Run both."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "A", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "B", "name": "g", "input": {"y": 2}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "B", "content": [{"type": "text", "text": "b-out"}]},
                {"type": "tool_result", "tool_use_id": "A", "content": [{"type": "text", "text": "a-out"}]},
                {"type": "text", "text": "here:"},
                {"type": "text", "text": "ok"},
            ],
        },
    ],
}


def test_a_messages_session_for_a_chat_node() -> None:
    assert translate_request("messages", MESSAGES, "chat", "m") == EXPECTED_CHAT


def test_a_messages_session_for_a_responses_node() -> None:
    assert translate_request("messages", MESSAGES, "responses", "m") == EXPECTED_RESPONSES


def test_a_messages_session_for_a_gemini_node_answers_in_call_order() -> None:
    assert translate_request("messages", MESSAGES, "gemini", "m") == EXPECTED_GEMINI


def test_a_chat_session_for_a_messages_node_puts_tool_results_first() -> None:
    assert translate_request("chat", CHAT, "messages", "m") == EXPECTED_MESSAGES
