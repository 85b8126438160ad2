"""Billing end to end: the admin API, /v1/balance and /v1/usage, and what a client is charged.

The gateway runs in-process (conftest's ``start_gateway``) in front of the mock
upstream process; clients are the official SDKs or plain HTTP. The mock's
token counts are a fixed rule (about four characters a token, twelve output
words unless capped by ``max_tokens``), so every bill can be checked to the
nano-dollar.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import openai
import pytest

from gateway.ledger.money import nano_to_usd, usd_to_nano
from gateway.upstream.mock_script import estimate_tokens
from tests.support.keys import TEST_KEY
from tests.conftest import base_config

ADMIN_TOKEN = "admin-token-for-billing-tests-0123456789"
# USD per 1M tokens in base_config -> nano-dollars per token (x 1000).
RATES = {"gpt-4o-mini": (150, 600), "claude-sonnet-4-6": (3000, 15000)}


# -- helpers ---------------------------------------------------------------------------------


def http_call(gateway: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> tuple[int, Any, http.client.HTTPResponse]:
    port = int(gateway.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    conn.request(method, path, data, all_headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload
    return response.status, parsed, response


def admin(gateway: Any, method: str, path: str, body: Any = None, raw: bytes | None = None,
          token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    status, parsed, _ = http_call(gateway, method, path, body, {"Authorization": f"Bearer {token}"}, raw)
    return status, parsed


def as_key(gateway: Any, path: str, key: str) -> tuple[int, Any]:
    status, parsed, _ = http_call(gateway, "GET", path, headers={"Authorization": f"Bearer {key}"})
    return status, parsed


def new_account(gateway: Any, account_id: str, balance_usd: str = "10", **key_options: Any) -> tuple[str, str]:
    """An account and one key on it; returns (key plaintext, key_id)."""
    status, body = admin(gateway, "POST", "/admin/accounts", {"id": account_id, "balance_usd": balance_usd})
    assert status == 201, body
    return new_key(gateway, account_id, **key_options)


def new_key(gateway: Any, account_id: str, **options: Any) -> tuple[str, str]:
    status, body = admin(gateway, "POST", f"/admin/accounts/{account_id}/keys", {"name": "test key", **options})
    assert status == 201, body
    assert body["key"].startswith("sk-")
    return body["key"], body["key_id"]


def balance_nano(gateway: Any, key: str) -> int:
    status, body = as_key(gateway, "/v1/balance", key)
    assert status == 200, body
    return usd_to_nano(body["balance_usd"])


def sdk(gateway: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=20)


def chat_body(text: str = "bill me please", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


@pytest.fixture
def gateway(upstream, start_gateway, tmp_path, request):
    """One OpenAI-protocol node on the mock upstream (its own virtual node) and the admin API on."""
    name = "billing-" + request.node.name.replace("[", "_").replace("]", "_")
    nodes = [{"id": "up", "provider": "openai", "base_url": upstream.base(name), "api_key": "sk-upstream-secret",
              "models": {"gpt-4o-mini": "up-model", "claude-sonnet-4-6": "up-claude",
                         "text-embedding-3-small": "up-embed"}}]
    config = base_config(tmp_path / "state", nodes, admin={"token": ADMIN_TOKEN})
    running = start_gateway(config)
    running.node_name = name
    running.state_dir = tmp_path / "state"
    return running


# -- the admin API -------------------------------------------------------------------------------


def test_admin_account_lifecycle(gateway):
    status, body = admin(gateway, "POST", "/admin/accounts", {"id": "acme", "balance_usd": "12.5"})
    assert status == 201
    assert body == {"id": "acme", "balance_usd": "12.500000", "reserved_usd": "0.000000",
                    "available_usd": "12.500000", "keys": []}
    assert admin(gateway, "POST", "/admin/accounts", {"id": "acme"})[0] == 409
    status, body = admin(gateway, "POST", "/admin/accounts", {"id": "empty"})
    assert status == 201 and body["balance_usd"] == "0.000000"
    key, key_id = new_key(gateway, "acme", models=["gpt-4o-mini"], limit_usd=2, expires_at=4102444800)
    status, body = admin(gateway, "GET", "/admin/accounts/acme")
    assert status == 200
    (listed,) = body["keys"]
    assert listed["key_id"] == key_id and listed["prefix"] == key[:len(listed["prefix"])]
    assert listed["models"] == ["gpt-4o-mini"] and listed["limit_usd"] == "2.000000"
    assert listed["expires_at"] == 4102444800 and listed["revoked"] is False
    assert key not in json.dumps(body)  # the plaintext is shown once, at creation
    status, body = admin(gateway, "GET", "/admin/accounts")
    assert status == 200 and [a["id"] for a in body["data"]] == ["acme", "empty", "test"]
    assert admin(gateway, "GET", "/admin/accounts/nobody")[0] == 404
    assert admin(gateway, "POST", "/admin/accounts/nobody/keys", {"name": "x"})[0] == 404
    assert admin(gateway, "POST", "/admin/accounts/nobody/credit", {"amount_usd": "1", "reference": "r"})[0] == 404


def test_admin_requires_the_token(gateway):
    for token in ("", "wrong-token", ADMIN_TOKEN + "x", TEST_KEY):
        status, body = admin(gateway, "GET", "/admin/accounts", token=token)
        assert status == 401 and body["error"]["type"] == "authentication_error"
        status, _ = admin(gateway, "POST", "/admin/accounts", {"id": "sneaky"}, token=token)
        assert status == 401
    assert admin(gateway, "GET", "/admin/accounts/sneaky")[0] == 404  # nothing was created


def test_admin_api_is_absent_without_a_token(openai_gateway):
    status, body, _ = http_call(openai_gateway, "GET", "/admin/accounts", headers={"Authorization": "Bearer x"})
    assert status == 404 and body["error"]["type"] == "not_found_error"


BAD_ADMIN_BODIES = [
    ("negative credit", "credit", {"amount_usd": "-1", "reference": "r"}, "amount_usd"),
    ("zero credit", "credit", {"amount_usd": "0", "reference": "r"}, "amount_usd"),
    ("credit finer than a nano", "credit", {"amount_usd": "1.0000000001", "reference": "r"}, "amount_usd"),
    ("credit not a number", "credit", {"amount_usd": "ten", "reference": "r"}, "amount_usd"),
    ("credit boolean", "credit", {"amount_usd": True, "reference": "r"}, "amount_usd"),
    ("credit huge", "credit", {"amount_usd": 1e300, "reference": "r"}, "amount_usd"),
    ("credit NaN string", "credit", {"amount_usd": "NaN", "reference": "r"}, "amount_usd"),
    ("credit exponent string", "credit", {"amount_usd": "1e3", "reference": "r"}, "amount_usd"),
    ("credit float too fine", "credit", {"amount_usd": 0.0000000001, "reference": "r"}, "amount_usd"),
    ("credit without reference", "credit", {"amount_usd": "1"}, "reference"),
    ("credit empty reference", "credit", {"amount_usd": "1", "reference": ""}, "reference"),
    ("credit reference control char", "credit", {"amount_usd": "1", "reference": "a\nb"}, "reference"),
    ("credit unknown field", "credit", {"amount_usd": "1", "reference": "r", "note": "x"}, "note"),
    ("key without name", "keys", {"models": ["gpt-4o-mini"]}, "name"),
    ("key unknown model", "keys", {"name": "k", "models": ["gpt-5-imaginary"]}, "models[0]"),
    ("key empty models", "keys", {"name": "k", "models": []}, "models"),
    ("key models not a list", "keys", {"name": "k", "models": "gpt-4o-mini"}, "models"),
    ("key zero limit", "keys", {"name": "k", "limit_usd": "0"}, "limit_usd"),
    ("key negative limit", "keys", {"name": "k", "limit_usd": -3}, "limit_usd"),
    ("key expires_at text", "keys", {"name": "k", "expires_at": "tomorrow"}, "expires_at"),
    ("key expires_at far", "keys", {"name": "k", "expires_at": 1e20}, "expires_at"),
    ("key unknown field", "keys", {"name": "k", "limit": "1"}, "limit"),
    ("account without id", "accounts", {"balance_usd": "1"}, "id"),
    ("account id with slash", "accounts", {"id": "a/b"}, "id"),
    ("account id not a string", "accounts", {"id": 7}, "id"),
    ("account negative balance", "accounts", {"id": "neg", "balance_usd": "-1"}, "balance_usd"),
    ("account unknown field", "accounts", {"id": "x", "keys": ["sk-x"]}, "keys"),
]


@pytest.mark.parametrize("what, target, body, param", BAD_ADMIN_BODIES, ids=[c[0] for c in BAD_ADMIN_BODIES])
def test_admin_rejects_bad_fields(gateway, what, target, body, param):
    path = {"credit": "/admin/accounts/test/credit", "keys": "/admin/accounts/test/keys",
            "accounts": "/admin/accounts"}[target]
    before = admin(gateway, "GET", "/admin/accounts/test")[1]
    status, answer = admin(gateway, "POST", path, body)
    assert status == 400, answer
    assert answer["error"]["type"] == "invalid_request_error" and answer["error"]["param"] == param
    assert admin(gateway, "GET", "/admin/accounts/test")[1] == before  # nothing changed


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"x"', b'{"amount_usd": NaN, "reference": "r"}'],
                         ids=["empty", "truncated", "array", "string", "NaN literal"])
def test_admin_rejects_bad_json(gateway, raw):
    status, answer = admin(gateway, "POST", "/admin/accounts/test/credit", raw=raw)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"


def test_amounts_as_numbers_are_exact_decimals(gateway):
    """0.1 as a JSON number is ten cents exactly (parsed as a decimal, never a binary float)."""
    status, body = admin(gateway, "POST", "/admin/accounts", {"id": "dec", "balance_usd": 0.1})
    assert status == 201 and body["balance_usd"] == "0.100000"
    status, body = admin(gateway, "POST", "/admin/accounts/dec/credit",
                         {"amount_usd": 0.000000007, "reference": "tiny"})
    assert status == 200 and body["balance_usd"] == "0.100000007"


def test_credit_is_applied_once_per_reference(gateway):
    key, _ = new_account(gateway, "payer", "1")
    first = admin(gateway, "POST", "/admin/accounts/payer/credit", {"amount_usd": "2.25", "reference": "inv-1"})
    assert first == (200, {"applied": True, "reference": "inv-1", "amount_usd": "2.250000", "account": "payer",
                           "balance_usd": "3.250000", "reserved_usd": "0.000000", "available_usd": "3.250000"})
    second = admin(gateway, "POST", "/admin/accounts/payer/credit", {"amount_usd": "2.25", "reference": "inv-1"})
    assert second[0] == 200 and second[1]["applied"] is False and second[1]["balance_usd"] == "3.250000"
    third = admin(gateway, "POST", "/admin/accounts/payer/credit", {"amount_usd": "0.75", "reference": "inv-2"})
    assert third[1]["applied"] is True
    assert balance_nano(gateway, key) == usd_to_nano("4")


# -- refusals: 402, 403, 401 -------------------------------------------------------------------------


def test_402_when_balance_exhausted_openai_shape(gateway):
    key, _ = new_account(gateway, "poor", "0.000005")  # 5,000 nano: less than one request
    client = sdk(gateway, key)
    client.chat.completions.create(**chat_body())  # admitted: something was available
    assert balance_nano(gateway, key) < 0  # overrun by at most this one request
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**chat_body())
    assert caught.value.status_code == 402
    assert caught.value.body["type"] == "insufficient_quota"
    assert caught.value.body["code"] == "insufficient_quota"
    assert "balance" in caught.value.body["message"]
    with pytest.raises(openai.APIStatusError) as caught:  # streaming is refused the same way, before any byte
        list(client.chat.completions.create(**chat_body(), stream=True))
    assert caught.value.status_code == 402
    status, body = admin(gateway, "POST", "/admin/accounts/poor/credit", {"amount_usd": "1", "reference": "top"})
    assert status == 200 and body["applied"]
    assert client.chat.completions.create(**chat_body()).usage.completion_tokens == 12  # topped up: served


def test_402_on_messages_is_anthropic_billing_error(gateway):
    key, _ = new_account(gateway, "broke", "0")
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                               messages=[{"role": "user", "content": "hello"}])
    assert caught.value.status_code == 402
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "billing_error"
    assert upstream_requests(gateway) == 0


def upstream_requests(gateway) -> int:
    import urllib.request
    url = gateway.config.nodes[0].base_url.split("/n/")[0] + f"/_stats/{gateway.node_name}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())["requests"]


def test_key_spend_limit_is_enforced(gateway):
    key, _ = new_account(gateway, "limited", "10", limit_usd="0.000005")
    client = sdk(gateway, key)
    client.chat.completions.create(**chat_body())
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**chat_body())
    assert caught.value.status_code == 402 and caught.value.body["code"] == "budget_exceeded"


def test_403_for_a_model_the_key_may_not_use(gateway):
    key, _ = new_account(gateway, "narrow", "10", models=["Claude-Sonnet-4.6"])  # an alias, resolved
    status, body = admin(gateway, "GET", "/admin/accounts/narrow")
    assert body["keys"][0]["models"] == ["claude-sonnet-4-6"]
    client = sdk(gateway, key)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(**chat_body())
    assert caught.value.status_code == 403
    assert caught.value.body["type"] == "permission_error" and caught.value.body["param"] == "model"
    with pytest.raises(openai.PermissionDeniedError):  # nor through a fallback
        client.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"fallback_models": ["gpt-4o-mini"]})
    reply = client.chat.completions.create(model="claude-sonnet-4.6", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content
    assert upstream_requests(gateway) == 1  # refused requests never reached the upstream


def test_401_for_a_revoked_key(gateway):
    key, key_id = new_account(gateway, "revoking", "10")
    client = sdk(gateway, key)
    assert client.chat.completions.create(**chat_body()).choices
    status, body = admin(gateway, "DELETE", f"/admin/keys/{key_id}")
    assert status == 200 and body == {"key_id": key_id, "revoked": True}
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(**chat_body())
    assert caught.value.status_code == 401 and "revoked" in caught.value.body["message"]
    assert as_key(gateway, "/v1/balance", key)[0] == 401
    assert as_key(gateway, "/v1/usage", key)[0] == 401
    assert admin(gateway, "DELETE", f"/admin/keys/{key_id}")[0] == 200  # idempotent
    assert admin(gateway, "DELETE", "/admin/keys/key_000000000000")[0] == 404
    assert admin(gateway, "GET", "/admin/accounts/revoking")[1]["keys"][0]["revoked"] is True


def test_401_for_an_expired_key(gateway):
    expires = time.time() + 1.0
    key, _ = new_account(gateway, "expiring", "10", expires_at=round(expires, 3))
    past_key, _ = new_key(gateway, "expiring", expires_at=time.time() - 60)
    client = sdk(gateway, key)
    assert client.chat.completions.create(**chat_body()).choices
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(gateway, past_key).chat.completions.create(**chat_body())
    assert "expired" in caught.value.body["message"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(**chat_body())
    assert caught.value.status_code == 401 and "expired" in caught.value.body["message"]
    assert as_key(gateway, "/v1/balance", key)[0] == 401


def test_created_key_plaintext_never_reaches_disk_or_logs(upstream, start_gateway, tmp_path, capfd, caplog):
    state = tmp_path / "state"
    nodes = [{"id": "up", "provider": "openai", "base_url": upstream.base("billing-leak"), "api_key": "sk-up",
              "models": {"gpt-4o-mini": "up-model"}}]
    config = base_config(state, nodes, admin={"token": ADMIN_TOKEN}, logging={"access_log": True})
    config["models"] = {"gpt-4o-mini": config["models"]["gpt-4o-mini"]}
    gateway = start_gateway(config)
    key, key_id = new_account(gateway, "secretive", "10")
    client = sdk(gateway, key)
    client.chat.completions.create(**chat_body())
    list(client.chat.completions.create(**chat_body(), stream=True))
    anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0).messages.create(
        model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    as_key(gateway, "/v1/balance", key)
    as_key(gateway, "/v1/usage?limit=5", key)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    admin(gateway, "DELETE", f"/admin/keys/{key_id}")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(**chat_body())
    gateway.call(gateway.services.ledger.snapshot)
    gateway.stop()  # the final snapshot and usage flush happen at close
    files = [path for path in state.rglob("*") if path.is_file()]
    names = {path.name for path in files}
    assert {"snapshot.json", "usage.sqlite3"} <= names and any(n.startswith("journal-") for n in names)
    for secret in (key, TEST_KEY):
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{path.name} holds a plaintext key"
    with sqlite3.connect(state / "usage.sqlite3") as conn:  # the records are there (in columns), naming the key by id
        assert {row[0] for row in conn.execute("SELECT key_id FROM usage")} == {key_id}
    out, err = capfd.readouterr()
    assert '"kind":"access"' in out  # the access log was on and captured
    for secret in (key, TEST_KEY):
        assert secret not in out and secret not in err and secret not in caplog.text


# -- what a request costs --------------------------------------------------------------------------------


def expected_nano(model: str, input_tokens: int, output_tokens: int) -> int:
    input_rate, output_rate = RATES[model]
    return input_tokens * input_rate + output_tokens * output_rate


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-6"])
def test_cost_header_equals_usage_record_and_price_arithmetic(gateway, model):
    key, _ = new_account(gateway, "metered", "10")
    before = balance_nano(gateway, key)
    prompt = "the quick brown fox jumps over the lazy dog"
    reply = sdk(gateway, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}])
    completion = reply.parse()
    input_tokens = estimate_tokens("be brief " + prompt)  # the mock's rule: ~4 characters a token
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (input_tokens, 12)
    cost = expected_nano(model, input_tokens, 12)
    assert reply.headers["x-infermesh-cost-usd"] == nano_to_usd(cost)
    status, usage = as_key(gateway, "/v1/usage?limit=1", key)
    (record,) = usage["data"]
    assert record["cost_usd"] == reply.headers["x-infermesh-cost-usd"]
    assert (record["input_tokens"], record["output_tokens"], record["cached_tokens"]) == (input_tokens, 12, 0)
    assert record["model"] == model and record["node"] == "up" and record["status"] == 200
    assert record["estimated"] is False
    assert before - balance_nano(gateway, key) == cost


def test_usage_record_carries_the_responses_request_id(gateway):
    key, _ = new_account(gateway, "correlated", "10")
    reply = sdk(gateway, key).chat.completions.with_raw_response.create(**chat_body())
    (record,) = as_key(gateway, "/v1/usage?limit=1", key)[1]["data"]
    assert record["request_id"] == reply.headers["x-request-id"]


def test_cost_header_on_translated_messages_and_max_tokens(gateway):
    key, _ = new_account(gateway, "metered2", "10")
    before = balance_nano(gateway, key)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)
    raw = client.messages.with_raw_response.create(model="claude-sonnet-4.6", max_tokens=5,
                                                   messages=[{"role": "user", "content": "one two three"}])
    message = raw.parse()
    assert (message.usage.input_tokens, message.usage.output_tokens) == (estimate_tokens("one two three"), 5)
    cost = expected_nano("claude-sonnet-4-6", message.usage.input_tokens, 5)
    assert raw.headers["x-infermesh-cost-usd"] == nano_to_usd(cost)
    assert before - balance_nano(gateway, key) == cost


def test_a_fallback_is_billed_at_the_fallbacks_prices(upstream, start_gateway, tmp_path):
    nodes = [{"id": "broken", "provider": "openai", "base_url": upstream.base("billing-fallback-broken"),
              "api_key": "k", "models": {"claude-sonnet-4-6": "up-claude"}},
             {"id": "cheap", "provider": "openai", "base_url": upstream.base("billing-fallback-cheap"),
              "api_key": "k", "models": {"gpt-4o-mini": "up-model", "text-embedding-3-small": "up-embed"}}]
    upstream.control("billing-fallback-broken", status=500)
    gateway = start_gateway(base_config(tmp_path / "state", nodes, admin={"token": ADMIN_TOKEN}))
    key, _ = new_account(gateway, "thrifty", "10")
    reply = sdk(gateway, key).chat.completions.with_raw_response.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "fall back"}],
        extra_body={"fallback_models": ["gpt-4o-mini"]})
    assert reply.headers["x-infermesh-node"] == "cheap"
    usage = reply.parse().usage
    cost = expected_nano("gpt-4o-mini", usage.prompt_tokens, usage.completion_tokens)
    assert reply.headers["x-infermesh-cost-usd"] == nano_to_usd(cost)
    (record,) = as_key(gateway, "/v1/usage", key)[1]["data"]
    assert record["model"] == "gpt-4o-mini" and record["cost_usd"] == nano_to_usd(cost)


# -- concurrency -----------------------------------------------------------------------------------------


def test_concurrent_requests_cannot_overspend(gateway, upstream):
    """200 at once against money for ~10.5 reservations: at most 11 admitted, the rest 402."""
    upstream.control(gateway.node_name, first_byte_ms=1500)  # admitted requests stay in flight together
    body = json.dumps(chat_body("spend it all", max_tokens=10)).encode()
    input_rate, output_rate = RATES["gpt-4o-mini"]
    reservation = (len(body) // 4) * input_rate + 10 * output_rate  # the gateway's estimate, exactly
    funded = reservation * 21 // 2
    key, _ = new_account(gateway, "crowd", nano_to_usd(funded))
    port = int(gateway.url.rsplit(":", 1)[1])
    barrier = threading.Barrier(200)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.connect()
            barrier.wait(10)
            conn.request("POST", "/v1/chat/completions", body,
                         {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            conn.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    admitted = statuses.count(200)
    assert statuses.count(402) == 200 - admitted
    assert 10 <= admitted <= 11
    status, usage = as_key(gateway, "/v1/usage?limit=1000", key)
    assert len(usage["data"]) == admitted
    costs = [usd_to_nano(record["cost_usd"]) for record in usage["data"]]
    status, balance = as_key(gateway, "/v1/balance", key)
    final = usd_to_nano(balance["balance_usd"])
    assert final == funded - sum(costs)  # every admitted request was charged, exactly once
    assert final >= -max(costs)  # overrun bounded by one request, never by many
    assert balance["reserved_usd"] == "0.000000"


# -- abandoned streams -----------------------------------------------------------------------------------


def stream_then_hang_up(gateway: Any, key: str, path: str, body: Any, enough: Any) -> dict[str, Any]:
    """Start a stream, read until ``enough(received)``, close the socket; returns the request's usage record."""
    port = int(gateway.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    received = b""
    while not enough(received):
        received += response.read1(65536)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()

    def record() -> dict[str, Any] | None:
        rows = as_key(gateway, "/v1/usage?limit=1", key)[1]["data"]
        return rows[0] if rows else None

    assert wait_for(lambda: record() is not None)
    row = record()
    assert row is not None
    return row


def test_abandoned_stream_is_charged_for_what_was_generated(gateway, upstream):
    upstream.control(gateway.node_name, chunk_delay_ms=60, tokens=100)  # a six-second stream
    key, _ = new_account(gateway, "quitter", "10")
    before = balance_nano(gateway, key)
    row = stream_then_hang_up(gateway, key, "/v1/chat/completions", chat_body("go on", stream=True),
                              lambda received: received.count(b"data: ") >= 5)
    assert row["status"] == 499
    assert 0 < row["output_tokens"] < 100
    cost = expected_nano("gpt-4o-mini", row["input_tokens"], row["output_tokens"])
    assert row["cost_usd"] == nano_to_usd(cost)
    assert before - balance_nano(gateway, key) == cost
    assert as_key(gateway, "/v1/balance", key)[1]["reserved_usd"] == "0.000000"


class _AnthropicStreamHandler(BaseHTTPRequestHandler):
    """A minimal Anthropic Messages node: usage.output_tokens=1 up front (as Anthropic sends it), then
    ``DELTAS`` text deltas 40 ms apart, and the real output count only in the closing message_delta."""

    protocol_version = "HTTP/1.1"
    DELTAS = 60

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [("message_start", {"type": "message_start", "message": {
            "id": "msg_x", "type": "message", "role": "assistant", "model": "m", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}})]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": f" word{i:02d}"}})
                   for i in range(self.DELTAS)]
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                         "stop_sequence": None},
                                      "usage": {"output_tokens": self.DELTAS}}),
                   ("message_stop", {"type": "message_stop"})]
        try:
            for index, (name, data) in enumerate(events):
                frame = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
                if name == "content_block_delta":
                    time.sleep(0.04)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the gateway hung up: the client abandoned the stream

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def anthropic_node_gateway(start_gateway, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnthropicStreamHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    nodes = [{"id": "anth", "provider": "anthropic", "base_url": f"http://127.0.0.1:{server.server_port}",
              "api_key": "sk-ant-upstream", "models": {"claude-sonnet-4-6": "claude-upstream"}}]
    config = base_config(tmp_path / "state", nodes, admin={"token": ADMIN_TOKEN})
    config["models"] = {"claude-sonnet-4-6": config["models"]["claude-sonnet-4-6"]}
    yield start_gateway(config)
    server.shutdown()
    server.server_close()


STREAM_REQUESTS = {
    "messages": ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 200, "stream": True,
                                  "messages": [{"role": "user", "content": "talk"}]}, b"event: content_block_delta"),
    "chat": ("/v1/chat/completions", {"model": "claude-sonnet-4-6", "max_tokens": 200, "stream": True,
                                      "messages": [{"role": "user", "content": "talk"}]}, b'"content":'),
}


