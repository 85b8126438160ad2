"""A hostile world upstream (contract §4): nothing broken reaches a client as success.

Every hostile mode of the mock upstream (``bench/mock_hostile.py``, a real
loopback server) × {chat pass-through, messages pass-through, chat→anthropic,
messages→openai} × {stream, not}. Each model has a hostile node (weight 1000,
so it is tried first) and a healthy one (weight 1). Before the first byte the
hostile answer is a node failure, counted, and the request fails over to the
healthy node; after it, the stream ends with the protocol's error event. Every
event the client gets must parse (the official SDKs raise on anything else).
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import anthropic
import openai
import yaml

from tests.support.keys import TEST_KEY
from tests.conftest import MockUpstream, RunningGateway, base_config

PATHS = {  # name: (client endpoint, model) -> the node protocol follows from the model's nodes
    "chat-passthrough": ("/v1/chat/completions", "gpt-4o-mini"),
    "messages-passthrough": ("/v1/messages", "claude-sonnet-4-6"),
    "chat-to-anthropic": ("/v1/chat/completions", "claude-sonnet-4-6"),
    "messages-to-openai": ("/v1/messages", "gpt-4o-mini"),
}
MODES = ["html", "error-200", "truncated", "no-terminal", "bad-event", "empty-event", "huge-event"]
BAD = {"gpt-4o-mini": "oa-bad", "claude-sonnet-4-6": "an-bad"}
GOOD = {"gpt-4o-mini": "oa-good", "claude-sonnet-4-6": "an-good"}
NODE_KEYS = {"oa-bad": "sk-oa-bad-0123456789abcdef", "oa-good": "sk-oa-good-0123456789abcdef",
             "an-bad": "sk-ant-bad-0123456789abcdef", "an-good": "sk-ant-good-0123456789abcdef"}
EVENT_LIMIT = 256 * 1024


def hostile_config(upstream: MockUpstream, state_dir: Path) -> dict[str, Any]:
    def node(node_id: str, provider: str, model: str, upstream_model: str, weight: int) -> dict[str, Any]:
        suffix = "/v1" if provider == "openai" else ""
        return {"id": node_id, "provider": provider, "base_url": upstream.base(f"hostile-{node_id}", suffix),
                "api_key": NODE_KEYS[node_id], "weight": weight, "models": {model: upstream_model}}

    nodes = [node("oa-bad", "openai", "gpt-4o-mini", "up-gpt", 1000),
             node("oa-good", "openai", "gpt-4o-mini", "up-gpt", 1),
             node("an-bad", "anthropic", "claude-sonnet-4-6", "claude-up", 1000),
             node("an-good", "anthropic", "claude-sonnet-4-6", "claude-up", 1)]
    config = base_config(state_dir, nodes)
    del config["models"]["text-embedding-3-small"]
    config["routing"] = {"strategy": "round-robin"}
    config["circuit_breaker"] = {"failure_threshold": 1_000_000}  # the hostile node stays first in line
    config["limits"] = {"max_event_bytes": EVENT_LIMIT}
    return config


@pytest.fixture(scope="module")
def gateway(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("hostile")
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(hostile_config(upstream, root / "state")))
    running = RunningGateway(path)
    yield running
    running.stop()


def body_for(endpoint: str, model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "stream": stream, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "tell me a story"}]}
    return body


def failures(gateway: RunningGateway, node: str) -> int:
    rows = gateway.call(gateway.services.router.status)
    return sum(row["recent_failures"] for row in rows if row["node"] == node)


def events_of(data: bytes) -> list[tuple[str | None, bytes]]:
    out = []
    for block in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, payload = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                payload.append(line[5:].lstrip())
        if name is not None or payload:
            out.append((name, b"\n".join(payload)))
    return out


class Answer:
    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, content

    def json(self) -> Any:
        return json.loads(self.content)


def call(gateway: RunningGateway, endpoint: str, body: dict[str, Any]) -> Answer:
    port = int(gateway.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", endpoint, json.dumps(body), {"Authorization": f"Bearer {TEST_KEY}",
                                                      "Content-Type": "application/json",
                                                      "anthropic-version": "2023-06-01"})
    response = conn.getresponse()
    answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    conn.close()
    return answer


CASES = [(mode, path, stream) for mode in MODES for path in PATHS for stream in (False, True)
         if stream or mode != "huge-event"]  # one huge event is a stream's problem (a body has MAX_RESPONSE_BODY)


@pytest.mark.parametrize("mode,path,stream", CASES,
                         ids=[f"{m}-{p}-{'stream' if s else 'whole'}" for m, p, s in CASES])
def test_a_hostile_answer_never_reaches_the_client_as_success(gateway, upstream, mode, path, stream):
    endpoint, model = PATHS[path]
    bad = BAD[model]
    upstream.control(f"hostile-{bad}", fault=mode, event_bytes=2 * EVENT_LIMIT)
    try:
        before = failures(gateway, bad)
        response = call(gateway, endpoint, body_for(endpoint, model, stream))
    finally:
        upstream.control(f"hostile-{bad}", fault=None, event_bytes=None)
    served_by = response.headers["x-infermesh-node"]
    assert failures(gateway, bad) == before + 1  # the hostile answer counted as that node's failure
    assert response.status_code == 200
    if not stream or served_by == GOOD[model]:  # failed over before the first byte
        assert served_by == GOOD[model] and response.headers["x-infermesh-attempts"] == "2"
        if stream:
            assert_complete_stream(endpoint, response.content)
        else:
            assert_success_body(endpoint, response.json())
        return
    assert served_by == bad  # committed, then found broken: the stream ends with the protocol's error event
    events = events_of(response.content)
    for name, payload in events:
        assert payload == b"[DONE]" or isinstance(json.loads(payload), dict), (name, payload[:80])
    last_name, last = events[-1]
    if endpoint == "/v1/messages":
        assert last_name == "error" and json.loads(last)["type"] == "error"
        assert "message_stop" not in [name for name, _ in events]
    else:
        assert "error" in json.loads(last) and b"[DONE]" not in response.content


def assert_success_body(endpoint: str, body: dict[str, Any]) -> None:
    if endpoint == "/v1/messages":
        assert body["type"] == "message" and body["content"][0]["text"]
    else:
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]


def assert_complete_stream(endpoint: str, data: bytes) -> None:
    events = events_of(data)
    if endpoint == "/v1/messages":
        assert events[-1][0] == "message_stop"
    else:
        assert events[-1][1] == b"[DONE]"


def test_an_oversized_event_aborts_the_upstream_transfer(gateway, upstream):
    """A 50 MB event against a 256 KiB limit: the client's stream ends with the error event and the
    upstream connection is closed early, long before the event is complete (memory bounded by the limit)."""
    name = f"hostile-{BAD['gpt-4o-mini']}"
    upstream.control(name, fault="huge-event", event_bytes=50 << 20)
    try:
        closed_before = upstream.stats(name)["closed_early"]
        response = call(gateway, "/v1/chat/completions", body_for("chat", "gpt-4o-mini", True))
    finally:
        upstream.control(name, fault=None, event_bytes=None)
    last = events_of(response.content)[-1][1]
    assert f"over {EVENT_LIMIT} bytes" in json.loads(last)["error"]["message"]
    assert upstream.stats(name)["closed_early"] == closed_before + 1


@pytest.mark.parametrize("mode", ["bad-event", "no-terminal", "empty-event"])
def test_the_official_sdks_see_an_api_error_not_a_parse_failure(gateway, upstream, mode):
    for model in ("gpt-4o-mini", "claude-sonnet-4-6"):
        upstream.control(f"hostile-{BAD[model]}", fault=mode)
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=20)
        with pytest.raises(openai.APIError) as caught:
            for _ in client.chat.completions.create(model="claude-sonnet-4-6", stream=True, max_tokens=64,
                                                    messages=[{"role": "user", "content": "hi"}]):
                pass
        assert "upstream" in str(caught.value)
        claude = anthropic.Anthropic(base_url=gateway.url, api_key=TEST_KEY, max_retries=0, timeout=20)
        with pytest.raises(anthropic.APIError) as caught_ant:
            for _ in claude.messages.create(model="gpt-4o-mini", stream=True, max_tokens=64,
                                            messages=[{"role": "user", "content": "hi"}]):
                pass
        assert "upstream" in str(caught_ant.value)
    finally:
        for model in ("gpt-4o-mini", "claude-sonnet-4-6"):
            upstream.control(f"hostile-{BAD[model]}", fault=None)
