"""OpenAI protocol end to end: official SDK -> gateway -> mock upstream process -> back."""

from __future__ import annotations

import http.client
import json
import socket
import time

import anthropic
import openai
import pytest

from tests.support.keys import TEST_KEY
from tests.conftest import wait_for


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=20)



def test_plain_chat_through_sdk(openai_gateway, upstream):
    reply = client(openai_gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
    completion = reply.parse()
    assert completion.choices[0].message.content.startswith("hello there")
    assert completion.usage.completion_tokens == 12
    assert reply.headers["x-infermesh-node"] == "up"
    assert reply.headers["x-request-id"]
    assert float(reply.headers["x-infermesh-cost-usd"]) > 0
    seen = upstream.stats(openai_gateway.node_name)["last"]
    assert seen["body"]["model"] == "up-model"  # only the model id is rewritten
    assert seen["headers"]["authorization"] == "Bearer sk-upstream-secret"  # the node's key, not the client's
    assert TEST_KEY not in json.dumps(seen)


def test_streaming_chunks_arrive_as_upstream_emits_them(openai_gateway, upstream):
    upstream.control(openai_gateway.node_name, chunk_delay_ms=150, tokens=6)
    arrivals = []
    stream = client(openai_gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three four five six"}], stream=True)
    text = ""
    for chunk in stream:
        arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == "one two three four five six"
    # The upstream spends ~0.9 s emitting; the first chunk must not wait for the last.
    assert arrivals[-1] - arrivals[0] > 0.5


def test_usage_chunk_only_when_client_asks(openai_gateway, upstream):
    sdk = client(openai_gateway)
    messages = [{"role": "user", "content": "count me"}]
    without = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    assert all(chunk.usage is None for chunk in without)
    # The gateway asked the upstream for usage anyway, to bill it.
    assert upstream.stats(openai_gateway.node_name)["last"]["body"]["stream_options"] == {"include_usage": True}
    with_usage = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                                  stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens == 12
    usage = openai_gateway.call(lambda: openai_gateway.services.ledger.usage("test", limit=2))
    assert [row["output_tokens"] for row in usage] == [12, 12]
    assert not any(row["estimated"] for row in usage)


def test_client_disconnect_closes_upstream_within_a_second(openai_gateway, upstream):
    name = openai_gateway.node_name
    upstream.control(name, chunk_delay_ms=100, tokens=200)  # a 20-second stream
    conn = http.client.HTTPConnection("127.0.0.1", int(openai_gateway.url.rsplit(":", 1)[1]), timeout=10)
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    conn.request("POST", "/v1/chat/completions", body,
                 {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.read1(65536).startswith(b"data: ")  # the stream is flowing
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    closed_at = time.time()
    assert wait_for(lambda: upstream.stats(name)["closed_early"] == 1, timeout=1.0)
    assert upstream.stats(name)["close_times"][-1] - closed_at < 1.0
    # The abandoned stream is still billed for what was generated.
    usage = openai_gateway.call(lambda: openai_gateway.services.ledger.usage("test", limit=1))
    assert usage[0]["status"] == 499 and usage[0]["output_tokens"] > 0


def test_slow_reader_does_not_grow_gateway_memory(openai_gateway, upstream):
    """A client that reads nothing: the upstream is paused, the gateway buffers a bounded amount."""
    name = openai_gateway.node_name
    upstream.control(name, tokens=100_000)  # ~15 MB of SSE, sent as fast as the socket allows
    sock = socket.create_connection(("127.0.0.1", int(openai_gateway.url.rsplit(":", 1)[1])))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    time.sleep(1.0)  # let both sides fill their buffers
    stats = upstream.stats(name)
    assert stats["in_flight"] == 1 and stats["completed"] == 0  # the upstream is held back, not drained
    rss_before = _rss_kib()
    time.sleep(0.5)
    assert _rss_kib() - rss_before < 8 * 1024  # not growing while the client stalls
    received = 0
    sock.settimeout(20)
    while True:
        data = sock.recv(1 << 20)
        if not data:
            break
        received += len(data)
        if data.endswith(b"0\r\n\r\n"):
            break
    sock.close()
    assert received > 10_000_000
    assert wait_for(lambda: upstream.stats(name)["completed"] == 1)


def test_a_slow_reader_gets_the_whole_stream_in_order(openai_gateway, upstream):
    """Backpressure, then catching up: a client that reads 1 KiB every 2 ms at first makes the relay wait for
    its socket to drain again and again (the stream is far larger than every buffer on the way), and it
    still gets every event, in order, exactly as a fast client does."""
    name = openai_gateway.node_name
    upstream.control(name, tokens=4000)
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    headers = {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}

    def events(slow: bool) -> list[str]:
        conn = http.client.HTTPConnection("127.0.0.1", int(openai_gateway.url.rsplit(":", 1)[1]), timeout=20)
        conn.connect()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        conn.request("POST", "/v1/chat/completions", body, headers)
        response = conn.getresponse()
        assert response.status == 200
        raw, reads = b"", 0
        while data := response.read1(1024 if slow and reads < 200 else 65536):
            raw += data
            reads += 1
            if slow and reads < 200:
                time.sleep(0.002)
        conn.close()
        return [line[6:] for line in raw.decode().split("\n\n") if line.startswith("data: ")]

    fast, slow = events(False), events(True)
    assert sum(len(event) for event in slow) > 400_000
    assert slow[-1] == "[DONE]" and len(slow) == len(fast)

    def text(stream: list[str]) -> str:
        return "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in stream[:-1]
                       if json.loads(e)["choices"])

    assert text(slow) == text(fast) and len(text(slow).split()) == 4000


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_upstream_client_error_returned_unchanged(openai_gateway, upstream):
    upstream.control(openai_gateway.node_name, status=400)
    with pytest.raises(openai.BadRequestError) as caught:
        client(openai_gateway).chat.completions.create(model="gpt-4o-mini",
                                                       messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 400
    assert caught.value.body == {"message": "mock upstream error 400", "type": "invalid_request_error",
                                 "param": None, "code": None}
    assert upstream.stats(openai_gateway.node_name)["requests"] == 1  # not retried elsewhere


def test_embeddings_through_sdk(openai_gateway, upstream):
    result = client(openai_gateway).embeddings.create(model="text-embedding-3-small", input=["a", "bb"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert upstream.stats(openai_gateway.node_name)["last"]["body"]["model"] == "up-embed"


def test_models_and_pricing(openai_gateway):
    sdk = client(openai_gateway)
    ids = {model.id for model in sdk.models.list()}
    assert ids == {"gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"}
    model = sdk.models.retrieve("claude-sonnet-4.6")
    assert model.id == "claude-sonnet-4-6"
    assert model.model_extra["pricing"]["output"] == "15.0"
    with urllib_open(openai_gateway.url + "/pricing") as response:
        pricing = json.loads(response.read())
    assert pricing["currency"] == "USD"
    assert {"id": "text-embedding-3-small", "kind": "embedding", "input": "0.02"} in pricing["models"]


def test_models_for_the_anthropic_sdk(openai_gateway):
    """The same list reads as Anthropic's Models API: typed entries, a display name, a date, a last page."""
    sdk = anthropic.Anthropic(base_url=openai_gateway.url, api_key=TEST_KEY, max_retries=0)
    page = sdk.models.list()
    ids = [m.id for m in page.data]
    assert sorted(ids) == ["claude-sonnet-4-6", "gpt-4o-mini", "text-embedding-3-small"]
    assert all(m.type == "model" and m.display_name == m.id and m.created_at.year == 1970 for m in page.data)
    assert page.has_more is False and (page.first_id, page.last_id) == (ids[0], ids[-1])
    assert [m.id for m in sdk.models.list()] == [m.id for m in page.data]  # auto-pagination stops after one page
    model = sdk.models.retrieve("claude-sonnet-4.6")
    assert model.id == "claude-sonnet-4-6" and model.type == "model"


def test_health_ready_and_metrics(openai_gateway):
    for path, expected in (("/healthz", b"ok"), ("/readyz", b"ready"), ("/metrics", b"infermesh_requests_total")):
        with urllib_open(openai_gateway.url + path) as response:
            assert response.status == 200
            assert expected in response.read()


def urllib_open(url: str):
    import urllib.request
    return urllib.request.urlopen(url, timeout=5)
