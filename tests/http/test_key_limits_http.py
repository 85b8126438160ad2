"""Key limits over HTTP: the admin API and /v1/keys take them; past them, 402 and 429 in each endpoint's shape.

The edges of the windows and rates are tested on the ledgers with their own clock
(tests/ledger/test_key_limits.py); here a real gateway answers real clients, and
the concurrency limit is held by a real slow stream.
"""

from __future__ import annotations

import http.client
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import openai
import pytest

from tests.conftest import base_config

ADMIN = "admin-token-for-limit-tests-0123456789"


def request(gateway: Any, method: str, path: str, body: Any = None,
            key: str | None = None) -> tuple[int, Any, http.client.HTTPMessage]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.server.port, timeout=20)
    try:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None, response.headers
    finally:
        conn.close()


@pytest.fixture
def gateway(start_gateway: Any, tmp_path: Any) -> Any:
    nodes = [{"id": "mock", "provider": "mock", "mock": {"token_delay_ms": 40},
              "models": ["gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]}]
    return start_gateway(base_config(tmp_path / "state", nodes, admin={"token": ADMIN}))


def new_key(gateway: Any, **options: Any) -> dict[str, Any]:
    status, created, _ = request(gateway, "POST", "/admin/accounts/test/keys", {"name": "dev", **options}, ADMIN)
    assert status == 201, created
    return created


CHAT = ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 20})
MESSAGES = ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 20,
                             "messages": [{"role": "user", "content": "hi"}]})
RESPONSES = ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 20})
EMBEDDINGS = ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"})


def test_the_admin_api_and_v1_keys_take_limits(gateway: Any) -> None:
    created = new_key(gateway, limit_usd="20", limit_period="day", rpm=60, tpm=100000, max_concurrent=4)
    assert (created["limit_usd"], created["limit_period"], created["rpm"], created["tpm"],
            created["max_concurrent"]) == ("20.000000", "day", 60, 100000, 4)
    assert created["window_spent_usd"] == "0.000000" and created["window_resets_at"] > created["created_at"]
    for body, param in (({"limit_usd": "1", "limit_period": "year"}, "limit_period"),
                        ({"limit_period": "day"}, "limit_period"), ({"rpm": 0}, "rpm"), ({"tpm": 1.5}, "tpm"),
                        ({"max_concurrent": True}, "max_concurrent"), ({"rpm": 10**7}, "rpm")):
        status, error, _ = request(gateway, "POST", "/admin/accounts/test/keys", {"name": "x", **body}, ADMIN)
        assert status == 400 and error["error"]["param"] == param, (body, error)
    status, manager, _ = request(gateway, "POST", "/admin/accounts/test/keys",
                                 {"name": "console", "kind": "management"}, ADMIN)
    status, mine, _ = request(gateway, "POST", "/v1/keys", {"name": "agent", "rpm": 5, "limit_usd": "2",
                                                             "limit_period": "week"}, manager["key"])
    assert status == 201 and mine["rpm"] == 5 and mine["limit_period"] == "week"
    status, listing, _ = request(gateway, "GET", "/v1/keys", key=manager["key"])
    shown = next(k for k in listing["data"] if k["key_id"] == mine["key_id"])
    assert shown["rpm"] == 5 and shown["window_spent_usd"] == "0.000000"


def test_past_the_daily_limit_402_budget_exceeded_names_the_reset(gateway: Any) -> None:
    key = new_key(gateway, limit_usd="0.000001", limit_period="day")["key"]
    status, _, _ = request(gateway, "POST", *CHAT, key=key)  # admitted with something left; costs more
    assert status == 200
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    status, error, _ = request(gateway, "POST", *CHAT, key=key)
    assert status == 402 and error["error"]["code"] == "budget_exceeded"
    assert error["error"]["type"] == "insufficient_quota" and f"resets at {tomorrow}" in error["error"]["message"]
    status, error, _ = request(gateway, "POST", *MESSAGES, key=key)
    assert status == 402 and error["type"] == "error" and error["error"]["type"] == "billing_error"
    assert "daily spend limit" in error["error"]["message"]
    status, listing, _ = request(gateway, "GET", "/admin/accounts/test", key=ADMIN)
    shown = next(k for k in listing["keys"] if k["limit_period"] == "day")
    assert shown["window_spent_usd"] != "0.000000"


def test_past_rpm_429_with_ratelimit_headers_in_every_shape(gateway: Any) -> None:
    key = new_key(gateway, rpm=1)["key"]
    assert request(gateway, "POST", *CHAT, key=key)[0] == 200
    for path, body in (CHAT, RESPONSES, EMBEDDINGS):
        status, error, headers = request(gateway, "POST", path, body, key)
        assert status == 429, (path, error)
        assert error["error"]["type"] == "rate_limit_error" and error["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert headers["x-ratelimit-limit-requests"] == "1" and headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        assert headers["x-infermesh-node"] == "gateway"
    status, error, headers = request(gateway, "POST", *MESSAGES, key=key)
    assert status == 429 and error == {"type": "error", "error": {"type": "rate_limit_error",
                                                                   "message": error["error"]["message"]}}
    assert "requests per minute" in error["error"]["message"] and "Retry-After" in headers
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_past_tpm_429_with_the_tokens_trio(gateway: Any) -> None:
    key = new_key(gateway, tpm=10)["key"]
    assert request(gateway, "POST", *CHAT, key=key)[0] == 200  # the mock answers with more than 10 tokens
    status, error, headers = request(gateway, "POST", *CHAT, key=key)
    assert status == 429 and "tokens per minute" in error["error"]["message"]
    assert headers["x-ratelimit-limit-tokens"] == "10" and headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-reset-tokens"].endswith("s")
    assert "x-ratelimit-limit-requests" not in headers


def test_max_concurrent_is_held_by_a_real_slow_stream(gateway: Any) -> None:
    key = new_key(gateway, max_concurrent=1)["key"]
    conn = http.client.HTTPConnection("127.0.0.1", gateway.server.port, timeout=20)
    try:
        body = {**CHAT[1], "stream": True}
        conn.request("POST", CHAT[0], json.dumps(body), {"Content-Type": "application/json",
                                                          "Authorization": f"Bearer {key}"})
        stream = conn.getresponse()
        assert stream.status == 200
        assert stream.readline().startswith(b"data: ")  # the stream is running (tokens every 40 ms)
        status, error, headers = request(gateway, "POST", *CHAT, key=key)
        assert status == 429 and "max_concurrent 1" in error["error"]["message"]
        assert headers["x-ratelimit-limit-requests"] == "1" and headers["Retry-After"] == "1"
        rest = stream.read()
        assert rest.rstrip().endswith(b"data: [DONE]")
    finally:
        conn.close()
    assert request(gateway, "POST", *CHAT, key=key)[0] == 200  # the slot is free once the stream ended
