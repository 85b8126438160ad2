"""SIGTERM: readiness 503, new requests 503 + Retry-After, open streams finish, final snapshot, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import time

from gateway.observability.metrics import Metrics
from tests.conftest import base_config
from tests.ops.conftest import DEMO_KEY, Stream, demo_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_sigterm_lets_an_open_stream_finish_and_answers_503_meanwhile(gateway_process, tmp_path):
    config = demo_config(tmp_path, token_delay_ms=150)  # 12 tokens: the stream lasts about 2 s
    config["logging"] = {"access_log": True}
    gateway = gateway_process(config, "--drain-grace", "20")
    stream = Stream(gateway.port, "gpt-4o-mini", "zebra secret prompt")
    gateway.signal(signal.SIGTERM)
    draining = gateway.wait_event("draining")
    assert draining["level"] == "info" and draining["inflight"] == 1 and draining["streams"] == 1

    ready = gateway.request("GET", "/readyz")
    assert ready.status == 503 and ready.json()["status"] == "draining"
    refused = gateway.request("POST", "/v1/chat/completions", CHAT, key=DEMO_KEY)
    assert refused.status == 503, refused.body  # the listener is still open: a clean 503, not a refused connection
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["message"]
    assert gateway.request("GET", "/healthz").status == 200  # alive, just not taking model traffic

    received = stream.rest()
    assert received.endswith(b"data: [DONE]\n\n")
    assert received.count(b'"content"') >= 12  # every token arrived
    assert gateway.wait() == 0
    events = gateway.events()
    assert events[-4:] == ["draining", "drained", "snapshot", "stopped"]
    assert gateway.json_lines()[-2]["final"] is True

    # Nothing secret in any JSON line: no key, no prompt, no completion text (the mock echoes the prompt).
    output = "\n".join(gateway.lines)
    assert "zebra" not in output
    assert all(DEMO_KEY not in line for line in gateway.lines if line.startswith("{"))
    access = [line for line in gateway.json_lines() if line["kind"] == "access"]
    assert [line["status"] for line in access if line.get("stream")] == [200]


def test_after_the_grace_period_streams_end_with_the_protocol_error_event(gateway_process, upstream, tmp_path):
    """A curl-relayed stream still open at the deadline is aborted: the client gets an error frame, not a cut."""
    upstream.control("ops-grace", chunk_delay_ms=250, tokens=60)  # about 15 s: far beyond the grace period
    nodes = [{"id": "up", "provider": "openai", "base_url": upstream.base("ops-grace"), "api_key": "sk-up",
              "models": {"gpt-4o-mini": "up-model", "claude-sonnet-4-6": "up-claude",
                         "text-embedding-3-small": "up-embed"}}]
    config = base_config(tmp_path / "state", nodes)
    config["accounts"][0]["keys"] = [DEMO_KEY]
    gateway = gateway_process(config, "--drain-grace", "0.5")
    stream = Stream(gateway.port, "gpt-4o-mini", "long story")
    began = time.monotonic()
    gateway.signal(signal.SIGTERM)
    received = stream.rest()
    assert time.monotonic() - began < 5
    last = received.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"data: {") and b"[DONE]" not in received
    error = json.loads(last[len(b"data: "):])["error"]
    assert "shutdown" in error["message"]
    assert gateway.wait() == 0
    timeout = gateway.wait_event("drain_timeout", 1)
    assert timeout["level"] == "warning" and timeout["inflight"] == 1
    assert gateway.events()[-1] == "stopped"


def test_streams_with_no_upstream_to_abort_are_closed_and_the_process_still_exits(gateway_process, tmp_path):
    """The in-process mock node has no curl transfer: its stream's connection is closed instead."""
    gateway = gateway_process(demo_config(tmp_path, token_delay_ms=1000), "--drain-grace", "0.2")
    stream = Stream(gateway.port, "gpt-4o-mini", "slow")
    began = time.monotonic()
    gateway.signal(signal.SIGTERM)
    received = stream.rest()
    assert b"[DONE]" not in received
    assert gateway.wait() == 0
    assert time.monotonic() - began < 8
    assert gateway.events()[-2:] == ["snapshot", "stopped"]


def test_a_second_signal_ends_the_grace_period(gateway_process, tmp_path):
    gateway = gateway_process(demo_config(tmp_path, token_delay_ms=1000), "--drain-grace", "60")
    stream = Stream(gateway.port, "gpt-4o-mini", "slow")
    gateway.signal(signal.SIGTERM)
    gateway.wait_event("draining")
    began = time.monotonic()
    gateway.signal(signal.SIGINT)
    stream.rest()
    assert gateway.wait() == 0
    assert time.monotonic() - began < 8


def test_idle_gateway_stops_at_once(gateway_process, tmp_path):
    gateway = gateway_process(demo_config(tmp_path))
    began = time.monotonic()
    gateway.signal(signal.SIGTERM)
    assert gateway.wait() == 0
    assert time.monotonic() - began < 3
    started = gateway.wait_event("started")
    assert started["address"] == gateway.url and started["level"] == "info"


def test_the_drain_wakes_when_the_last_request_ends():
    """The drain waits on an event the in-flight count sets at zero, not on a poll of the count."""
    async def scenario() -> None:
        metrics = Metrics()
        await asyncio.wait_for(metrics.wait_idle(), 1)  # nothing in flight: at once
        metrics.request_started()
        metrics.request_started()
        waiter = asyncio.ensure_future(metrics.wait_idle())
        metrics.request_ended()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()  # one request is still in flight
        metrics.request_ended()
        await asyncio.wait_for(waiter, 1)
        metrics.request_started()  # a later busy moment needs a new wake-up, not the one already set
        second = asyncio.ensure_future(metrics.wait_idle())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not second.done()
        metrics.request_ended()
        await asyncio.wait_for(second, 1)

    asyncio.run(scenario())
