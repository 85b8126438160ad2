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


@pytest.mark.parametrize("endpoint,body,status", [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, 200),
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
     200),
    ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 20, "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]}, 200),
    ("/v1/responses", {"model": "gpt-4o-mini", "stream": True, "input": "hi"}, 200),
    ("/v1/chat/completions", {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, 404),
], ids=["chat", "chat-stream", "messages-stream-translated", "responses-stream-translated", "error"])
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
