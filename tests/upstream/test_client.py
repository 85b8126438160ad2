"""The curl client against the real mock upstream: phases, timeouts, abort, admission."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest

from gateway.config import Timeouts
from gateway.upstream.client import Overloaded, UpstreamClient
from gateway.upstream.exchange import Phase, UpstreamError
from gateway.upstream.headers import HeaderBlock

BODY = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
HEADERS = HeaderBlock({"Content-Type": "application/json"})
FAST = Timeouts(connect_timeout_s=2, first_byte_timeout_s=2, idle_timeout_s=2, request_timeout_s=10)


def run(coro):
    return asyncio.run(coro)


async def fetch(url: str, timeouts: Timeouts = FAST, headers: dict[str, str] | None = None, client=None):
    own = client is None
    client = client or UpstreamClient(10, 1.0)
    try:
        exchange = await client.open(url, HEADERS.with_overrides(headers or {}), BODY, timeouts)
        await exchange.started()
        body = await exchange.read_all(1 << 24)
        return exchange, body
    finally:
        if own:
            client.close()


def test_status_and_headers_before_body(upstream):
    async def go():
        client = UpstreamClient(10, 1.0)
        exchange = await client.open(upstream.base("cl-status") + "/chat/completions", HEADERS, BODY, FAST)
        await exchange.started()
        status, ctype = exchange.status, exchange.headers.get("content-type")
        first = await exchange.read()
        rest = await exchange.read_all(1 << 20)
        client.close()
        return status, ctype, first + rest

    status, ctype, body = run(go())
    assert status == 200 and ctype == "text/event-stream"
    assert body.endswith(b"data: [DONE]\n\n")


def test_the_curl_pool_is_created_by_the_first_transfer_and_one_serves_all(upstream):
    """No multi handle (and no OpenSSL initialisation inside libcurl) until a transfer needs one; a client that
    never sent anything closes cleanly."""
    async def go():
        idle = UpstreamClient(10, 1.0)
        idle.close()
        client = UpstreamClient(10, 1.0)
        before = client._http
        await fetch(upstream.base("cl-lazy") + "/chat/completions", client=client)
        first = client._http
        await fetch(upstream.base("cl-lazy") + "/chat/completions", client=client)
        client.close()
        return idle._http, before, first, client._http

    idle, before, first, after = run(go())
    assert idle is None and before is None
    assert first is not None and after is first


def test_error_status_is_not_an_exception(upstream):
    exchange, body = run(fetch(upstream.base("cl-err") + "/chat/completions", headers={"x-mock-status": "503",
                                                                                        "x-mock-retry-after": "7"}))
    assert exchange.status == 503 and exchange.headers["retry-after"] == "7"
    assert b"mock upstream error 503" in body


def test_connection_refused_is_a_connect_failure():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(UpstreamError) as caught:
        run(fetch(f"http://127.0.0.1:{port}/v1/chat/completions"))
    assert caught.value.phase is Phase.CONNECT and caught.value.reason == "connect"


def test_first_byte_timeout(upstream):
    timeouts = Timeouts(connect_timeout_s=2, first_byte_timeout_s=0.3, idle_timeout_s=5, request_timeout_s=10)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        run(fetch(upstream.base("cl-fb") + "/chat/completions", timeouts, {"x-mock-fault": "hang"}))
    assert caught.value.phase is Phase.FIRST_BYTE and caught.value.reason == "timeout"
    assert time.monotonic() - started < 3


def test_idle_timeout_inside_a_stream(upstream):
    timeouts = Timeouts(connect_timeout_s=2, first_byte_timeout_s=2, idle_timeout_s=0.3, request_timeout_s=10)
    with pytest.raises(UpstreamError) as caught:
        run(fetch(upstream.base("cl-idle") + "/chat/completions", timeouts, {"x-mock-fault": "hang-mid"}))
    assert caught.value.phase is Phase.MID_STREAM and caught.value.reason == "timeout"


def test_reset_before_first_byte_and_mid_stream(upstream):
    with pytest.raises(UpstreamError) as before:
        run(fetch(upstream.base("cl-rb") + "/chat/completions", headers={"x-mock-fault": "reset-before"}))
    assert before.value.phase is Phase.FIRST_BYTE and before.value.reason == "reset"
    with pytest.raises(UpstreamError) as mid:
        run(fetch(upstream.base("cl-rm") + "/chat/completions", headers={"x-mock-fault": "reset-mid"}))
    assert mid.value.phase is Phase.MID_STREAM


def test_abort_reaches_the_idle_upstream_quickly(upstream):
    async def go():
        client = UpstreamClient(10, 1.0)
        exchange = await client.open(upstream.base("cl-abort") + "/chat/completions",
                                     HEADERS.with_overrides({"x-mock-fault": "hang"}), BODY, FAST)
        await asyncio.sleep(0.2)  # connected and waiting: the socket is idle
        aborted = time.time()
        exchange.abort("client_gone")
        with pytest.raises(UpstreamError) as caught:
            await exchange.started()
        client.close()
        return aborted, caught.value.reason

    aborted, reason = run(go())
    assert reason == "client_gone"
    deadline = time.monotonic() + 2
    while upstream.stats("cl-abort")["closed_early"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert upstream.stats("cl-abort")["close_times"][-1] - aborted < 0.5


def test_admission_waits_then_refuses_past_its_deadline(upstream):
    async def go():
        client = UpstreamClient(1, 0.2)
        held = await client.open(upstream.base("cl-adm") + "/chat/completions",
                                 HEADERS.with_overrides({"x-mock-fault": "hang"}), BODY, FAST)
        with pytest.raises(Overloaded):
            await client.open(upstream.base("cl-adm") + "/chat/completions", HEADERS, BODY, FAST)
        waiting = asyncio.ensure_future(client.open(upstream.base("cl-adm2") + "/chat/completions", HEADERS, BODY,
                                                    Timeouts(2, 2, 2, 10)))
        await asyncio.sleep(0.05)
        held.abort("done")  # frees the slot: the waiter gets it
        second = await waiting
        await second.started()
        body = await second.read_all(1 << 20)
        client.close()
        return body

    body = run(go())
    assert body.endswith(b"[DONE]\n\n")


def test_a_reused_handle_sends_each_requests_own_url_headers_method_and_body(upstream):
    """One slot, so every request reuses the same curl handle, which is never reset (curl_pool.py)."""
    async def go():
        client = UpstreamClient(1, 1.0)
        results = []
        for url, headers, body in (
                (upstream.base("cl-reuse-a") + "/chat/completions", {"x-first": "1"}, BODY),
                (upstream.base("cl-reuse-b") + "/models", {"x-second": "2"}, None),
                (upstream.base("cl-reuse-a") + "/chat/completions", {}, BODY.replace(b'"hi"', b'"again"'))):
            exchange = await client.open(url, HEADERS.with_overrides(headers), body, FAST)
            await exchange.started()
            results.append((exchange.status, await exchange.read_all(1 << 20)))
        client.close()
        return results

    (first, _), (second, models), (third, _) = run(go())
    assert (first, second, third) == (200, 200, 200)
    assert b'"object":"list"' in models.replace(b" ", b"")  # GET /models answered: the method was GET
    a, b = upstream.stats("cl-reuse-a")["last"], upstream.stats("cl-reuse-b")["last"]
    assert "x-second" in b["headers"] and "x-first" not in b["headers"]
    assert "x-first" not in a["headers"] and "again" in str(a["body"])
    assert "expect" not in a["headers"] and "pragma" not in a["headers"]


def test_header_block_refuses_injection_and_overrides_case_insensitively():
    with pytest.raises(ValueError):
        HeaderBlock({"x-evil": "a\r\nHost: elsewhere"})
    block = HeaderBlock({"Content-Type": "application/json", "anthropic-version": "2023-06-01"})
    derived = block.with_overrides({"Anthropic-Version": "2024-01-01"})
    assert b"Anthropic-Version: 2024-01-01" in derived.lines
    assert not any(line.lower().startswith(b"anthropic-version: 2023") for line in derived.lines)
    assert b"anthropic-version: 2023-06-01" in block.lines  # the node's block is untouched


def test_concurrent_transfers_each_end_with_their_own_outcome(upstream):
    """Completions are collected only when libcurl counts fewer running transfers than were added
    (``CurlPool._on_socket``): transfers ending in the same instant, mid-stream or at once, each end; the
    pool's handles serve a second round; a closed pool watches no socket any more."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    refused = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/chat/completions"
    sock.close()
    kinds = ["ok"] * 8 + ["reset-mid"] * 4 + ["503"] * 4 + ["refused"] * 2

    async def one(client: UpstreamClient, kind: str) -> str:
        url = refused if kind == "refused" else upstream.base("cl-many") + "/chat/completions"
        headers = {"x-mock-status": "503"} if kind == "503" else {"x-mock-fault": kind} if kind != "ok" else {}
        try:
            exchange, body = await fetch(url, headers=headers, client=client)
        except UpstreamError as exc:
            return f"{exc.phase.value}:{exc.reason}"
        return "done" if body.endswith(b"[DONE]\n\n") else str(exchange.status)

    async def go():
        client = UpstreamClient(32, 1.0)
        first = await asyncio.gather(*(one(client, kind) for kind in kinds))
        second = await asyncio.gather(*(one(client, "ok") for _ in range(8)))
        client.close()
        return first, second, dict(client._http._fds)

    first, second, watched_after = run(go())
    assert first == ["done"] * 8 + [f"{Phase.MID_STREAM.value}:reset"] * 4 + ["503"] * 4 + \
        [f"{Phase.CONNECT.value}:connect"] * 2
    assert second == ["done"] * 8
    assert watched_after == {}