@pytest.mark.parametrize("endpoint", list(STREAM_REQUESTS))
def test_abandoned_stream_with_early_usage_is_charged_for_its_output(anthropic_node_gateway, endpoint):
    """Anthropic reports output_tokens=1 in message_start; an abandon must not bill only that one token."""
    gateway = anthropic_node_gateway
    key, _ = new_account(gateway, "early-usage", "10")
    before = balance_nano(gateway, key)
    path, body, marker = STREAM_REQUESTS[endpoint]
    conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]), timeout=10)
    conn.request("POST", path, json.dumps(body), {"x-api-key": key, "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    received = b""
    while received.count(marker) < 15:
        received += response.read1(65536)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert wait_for(lambda: as_key(gateway, "/v1/usage", key)[1]["data"] != [])
    (row,) = as_key(gateway, "/v1/usage", key)[1]["data"]
    assert row["status"] == 499
    assert 15 <= row["output_tokens"] < _AnthropicStreamHandler.DELTAS, row
    assert row["cost_usd"] == nano_to_usd(expected_nano("claude-sonnet-4-6", row["input_tokens"],
                                                        row["output_tokens"]))
    assert before - balance_nano(gateway, key) == usd_to_nano(row["cost_usd"])


@pytest.mark.parametrize("endpoint", list(STREAM_REQUESTS))
def test_completed_stream_is_charged_the_reported_usage(anthropic_node_gateway, endpoint):
    gateway = anthropic_node_gateway
    key, _ = new_account(gateway, "full-usage", "10")
    path, body, _ = STREAM_REQUESTS[endpoint]
    status, _, _ = http_call(gateway, "POST", path, body, {"x-api-key": key})
    assert status == 200
    (row,) = as_key(gateway, "/v1/usage", key)[1]["data"]
    assert (row["status"], row["input_tokens"], row["output_tokens"]) == (200, 10, _AnthropicStreamHandler.DELTAS)
    assert row["estimated"] is False
    assert row["cost_usd"] == nano_to_usd(expected_nano("claude-sonnet-4-6", 10, _AnthropicStreamHandler.DELTAS))


# -- a caller's own balance and usage ----------------------------------------------------------------------


def test_balance_and_usage_show_only_the_callers_account(gateway):
    key_a, _ = new_account(gateway, "alice", "5")
    key_a2, _ = new_key(gateway, "alice")  # a second key on the same account sees the same records
    key_b, _ = new_account(gateway, "bob", "5")
    costs_a = []
    for index in range(3):
        reply = sdk(gateway, key_a).chat.completions.with_raw_response.create(**chat_body(f"alice {index}"))
        costs_a.append(reply.headers["x-infermesh-cost-usd"])
        time.sleep(0.01)
    for index in range(2):
        sdk(gateway, key_b).chat.completions.create(**chat_body(f"bob {index}"))
    status, balance = as_key(gateway, "/v1/balance", key_a)
    assert status == 200 and set(balance) == {"account", "balance_usd", "reserved_usd", "available_usd"}
    assert balance["account"] == "alice" and balance["available_usd"] == balance["balance_usd"]
    status, usage = as_key(gateway, "/v1/usage", key_a2)
    rows = usage["data"]
    assert len(rows) == 3 and all(row["account"] == "alice" for row in rows)
    created = [row["created_at"] for row in rows]
    assert created == sorted(created, reverse=True)  # newest first
    assert [row["cost_usd"] for row in rows] == costs_a[::-1]
    assert {"request_id", "model", "node", "input_tokens", "output_tokens", "cached_tokens", "cost_usd",
            "estimated", "status", "created_at"} <= set(rows[0])
    spent = sum(usd_to_nano(row["cost_usd"]) for row in rows)
    assert usd_to_nano(balance["balance_usd"]) == usd_to_nano("5") - spent
    ids_a = [row["request_id"] for row in rows]
    assert [r["request_id"] for r in as_key(gateway, "/v1/usage?limit=2", key_a)[1]["data"]] == ids_a[:2]
    since = rows[1]["created_at"]
    recent = as_key(gateway, f"/v1/usage?since={since!r}", key_a)[1]["data"]
    assert [row["request_id"] for row in recent] == ids_a[:2]
    assert as_key(gateway, f"/v1/usage?since={time.time() + 60:.3f}", key_a)[1]["data"] == []
    rows_b = as_key(gateway, "/v1/usage?limit=1000", key_b)[1]["data"]
    ids_b = [row["request_id"] for row in rows_b]
    assert len(ids_b) == 2 and all(row["account"] == "bob" for row in rows_b)
    assert not set(ids_a) & set(ids_b)
    assert as_key(gateway, "/v1/balance", key_b)[1]["account"] == "bob"
    # The admin sees everyone, or one account.
    assert [r["request_id"] for r in admin(gateway, "GET", "/admin/usage?account=alice")[1]["data"]] == ids_a
    everyone = admin(gateway, "GET", "/admin/usage?limit=1000")[1]["data"]
    assert set(ids_a + ids_b) <= {row["request_id"] for row in everyone}
    assert admin(gateway, "GET", "/admin/usage?account=nobody")[0] == 404
    assert as_key(gateway, "/admin/usage", key_a)[0] == 401  # an API key is not an admin token


def test_balance_and_usage_need_a_valid_key(gateway):
    for path in ("/v1/balance", "/v1/usage"):
        status, body, _ = http_call(gateway, "GET", path)
        assert status == 401 and body["error"]["type"] == "authentication_error"
        assert as_key(gateway, path, "sk-not-a-real-key")[0] == 401
    status, body, _ = http_call(gateway, "GET", "/v1/balance", headers={"x-api-key": TEST_KEY})
    assert status == 200 and body["account"] == "test"


BAD_USAGE_QUERIES = [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
                     ("limit=2.5", "limit"), ("limit=", "limit"), ("since=abc", "since"), ("since=-5", "since"),
                     ("since=nan", "since"), ("since=inf", "since"), ("since=1e3", "since"),
                     ("limit=5&limit=6", "limit"), ("limt=5", "limt")]


@pytest.mark.parametrize("query, param", BAD_USAGE_QUERIES, ids=[q for q, _ in BAD_USAGE_QUERIES])
def test_usage_query_is_validated(gateway, query, param):
    status, body = as_key(gateway, f"/v1/usage?{query}", TEST_KEY)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    status, body = admin(gateway, "GET", f"/admin/usage?{query}")
    assert status == 400 and body["error"]["param"] == param


def test_usage_limit_bounds_are_accepted(gateway):
    for query in ("limit=1", "limit=1000", "since=0", "since=1700000000.5", ""):
        status, body = as_key(gateway, f"/v1/usage?{query}", TEST_KEY)
        assert status == 200 and body == {"data": []}


def test_usage_time_window_and_csv_for_the_caller_and_the_admin(gateway):
    key, _ = new_account(gateway, "invoiced", "10")
    client = sdk(gateway, key)
    for text in ("first", "second", "third"):
        client.chat.completions.create(**chat_body(text))
    status, body = as_key(gateway, "/v1/usage", key)
    records = body["data"]
    assert status == 200 and len(records) == 3
    times = sorted(r["created_at"] for r in records)
    status, window = as_key(gateway, f"/v1/usage?since={times[1]!r}&until={times[2]!r}", key)
    assert [r["created_at"] for r in window["data"]] == [times[1]]  # since inclusive, until exclusive
    # CSV: a header row of the JSON field names, then the same records, newest first
    status, text, response = http_call(gateway, "GET", "/v1/usage?format=csv",
                                       headers={"Authorization": f"Bearer {key}"})
    assert status == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.decode())))
    assert [row["request_id"] for row in rows] == [r["request_id"] for r in records]
    assert [row["cost_usd"] for row in rows] == [r["cost_usd"] for r in records]
    assert set(records[0]) <= set(rows[0])
    status, text = admin(gateway, "GET", "/admin/usage?account=invoiced&format=csv&limit=2")
    assert status == 200 and len(list(csv.DictReader(io.StringIO(text.decode())))) == 2
    for query, param in (("format=xml", "format"), (f"since={times[2]!r}&until={times[0]!r}", "until"),
                         ("until=soon", "until"), ("limit=1001", "limit")):
        status, error = as_key(gateway, f"/v1/usage?{query}", key)
        assert status == 400 and error["error"]["param"] == param, (query, error)
    status, error = as_key(gateway, "/v1/usage?format=csv&limit=100000", key)
    assert status == 200  # CSV downloads may be larger than a JSON page


@pytest.mark.parametrize("path, body, last", [
    ("/v1/chat/completions", chat_body("be quick", stream=True), b"data: [DONE]"),  # pass-through
    ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": True,  # translated
                      "messages": [{"role": "user", "content": "be quick"}]}, b"event: message_stop"),
], ids=["chat", "messages"])
def test_a_client_hanging_up_after_the_last_event_is_billed_as_completed(gateway, upstream, path, body, last):
    """The node keeps its stream open a second after its end (fault "linger"); the client leaves as soon as
    it has the last event. It got the whole answer: status 200, the node's own usage, nothing estimated."""
    upstream.control(gateway.node_name, fault="linger", tokens=7)
    key, _ = new_account(gateway, "prompt-leaver", "10")
    row = stream_then_hang_up(gateway, key, path, body, lambda received: last in received)
    assert (row["status"], row["estimated"], row["output_tokens"]) == (200, False, 7)
