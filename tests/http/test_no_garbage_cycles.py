"""Requests must not leave reference cycles behind.

A cycle per request (say, a close callback holding the request while the
handler holds the callback) survives into the oldest GC generation and makes
CPython run full collections every fraction of a second under load: measured
35-78 ms pauses, the gateway's whole p99. With the GC disabled, requests should
leave nothing for it to find.
"""

from __future__ import annotations

import gc
import http.client
import json

import pytest

from tests.support.keys import TEST_KEY
from tests.conftest import base_config

MODELS = ["gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]
# An agent's turn: tools offered, a tool call and its result in the history (the gateway raises the collector's
# threshold on the strength of this test, so the translators' tool paths are covered too).
AGENT_TURN = {
    "model": "claude-sonnet-4-6", "max_tokens": 20, "stream": True,
    "tools": [{"name": "Read", "description": "read a file",
               "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "read the config"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Reading it."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "Read",
                                           "input": {"file_path": "/etc/app.yaml"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "port: 8080"}]},
                                     {"type": "text", "text": "what port is it?"}]},
    ],
}


@pytest.mark.parametrize("endpoint,body,status", [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, 200),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
     200),
    ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 20, "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]}, 200),
    ("/v1/responses", {"model": "gpt-4o-mini", "stream": True, "input": "hi"}, 200),
    ("/v1/messages", AGENT_TURN, 200),
    ("/v1/chat/completions", {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, 404),
], ids=["chat", "chat-stream", "messages-stream-translated", "responses-stream-translated",
        "agent-turn-translated", "error"])
def test_requests_leave_no_cycles(upstream, start_gateway, tmp_path, endpoint, body, status):
    nodes = [{"id": "u", "provider": "openai", "base_url": upstream.base("cycles"), "models": MODELS}]
    gateway = start_gateway(base_config(tmp_path / "state", nodes))
    conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]), timeout=10)
    payload = json.dumps(body)

    def call() -> None:
        conn.request("POST", endpoint, payload, {"x-api-key": TEST_KEY, "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == status

    for _ in range(10):  # warm up: caches, label children, pools
        call()
    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            call()
        found = gc.collect()
    finally:
        gc.enable()
    conn.close()
    assert found < 100, f"{found} objects in reference cycles after 100 requests"
