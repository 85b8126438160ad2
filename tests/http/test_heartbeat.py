"""A stream whose upstream goes quiet gets pings; both SDKs parse straight through them."""

from __future__ import annotations

import http.client
import json

import anthropic
import openai
import pytest

from tests.support.keys import TEST_KEY
from tests.conftest import base_config


@pytest.fixture
def slow_gateway(upstream, start_gateway, tmp_path, request):
    name = "hb-" + request.node.name
    upstream.control(name, chunk_delay_ms=250, tokens=3)
    nodes = [{"id": "up", "provider": "openai", "base_url": upstream.base(name),
              "models": ["gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]}]
    return start_gateway(base_config(tmp_path / "state", nodes, limits={"stream_heartbeat_s": 0.1}))


def raw_stream(gateway, path: str, body: dict) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]), timeout=10)
    conn.request("POST", path, json.dumps(body), {"x-api-key": TEST_KEY, "Content-Type": "application/json"})
    data = conn.getresponse().read()
    conn.close()
    return data


def test_messages_stream_gets_anthropic_pings(slow_gateway):
    data = raw_stream(slow_gateway, "/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
                                                     "messages": [{"role": "user", "content": "a b c"}]})
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in data
    assert data.rstrip().endswith(b'{"type":"message_stop"}')
    sdk = anthropic.Anthropic(base_url=slow_gateway.url, api_key=TEST_KEY, max_retries=0)
    with sdk.messages.stream(model="claude-sonnet-4-6", max_tokens=50,
                             messages=[{"role": "user", "content": "a b c"}]) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == "a b c"


def test_chat_stream_gets_comment_pings(slow_gateway):
    data = raw_stream(slow_gateway, "/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True,
                                                             "messages": [{"role": "user", "content": "a b c"}]})
    assert b"\n: ping\n\n" in data or data.startswith(b": ping")
    sdk = openai.OpenAI(base_url=slow_gateway.url + "/v1", api_key=TEST_KEY, max_retries=0)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c"}], stream=True) if chunk.choices)
    assert text == "a b c"