def test_close_aborts_open_transfers_and_returns_once_each_has_ended(upstream):
    async def go():
        client = UpstreamClient(10, 1.0)
        hanging = [await client.open(upstream.base("cl-close") + "/chat/completions",
                                     HEADERS.with_overrides({"x-mock-fault": "hang"}), BODY, FAST) for _ in range(3)]
        await asyncio.sleep(0.2)  # connected, waiting for a first byte that never comes
        client.close()
        in_use = client.in_use  # every slot back: close returned only after each exchange had ended
        reasons = []
        for exchange in hanging:
            with pytest.raises(UpstreamError) as caught:
                await exchange.started()
            reasons.append(caught.value.reason)
        return reasons, in_use

    reasons, in_use = run(go())
    assert reasons == ["shutdown"] * 3 and in_use == 0


async def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def _unstamped(stream: bytes) -> bytes:
    return re.sub(rb'"created":\d+', b'"created":0', stream)


def test_pump_hands_chunks_to_the_sink_stops_when_told_and_resumes_without_loss(upstream):
    """A stream of ~450 KB: the first sink stops after one chunk; what arrives next waits (the transfer pauses
    at the high-water mark) and the second pump delivers it, then the rest as it arrives, byte for byte."""
    name = "cl-pump"
    upstream.control(name, tokens=3000)
    url = upstream.base(name) + "/chat/completions"

    async def go():
        expected = (await fetch(url))[1]
        client = UpstreamClient(10, 1.0)
        exchange = await client.open(url, HEADERS, BODY, FAST)
        await exchange.started()
        parts = [await exchange.read()]
        first_calls: list[bytes] = []

        def stop_after_one(chunk: bytes) -> bool:
            first_calls.append(chunk)
            return False

        assert await exchange.pump(stop_after_one) is False
        await _until(lambda: exchange._paused)  # nothing taken meanwhile: libcurl holds the upstream back
        assert len(first_calls) == 1

        def take(chunk: bytes) -> bool:
            parts.append(chunk)
            return True

        assert await exchange.pump(take) is True
        client.close()
        return expected, first_calls[0], parts

    expected, stopped_at, parts = run(go())
    assert len(expected) > 400_000 and expected.endswith(b"data: [DONE]\n\n")
    # The two fetches may fall in different seconds: the mock stamps every chunk with "created".
    assert _unstamped(parts[0] + stopped_at + b"".join(parts[1:])) == _unstamped(expected)
    assert len(parts) > 3  # handed over chunk by chunk, not as one body


def test_an_exception_in_the_sink_is_raised_by_pump(upstream):
    """The sink runs inside libcurl's write callback; what it raises surfaces where pump is awaited."""
    async def go():
        client = UpstreamClient(10, 1.0)
        exchange = await client.open(upstream.base("cl-pump-raise") + "/chat/completions", HEADERS, BODY, FAST)
        await exchange.started()
        await exchange.read()

        def broken(chunk: bytes) -> bool:
            raise ValueError("the sink broke")

        with pytest.raises(ValueError, match="the sink broke"):
            await exchange.pump(broken)
        exchange.abort("failed")
        with pytest.raises(UpstreamError) as caught:
            await exchange.read_all(1 << 20)
        client.close()
        return caught.value.reason

    upstream.control("cl-pump-raise", tokens=50, chunk_delay_ms=5)
    assert run(go()) == "failed"
