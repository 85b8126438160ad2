"""Routing that survives broken upstreams, end to end.

Official OpenAI SDK (and plain HTTP for Anthropic-shaped errors) -> gateway ->
the mock upstream process, where each test plays its own virtual nodes (names
unique to the test) with their own behaviour and counters. Everything counted
here is counted on the upstream side or in the router, never inferred from
timing; timings are asserted only where the contract names one (hedging).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from decimal import Decimal
from typing import Any, Callable

import openai
import pytest

from tests.support.keys import TEST_KEY
from tests.conftest import base_config, wait_for
from tests.support.http import request

ADMIN_TOKEN = "adm-routing-e2e-0123456789"
MESSAGES = [{"role": "user", "content": "hello there"}]

# The two chat models these tests route; the fallback test needs a second one with other prices.
MODELS: dict[str, Any] = {
    "gpt-4o-mini": {"price": {"input": 0.15, "output": 0.60}},
    "claude-sonnet-4-6": {"aliases": ["claude-sonnet-4.6"], "price": {"input": 3.00, "output": 15.00}},
}


# -- helpers -------------------------------------------------------------------


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Virtual upstream node names unique to this test (the mock upstream is shared by the session)."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)
    return lambda suffix: f"{stem}-{suffix}"


def up(upstream, node_id: str, name: str, models: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """An OpenAI-protocol node on the mock upstream's virtual node ``name``."""
    return {"id": node_id, "provider": "openai", "base_url": upstream.base(name),
            "api_key": f"sk-upstream-secret-{node_id}", "models": models or {"gpt-4o-mini": "up-model"}, **extra}


