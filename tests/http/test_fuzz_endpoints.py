"""Property: whatever a client sends to a model endpoint, the answer is a 2xx or a 4xx in that
endpoint's error shape, never a 5xx of the gateway's own and never a dropped connection.

Bodies are valid requests with one field (at any depth) replaced by arbitrary
JSON, including lone surrogates and huge numbers, plus arbitrary JSON
documents and bytes. The gateway serves them from an in-process mock node, so
translators (Messages and Responses to chat) see the fuzzed requests too.
"""

from __future__ import annotations

import http.client
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.keys import TEST_KEY
from tests.conftest import base_config
from tests.http.test_hostile_input import GOOD, error_of

TEXT = st.text(alphabet=st.characters(codec=None), max_size=20) | st.sampled_from(
    ["\ud800", "a\udfff", "", "user", "assistant", "tool", "text", "tool_use", "function", "\x00"])
SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70) | \
    st.floats(allow_nan=False) | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (of keys and indexes) into a JSON value."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths_of(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += paths_of(child, prefix + (i,))
    return out


RICH = {
    "chat": {"model": "gpt-4o-mini", "stream": True, "max_tokens": 5, "temperature": 0.5,
             "stream_options": {"include_usage": True},
             "messages": [{"role": "system", "content": "s"},
                          {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "u"},
                          {"role": "assistant", "content": None,
                           "tool_calls": [{"id": "c1", "type": "function",
                                           "function": {"name": "f", "arguments": "{}"}}]},
                          {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
             "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    "messages": {"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": True, "system": [{"type": "text",
                                                                                          "text": "s"}],
                 "messages": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                                                 "input": {"a": 1}}]},
                              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                            "content": "ok"}]}],
                 "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                 "tool_choice": {"type": "auto"}},
    "responses": {"model": "gpt-4o-mini", "stream": True, "instructions": "be brief", "max_output_tokens": 5,
                  "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                            {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
                  "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]},
    "embeddings": {"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float"},
}


@st.composite
def mutated(draw: Any, endpoint: str) -> bytes:
    """A rich valid body with one node replaced (or deleted), or a wholly arbitrary document."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return json.dumps(draw(JSON)).encode()
    if choice == 1:
        return draw(st.binary(max_size=64))
    body = json.loads(json.dumps(RICH[endpoint]))
    body["stream"] = draw(st.booleans()) if endpoint != "embeddings" else False
    path = draw(st.sampled_from(paths_of(body)[1:]))
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON)
    return json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory):
    from tests.conftest import RunningGateway
    import yaml
    tmp = tmp_path_factory.mktemp("fuzz")
    config = base_config(tmp / "state", [{"id": "m", "provider": "mock", "models": [
        "gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]}])
    config["accounts"][0]["balance_usd"] = 1_000_000
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = RunningGateway(path)
    port = int(gateway.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    yield gateway, conn
    conn.close()
    gateway.stop()  # raises if any request made a 500 of ours


@pytest.mark.parametrize("endpoint", list(GOOD))
def test_no_input_makes_a_5xx(fuzz_gateway, endpoint):
    gateway, conn = fuzz_gateway
    path = GOOD[endpoint][0]
    errors_before = gateway.services.internal_errors

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")), deadline=None,
              derandomize=not os.environ.get("FUZZ_EXAMPLES"), suppress_health_check=list(HealthCheck), database=None)
    @given(body=mutated(endpoint))
    def check(body: bytes) -> None:
        conn.request("POST", path, body, {"Authorization": f"Bearer {TEST_KEY}",
                                          "Content-Type": "application/json"})
        response = conn.getresponse()  # a dropped connection raises here
        data = response.read()
        assert response.status < 500, (response.status, data[:300])
        if response.status >= 400:
            error_of(endpoint, json.loads(data))
        elif response.getheader("Content-Type") == "text/event-stream":
            assert data.rstrip().endswith((b"[DONE]", b"message_stop\"}", b"}")), data[-200:]
        else:
            json.loads(data)

    check()
    assert gateway.services.internal_errors == errors_before
