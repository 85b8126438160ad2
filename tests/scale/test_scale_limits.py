"""Key limits hold across gateways sharing one Redis: two gateways on a real redis-server, one key."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from tests.scale.conftest import admin_call, chat, needs_redis, port_of, redis_config

pytestmark = needs_redis


def test_rpm_and_max_concurrent_hold_across_two_gateways(redis_server: Any, start_redis_gateway: Any,
                                                         tmp_path: Path) -> None:
    config = redis_config(tmp_path, redis_server.url, token_delay_ms=40)
    first, second = (port_of(start_redis_gateway(config)) for _ in range(2))
    status, key = admin_call(first, "POST", "/admin/accounts/scale/keys", {"name": "agent", "rpm": 3})
    assert status == 201
    assert chat(first, key["key"])[0] == 200
    assert chat(second, key["key"])[0] == 200
    assert chat(first, key["key"])[0] == 200
    status, error = chat(second, key["key"])  # the fourth in the minute, on the other gateway
    assert status == 429 and "3 requests per minute" in error["error"]["message"]

    status, solo = admin_call(second, "POST", "/admin/accounts/scale/keys", {"name": "one", "max_concurrent": 1})
    conn = http.client.HTTPConnection("127.0.0.1", first, timeout=20)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "slow stream"}], "max_tokens": 20,
             "stream": True}), {"Content-Type": "application/json", "Authorization": f"Bearer {solo['key']}"})
        stream = conn.getresponse()
        assert stream.status == 200 and stream.readline().startswith(b"data: ")
        status, error = chat(second, solo["key"])  # held by the stream on the first gateway
        assert status == 429 and "max_concurrent 1" in error["error"]["message"]
        assert stream.read().rstrip().endswith(b"data: [DONE]")
    finally:
        conn.close()
    assert chat(second, solo["key"])[0] == 200
    status, account = admin_call(first, "GET", "/admin/accounts/scale")
    shown = {k["name"]: k for k in account["keys"]}
    assert shown["agent"]["rpm"] == 3 and shown["one"]["max_concurrent"] == 1