def dead_port() -> int:
    """A loopback port nobody listens on: bound, then closed, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(start_gateway, tmp_path, nodes: list[dict[str, Any]], **overrides: Any):
    served = {model for node in nodes for model in node["models"]}  # the config refuses unserved models
    overrides["models"] = {k: v for k, v in overrides.get("models", MODELS).items() if k in served}
    return start_gateway(base_config(tmp_path / "state", nodes, **overrides))


def sdk(gateway) -> openai.OpenAI:
    """One SDK client per gateway: a new client per request costs ~30 ms (a new pool and connection)."""
    client = getattr(gateway, "_routing_sdk", None)
    if client is None:
        client = gateway._routing_sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TEST_KEY,
                                                      max_retries=0, timeout=20)
    return client


def chat(gateway, model: str = "gpt-4o-mini", **kwargs: Any):
    """One plain chat completion; returns (completion, response headers)."""
    raw = sdk(gateway).chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **kwargs)
    return raw.parse(), raw.headers


def served_by(gateway, model: str = "gpt-4o-mini") -> str:
    return chat(gateway, model)[1]["x-infermesh-node"]



def router_rows(gateway) -> dict[tuple[str, str], dict[str, Any]]:
    rows = gateway.call(lambda: gateway.services.router.status())
    return {(row["node"], row["model"]): row for row in rows}


def breaker(gateway, node: str, model: str = "gpt-4o-mini") -> str:
    return router_rows(gateway)[(node, model)]["breaker"]


def requests_seen(upstream, name: str) -> int:
    return upstream.stats(name)["requests"]


def http_request(gateway, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    reply = request(int(gateway.url.rsplit(":", 1)[1]), method, path, body, headers=headers)
    return reply.status, reply.headers, reply.body


# -- failover --------------------------------------------------------------------


BREAKAGES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (mock behaviour, extra node config)
    "http-500": ({"status": 500}, {}),
    "http-429": ({"status": 429}, {}),
    "hang-past-first-byte-timeout": ({"fault": "hang"}, {"first_byte_timeout_s": 0.5}),
    "reset-before-first-byte": ({"fault": "reset-before"}, {}),
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_broken_node_fails_over_to_a_healthy_one(upstream, start_gateway, tmp_path, names, breakage, stream):
    behaviour, extra = BREAKAGES[breakage]
    bad, good = names("bad"), names("good")
    upstream.control(bad, **behaviour)
    # A fresh least-latency router tries unmeasured nodes in config order: "bad" goes first.
    gateway = start(start_gateway, tmp_path, [up(upstream, "bad", bad, **extra), up(upstream, "good", good)])
    client = sdk(gateway)
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert text.startswith("hello there")
        assert finish == ["stop"]
        assert chunks[-1].usage.completion_tokens == 12  # the complete stream, to its usage chunk
    else:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        completion = raw.parse()
        assert completion.choices[0].message.content.startswith("hello there")
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage.completion_tokens == 12
    assert raw.status_code == 200
    assert raw.headers["x-infermesh-node"] == "good"
    assert raw.headers["x-infermesh-attempts"] == "2"
    assert requests_seen(upstream, bad) == 1
    assert requests_seen(upstream, good) == 1
    rows = router_rows(gateway)
    assert rows[("bad", "gpt-4o-mini")]["recent_failures"] == 1
    assert rows[("good", "gpt-4o-mini")]["recent_successes"] == 1
    assert all(row["in_flight"] == 0 for row in rows.values())
    if breakage.startswith("hang"):  # the gateway gave up on it and closed the connection
        assert wait_for(lambda: upstream.stats(bad)["closed_early"] == 1, timeout=2)


def test_node_refusing_connections_fails_over(upstream, start_gateway, tmp_path, names):
    good = names("good")
    dead = {"id": "dead", "provider": "openai", "base_url": f"http://127.0.0.1:{dead_port()}/v1",
            "api_key": "sk-upstream-secret-dead", "models": {"gpt-4o-mini": "up-model"}}
    gateway = start(start_gateway, tmp_path, [dead, up(upstream, "good", good)])
    completion, headers = chat(gateway)
    assert completion.choices[0].message.content.startswith("hello there")
    assert headers["x-infermesh-node"] == "good"
    assert headers["x-infermesh-attempts"] == "2"
    assert requests_seen(upstream, good) == 1
    assert router_rows(gateway)[("dead", "gpt-4o-mini")]["recent_failures"] == 1


def test_upstream_client_fault_is_returned_once_not_retried(upstream, start_gateway, tmp_path, names):
    first, second = names("first"), names("second")
    upstream.control(first, status=400)
    gateway = start(start_gateway, tmp_path, [up(upstream, "first", first), up(upstream, "second", second)])
    with pytest.raises(openai.BadRequestError) as caught:
        chat(gateway)
    assert caught.value.status_code == 400
    assert caught.value.body["message"] == "mock upstream error 400"  # as the upstream sent it
    assert requests_seen(upstream, first) == 1
    assert requests_seen(upstream, second) == 0
    rows = router_rows(gateway)
    first_row = rows[("first", "gpt-4o-mini")]
    assert first_row["recent_failures"] == 0 and first_row["recent_successes"] == 0  # not the node's fault
    assert first_row["breaker"] == "closed"
    assert all(row["in_flight"] == 0 for row in rows.values())  # reported exactly once


def test_client_leaving_during_failover_stops_it(upstream, start_gateway, tmp_path, names):
    """A client that hangs up while its first node stalls: no second node is tried, nothing is billed."""
    stuck, spare = names("stuck"), names("spare")
    upstream.control(stuck, fault="hang")
    gateway = start(start_gateway, tmp_path, [up(upstream, "stuck", stuck), up(upstream, "spare", spare)])
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES})
    sock = socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])))
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    assert wait_for(lambda: upstream.stats(stuck)["in_flight"] == 1)
    sock.close()
    assert wait_for(lambda: upstream.stats(stuck)["closed_early"] == 1, timeout=2)  # aborted at once
    time.sleep(0.3)  # proving a negative: give a (wrong) failover attempt time to reach the upstream
    assert requests_seen(upstream, spare) == 0
    assert gateway.call(lambda: gateway.services.ledger.usage("test", limit=5)) == []
    assert all(row["in_flight"] == 0 for row in router_rows(gateway).values())


# -- circuit breaker ---------------------------------------------------------------


def test_breaker_opens_probes_once_and_rejoins(upstream, start_gateway, tmp_path, names):
    bad, good = names("bad"), names("good")
    upstream.control(bad, status=500)
    gateway = start(start_gateway, tmp_path, [up(upstream, "bad", bad), up(upstream, "good", good)],
                    routing={"strategy": "round-robin"},
                    circuit_breaker={"failure_threshold": 3, "open_s": 1})

    # Round robin alternates first choices, so three failures take a few requests; each is still answered.
    for _ in range(10):
        assert served_by(gateway) == "good"
        if requests_seen(upstream, bad) == 3:
            break
    assert requests_seen(upstream, bad) == 3
    assert breaker(gateway, "bad") == "open"

    # Open: the broken node receives nothing at all.
    for _ in range(10):
        assert served_by(gateway) == "good"
    assert requests_seen(upstream, bad) == 3

    # After open_s: exactly one probe, which fails and re-opens the breaker; clients never notice.
    assert wait_for(lambda: breaker(gateway, "bad") == "half_open", timeout=3)
    for _ in range(6):
        assert served_by(gateway) == "good"
    assert requests_seen(upstream, bad) == 4
    assert breaker(gateway, "bad") == "open"

    # Healthy again: the next probe succeeds, the breaker closes and the node takes its share again.
    upstream.control(bad, status=200)
    assert wait_for(lambda: breaker(gateway, "bad") == "half_open", timeout=3)
    served = [served_by(gateway) for _ in range(10)]
    assert served[0] == "bad"  # the probe goes to the recovering node outright
    assert breaker(gateway, "bad") == "closed"
    assert served.count("bad") >= 4  # round robin 1:1 again
    assert requests_seen(upstream, bad) == 4 + served.count("bad")


# -- balancing ---------------------------------------------------------------------


def test_least_latency_prefers_the_fast_node_and_follows_a_slowdown(upstream, start_gateway, tmp_path, names):
    slow, fast = names("slow"), names("fast")
    upstream.control(slow, first_byte_ms=60)
    upstream.control(fast, first_byte_ms=5)
    gateway = start(start_gateway, tmp_path, [up(upstream, "slow", slow), up(upstream, "fast", fast)])
    for _ in range(10):  # warm-up: both nodes get measured
        served_by(gateway)
    before = requests_seen(upstream, fast)
    served = [served_by(gateway) for _ in range(200)]
    assert served.count("fast") >= 160, served.count("fast")
    assert requests_seen(upstream, fast) - before == served.count("fast")  # counted upstream too

    # The fast node slows to 200 ms: within 100 requests the traffic has moved to the other one.
    upstream.control(fast, first_byte_ms=200)
    recent: list[str] = []
    for _ in range(100):
        recent.append(served_by(gateway))
        window = recent[-20:]
        if len(window) == 20 and window.count("slow") >= 16:
            break
    else:
        pytest.fail(f"traffic did not move within 100 requests: {recent}")


def test_weighted_round_robin_is_exact(upstream, start_gateway, tmp_path, names):
    heavy, light = names("heavy"), names("light")
    gateway = start(start_gateway, tmp_path,
                    [up(upstream, "heavy", heavy, weight=2), up(upstream, "light", light, weight=1)],
                    routing={"strategy": "round-robin"})
    client = sdk(gateway)
    for _ in range(300):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=4)
    assert requests_seen(upstream, heavy) == 200
    assert requests_seen(upstream, light) == 100


# -- fallbacks and hedging -----------------------------------------------------------


def test_fallback_models_answer_when_the_primary_is_down(upstream, start_gateway, tmp_path, names):
    p1, p2, fb = names("p1"), names("p2"), names("fb")
    upstream.control(p1, status=503)
    upstream.control(p2, status=500)
    gateway = start(start_gateway, tmp_path, [
        up(upstream, "p1", p1), up(upstream, "p2", p2),
        up(upstream, "fb", fb, models={"claude-sonnet-4-6": "up-claude"}),
    ])
    completion, headers = chat(gateway, extra_body={"fallback_models": ["claude-sonnet-4.6"]})
    assert completion.choices[0].message.content.startswith("hello there")
    assert headers["x-infermesh-node"] == "fb"
    assert headers["x-infermesh-attempts"] == "3"
    for name in (p1, p2, fb):
        assert "fallback_models" not in upstream.stats(name)["last"]["body"]
    assert upstream.stats(fb)["last"]["body"]["model"] == "up-claude"

    usage = gateway.call(lambda: gateway.services.ledger.usage("test", limit=1))[0]
    assert usage["model"] == "claude-sonnet-4-6" and usage["node"] == "fb"
    expected = (Decimal(usage["input_tokens"]) * Decimal("3.00")
                + Decimal(usage["output_tokens"]) * Decimal("15.00")) / Decimal(1_000_000)
    assert Decimal(usage["cost_usd"]) == expected  # the fallback's prices, not gpt-4o-mini's
    assert Decimal(headers["x-infermesh-cost-usd"]) == expected


def test_hedging_races_a_second_node_and_closes_the_slow_one(upstream, start_gateway, tmp_path, names):
    slow, quick = names("slow"), names("quick")
    upstream.control(slow, first_byte_ms=2000)
    models = {**MODELS, "gpt-4o-mini": {**MODELS["gpt-4o-mini"], "hedge_after_ms": 200}}
    gateway = start(start_gateway, tmp_path, [up(upstream, "slow", slow), up(upstream, "quick", quick)],
                    models=models)
    began = time.monotonic()
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                 stream=True)
    stream = iter(raw.parse())
    next(stream)
    first_byte_s = time.monotonic() - began
    rest = list(stream)
    assert first_byte_s < 1.0, first_byte_s  # hedged at 0.2 s instead of waiting 2 s
    assert rest and rest[-1].choices[0].finish_reason == "stop"
    assert raw.headers["x-infermesh-node"] == "quick"
    assert raw.headers["x-infermesh-attempts"] == "2"
    # The loser is aborted: its upstream sees the connection closed before it ever answered.
    assert wait_for(lambda: upstream.stats(slow)["closed_early"] == 1, timeout=2)
    assert upstream.stats(slow)["completed"] == 0
    # Only the relayed attempt is billed, and the loser is no verdict on the slow node.
    usage = gateway.call(lambda: gateway.services.ledger.usage("test", limit=10))
    assert [row["node"] for row in usage] == ["quick"]
    slow_row = router_rows(gateway)[("slow", "gpt-4o-mini")]
    assert slow_row["recent_failures"] == 0 and slow_row["in_flight"] == 0


def test_hedge_near_ties_leave_nothing_in_flight(upstream, start_gateway, tmp_path, names):
    """Both attempts of a hedge answering in the same instant: the loser is aborted and reported too.

    With the hedge due exactly when the first node answers, both first bytes often land in one
    event-loop turn; a loser that already opened must not stay counted in flight (or hold a slot).
    """
    slow, quick = names("slow"), names("quick")
    upstream.control(slow, first_byte_ms=50)
    models = {**MODELS, "gpt-4o-mini": {**MODELS["gpt-4o-mini"], "hedge_after_ms": 50}}
    gateway = start(start_gateway, tmp_path, [up(upstream, "slow", slow), up(upstream, "quick", quick)],
                    models=models)
    client = sdk(gateway)
    for _ in range(40):
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        assert chunks[-1].choices[0].finish_reason == "stop"
    assert wait_for(lambda: all(row["in_flight"] == 0 for row in router_rows(gateway).values()), timeout=2)
    assert wait_for(lambda: gateway.call(lambda: gateway.services.client.in_use) == 0, timeout=2)
    assert len(gateway.call(lambda: gateway.services.ledger.usage("test", limit=100))) == 40  # one bill each


# -- when nothing works ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_everything_down_is_a_502_listing_each_attempt(upstream, start_gateway, tmp_path, names, protocol):
    a, c = names("a"), names("c")
    upstream.control(a, status=500)
    upstream.control(c, fault="reset-before")
    dead = {"id": "b", "provider": "openai", "base_url": f"http://127.0.0.1:{dead_port()}/v1",
            "api_key": "sk-upstream-secret-b", "models": {"gpt-4o-mini": "up-model"}}
    gateway = start(start_gateway, tmp_path, [up(upstream, "a", a), dead, up(upstream, "c", c)])
    if protocol == "openai":
        status, _, raw = http_request(gateway, "POST", "/v1/chat/completions",
                                      {"model": "gpt-4o-mini", "messages": MESSAGES},
                                      {"Authorization": f"Bearer {TEST_KEY}"})
        body = json.loads(raw)
        assert body["error"]["type"] == "upstream_error"
        message = body["error"]["message"]
        with pytest.raises(openai.APIStatusError) as caught:  # and the SDK sees a plain 502
            chat(gateway)
        assert caught.value.status_code == 502
    else:
        status, _, raw = http_request(gateway, "POST", "/v1/messages",
                                      {"model": "gpt-4o-mini", "max_tokens": 32, "messages": MESSAGES},
                                      {"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"})
        body = json.loads(raw)
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
        message = body["error"]["message"]
    assert status == 502
    assert "a (gpt-4o-mini): failure: HTTP 500" in message
    assert "b (gpt-4o-mini): failure: connection failed while connecting" in message
    assert "c (gpt-4o-mini): failure: connection reset before the first byte" in message
    assert b"sk-upstream-secret" not in raw and TEST_KEY.encode() not in raw


def test_every_node_timing_out_is_a_504(upstream, start_gateway, tmp_path, names):
    a, b = names("a"), names("b")
    for name in (a, b):
        upstream.control(name, fault="hang")
    gateway = start(start_gateway, tmp_path, [up(upstream, "a", a, first_byte_timeout_s=0.3),
                                              up(upstream, "b", b, first_byte_timeout_s=0.3)])
    with pytest.raises(openai.APIStatusError) as caught:
        chat(gateway)
    assert caught.value.status_code == 504
    assert "a (gpt-4o-mini): failure: timed out before the first byte" in caught.value.body["message"]


def test_mid_stream_failure_ends_with_an_error_event_and_counts_against_the_node(
        upstream, start_gateway, tmp_path, names):
    flaky, other = names("flaky"), names("other")
    upstream.control(flaky, fault="reset-mid", chunk_delay_ms=20, tokens=12)
    gateway = start(start_gateway, tmp_path, [up(upstream, "flaky", flaky), up(upstream, "other", other)])
    status, headers, raw = http_request(gateway, "POST", "/v1/chat/completions",
                                        {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
                                        {"Authorization": f"Bearer {TEST_KEY}"})
    assert status == 200 and headers["x-infermesh-node"] == "flaky"
    frames = [frame for frame in raw.decode().split("\n\n") if frame.strip()]
    assert len(frames) >= 2 and json.loads(frames[0][len("data: "):])["choices"]  # content was relayed first
    last = frames[-1]
    assert last.startswith("data: ")
    error = json.loads(last[len("data: "):])["error"]
    assert "mid-stream" in error["message"] and error["type"] == "upstream_error"
    assert "data: [DONE]" not in raw.decode()

    # The SDK turns that final frame into an exception instead of a silently short answer.
    with pytest.raises(openai.APIError):
        for _ in sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    assert requests_seen(upstream, other) == 0  # bytes were sent: no failover
    row = router_rows(gateway)[("flaky", "gpt-4o-mini")]
    assert row["recent_failures"] == 2 and row["recent_successes"] == 0 and row["in_flight"] == 0
    usage = gateway.call(lambda: gateway.services.ledger.usage("test", limit=1))[0]
    assert usage["status"] == 502


def test_mid_stream_failure_on_messages_ends_with_an_error_event(upstream, start_gateway, tmp_path, names):
    """The Anthropic shape of the same rule: a translated stream that dies ends with ``event: error``."""
    flaky = names("flaky")
    upstream.control(flaky, fault="reset-mid", chunk_delay_ms=20, tokens=12)
    gateway = start(start_gateway, tmp_path, [up(upstream, "flaky", flaky)])
    status, _, raw = http_request(gateway, "POST", "/v1/messages",
                                  {"model": "gpt-4o-mini", "max_tokens": 64, "messages": MESSAGES, "stream": True},
                                  {"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"})
    assert status == 200
    frames = [frame for frame in raw.decode().split("\n\n") if frame.strip()]
    assert frames[0].startswith("event: message_start")
    assert frames[-1].startswith("event: error\ndata: ")
    error = json.loads(frames[-1].split("data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "mid-stream" in error["error"]["message"]
    assert not any(frame.startswith("event: message_stop") for frame in frames)
    assert router_rows(gateway)[("flaky", "gpt-4o-mini")]["recent_failures"] == 1


# -- the admin view -------------------------------------------------------------------------


def test_admin_nodes_shows_breakers_latency_and_outcomes(upstream, start_gateway, tmp_path, names):
    bad, good = names("bad"), names("good")
    upstream.control(bad, status=500)
    gateway = start(start_gateway, tmp_path, [
        up(upstream, "bad", bad), up(upstream, "good", good, models={"gpt-4o-mini": "m", "claude-sonnet-4-6": "c"}),
    ], admin={"token": ADMIN_TOKEN}, circuit_breaker={"failure_threshold": 1, "open_s": 60})
    _, headers = chat(gateway)
    assert headers["x-infermesh-node"] == "good" and headers["x-infermesh-attempts"] == "2"
    _, headers = chat(gateway)
    assert headers["x-infermesh-node"] == "good" and headers["x-infermesh-attempts"] == "1"

    status, headers, raw = http_request(gateway, "GET", "/admin/nodes",
                                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200 and headers["content-type"].startswith("application/json")
    rows = {(row["node"], row["model"]): row for row in json.loads(raw)["data"]}
    assert set(rows) == {("bad", "gpt-4o-mini"), ("good", "gpt-4o-mini"), ("good", "claude-sonnet-4-6")}
    broken, healthy = rows[("bad", "gpt-4o-mini")], rows[("good", "gpt-4o-mini")]
    assert broken["breaker"] == "open" and broken["recent_failures"] == 1 and broken["recent_successes"] == 0
    assert broken["ewma_ttfb_ms"] is None
    assert healthy["breaker"] == "closed" and healthy["recent_successes"] == 2 and healthy["recent_failures"] == 0
    assert healthy["ewma_ttfb_ms"] > 0 and healthy["upstream_model"] == "m"
    assert all(row["in_flight"] == 0 for row in rows.values())
    assert rows[("good", "claude-sonnet-4-6")]["ewma_ttfb_ms"] is None
    assert b"sk-upstream-secret" not in raw

    for auth in (None, "Bearer wrong-token", f"Bearer {ADMIN_TOKEN}x", f"Bearer {TEST_KEY}", ADMIN_TOKEN,
                 "Bearer ünïcode"):
        status, _, raw = http_request(gateway, "GET", "/admin/nodes",
                                      headers={"Authorization": auth} if auth else {})
        assert status == 401, auth
        assert json.loads(raw)["error"]["type"] == "authentication_error"


def test_admin_api_is_404_without_an_admin_token(upstream, start_gateway, tmp_path, names):
    gateway = start(start_gateway, tmp_path, [up(upstream, "only", names("only"))])
    for auth in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        status, _, raw = http_request(gateway, "GET", "/admin/nodes", headers=auth)
        assert status == 404
        assert json.loads(raw)["error"]["type"] == "not_found_error"
