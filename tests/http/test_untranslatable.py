"""What the gateway cannot translate is the client's 400 at once; what it drops, it says (contract §3)."""

from __future__ import annotations

import httpx2 as httpx  # the SDKs installed here use the httpx2 fork

from tests.support.keys import TEST_KEY
from tests.conftest import MockUpstream, RunningGateway

HEADERS = {"Authorization": f"Bearer {TEST_KEY}"}
FUNCTION = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


def test_untranslatable_tool_is_a_400_naming_it_before_any_node(openai_gateway: RunningGateway,
                                                               upstream: MockUpstream) -> None:
    node = openai_gateway.node_name  # type: ignore[attr-defined]
    body = {"model": "gpt-4o-mini", "input": "hi", "tools": [FUNCTION, {"type": "teleport"}]}
    for _ in range(7):  # more than the breaker's failure threshold: none of them may count against the node
        reply = httpx.post(openai_gateway.url + "/v1/responses", json=body, headers=HEADERS, timeout=10)
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["param"] == "tools[1].type" and "teleport" in error["message"]
        assert "x-infermesh-attempts" not in reply.headers
    assert upstream.stats(node)["requests"] == 0
    good = httpx.post(openai_gateway.url + "/v1/responses", json={**body, "tools": [FUNCTION]}, headers=HEADERS,
                      timeout=10)
    assert good.status_code == 200 and upstream.stats(node)["requests"] == 1


def test_hosted_tools_are_dropped_and_named(openai_gateway: RunningGateway, upstream: MockUpstream) -> None:
    node = openai_gateway.node_name  # type: ignore[attr-defined]
    body = {"model": "gpt-4o-mini", "input": "hi", "store": False, "include": ["reasoning.encrypted_content"],
            "tools": [FUNCTION, {"type": "web_search", "external_web_access": False},
                      {"type": "tool_search", "execution": "client", "parameters": {"type": "object"}}]}
    for stream in (False, True):
        reply = httpx.post(openai_gateway.url + "/v1/responses", json={**body, "stream": stream}, headers=HEADERS,
                           timeout=10)
        assert reply.status_code == 200
        assert reply.headers["x-infermesh-dropped-tools"] == "web_search, tool_search"
        sent = upstream.stats(node)["last"]["body"]
        assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"] and "include" not in sent
    plain = httpx.post(openai_gateway.url + "/v1/chat/completions", headers=HEADERS, timeout=10,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert plain.status_code == 200 and "x-infermesh-dropped-tools" not in plain.headers  # pass-through
