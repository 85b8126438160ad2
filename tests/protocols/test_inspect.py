"""The light request check every request passes, and the prompt estimate for unreported usage."""

from __future__ import annotations

import pytest

from gateway.protocols.canonical import ProtocolError
from gateway.protocols.inspect import estimate_prompt_tokens, inspect_request


def test_facts_of_a_chat_request():
    facts = inspect_request("chat", {"model": "m", "stream": True, "max_completion_tokens": 50,
                                     "stream_options": {"include_usage": True}, "fallback_models": ["x"],
                                     "messages": [{"role": "user", "content": "hi"}]}, 400)
    assert (facts.model, facts.stream, facts.max_output_tokens, facts.include_usage) == ("m", True, 50, True)
    assert facts.fallback_models == ["x"] and facts.prompt_tokens_estimate == 100


@pytest.mark.parametrize("endpoint,body,param", [
    ("messages", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ("embeddings", {"model": "m", "input": []}, "input"),
    ("embeddings", {"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}, "n"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": []}, "stream_options"),
    ("chat", {"model": "m", "messages": [{"role": "user", "content": "x"}], "fallback_models": ["a"] * 9},
     "fallback_models"),
])
def test_invalid_fields_are_named(endpoint, body, param):
    with pytest.raises(ProtocolError) as caught:
        inspect_request(endpoint, body, 100)
    assert caught.value.param == param


def test_prompt_estimate_counts_text_not_json_ids_or_images():
    assert estimate_prompt_tokens({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}) == 1
    with_image = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}},
        {"type": "text", "text": "describe this picture please"}]}]}
    assert estimate_prompt_tokens(with_image) == 7  # 28 characters of text; the image's base64 is not text
    responses = {"instructions": "be brief", "input": [{"type": "message", "role": "user", "content": "hello"}],
                 "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city"}]}
    assert estimate_prompt_tokens(responses) == (len("be brief") + len("hello") + len("get_weather")
                                                 + len("Weather for a city") + 3) // 4
