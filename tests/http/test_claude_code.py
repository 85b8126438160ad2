"""Claude Code's request pattern, replayed through the gateway.

What Claude Code sends when pointed at a gateway (``ANTHROPIC_BASE_URL`` +
``ANTHROPIC_AUTH_TOKEN``): the beta Messages API (``/v1/messages?beta=true``)
with ``Authorization: Bearer``, ``anthropic-version`` and ``anthropic-beta``
headers; a system prompt as text blocks with ``cache_control``; its tools
(JSON Schema draft-07 with ``additionalProperties: false``); extended
thinking; ``metadata.user_id``; a streamed main-model turn; token counting
(``/v1/messages/count_tokens``); and small-model (Haiku) non-streaming calls.

Both node kinds it can land on are covered: an OpenAI-protocol node (every
request translated) and an Anthropic node (passed through: ``anthropic-beta``
forwarded, thinking blocks and their signatures relayed untouched, so the
mock's signature check accepts them when Claude Code sends them back).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import anthropic
import pytest
import yaml

from bench.wire_anthropic import signature_for
from bench.wire_common import dumps
from gateway.http.count_tokens import estimate_input_tokens
from gateway.upstream.mock_script import estimate_tokens
from tests.support.keys import TEST_KEY
from tests.conftest import MockUpstream, RunningGateway, base_config

BETAS = ["claude-code-20250219", "interleaved-thinking-2025-05-14", "fine-grained-tool-streaming-2025-05-14"]
MAIN_MODEL = "claude-sonnet-4-6"
SMALL_MODEL = "claude-haiku-4-5-20251001"  # a dated id: resolved through the catalogue's aliases
NODE_KEY = "sk-cc-node"

SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
     "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "You are an interactive CLI tool that helps users with software engineering tasks.",
     "cache_control": {"type": "ephemeral"}},
]
TOOLS = [
    {"name": "Bash", "description": "Executes a given bash command in a persistent shell session.",
     "input_schema": {"type": "object", "properties": {
         "command": {"type": "string", "description": "The command to execute"},
         "timeout": {"type": "number", "description": "Optional timeout in milliseconds"},
         "description": {"type": "string"}},
         "required": ["command"], "additionalProperties": False,
         "$schema": "http://json-schema.org/draft-07/schema#"}},
    {"name": "Read", "description": "Reads a file from the local filesystem.",
     "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                      "required": ["file_path"], "additionalProperties": False,
                      "$schema": "http://json-schema.org/draft-07/schema#"}},
]
FIRST_TURN = [{"role": "user", "content": [
    {"type": "text", "text": "<system-reminder>This is a reminder.</system-reminder>"},
    {"type": "text", "text": "call Bash to list the files here", "cache_control": {"type": "ephemeral"}}]}]
METADATA = {"user_id": "user_0123abcd_account__session_4567ef"}
THINKING = {"type": "enabled", "budget_tokens": 4096}


def cc_config(upstream: MockUpstream, state_dir: Path, kind: str) -> dict[str, Any]:
    if kind == "anthropic":
        node = {"id": "cc-anthropic", "provider": "anthropic", "base_url": upstream.base("cc-anthropic", ""),
                "api_key": NODE_KEY, "models": {MAIN_MODEL: "claude-sonnet-4-6", "claude-haiku-4-5": SMALL_MODEL}}
    else:
        node = {"id": "cc-openai", "provider": "openai", "base_url": upstream.base("cc-openai"), "api_key": NODE_KEY,
                "models": {MAIN_MODEL: "up-sonnet", "claude-haiku-4-5": "up-haiku"}}
    models = {
        MAIN_MODEL: {"aliases": ["claude-sonnet-4.6"], "price": {"input": 3.00, "output": 15.00,
                                                                "cached_input": 0.30}},
        "claude-haiku-4-5": {"aliases": ["claude-haiku-4.5", SMALL_MODEL],
                             "price": {"input": 1.00, "output": 5.00, "cached_input": 0.10}},
    }
    return base_config(state_dir, [node], models=models)


@pytest.fixture(scope="module", params=["openai", "anthropic"])
def gateway(request: pytest.FixtureRequest, upstream: MockUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp(f"cc-{request.param}")
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(cc_config(upstream, root / "state", request.param)))
    running = RunningGateway(path)
    running.kind = request.param  # type: ignore[attr-defined]
    running.node = f"cc-{request.param}"  # type: ignore[attr-defined]
    yield running
    running.stop()


def claude_code(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> anthropic.Anthropic:
    """The client as Claude Code builds it: bearer token auth, its own headers."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=None, auth_token=TEST_KEY, max_retries=0,
                                 timeout=20, default_headers={"x-app": "cli", "anthropic-version": "2023-06-01",
                                                              "User-Agent": "claude-cli/2.1.0 (external, cli)"})
    assert client.auth_headers == {"Authorization": f"Bearer {TEST_KEY}"}  # no x-api-key: Bearer only
    return client


def last_upstream(upstream: MockUpstream, gateway: RunningGateway) -> dict[str, Any]:
    return upstream.stats(gateway.node)["last"]  # type: ignore[attr-defined]


def stream_turn(client: anthropic.Anthropic, messages: list[dict[str, Any]]) -> Any:
    with client.beta.messages.stream(model=MAIN_MODEL, max_tokens=32000, system=SYSTEM, tools=TOOLS,
                                     messages=messages, metadata=METADATA, thinking=THINKING, betas=BETAS,
                                     extra_body={"temperature": 1}) as events:
        for _ in events:
            pass
        return events.get_final_message()


def test_main_loop_streams_tool_use_and_result(gateway: RunningGateway, upstream: MockUpstream,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client = claude_code(gateway, monkeypatch)
    first = stream_turn(client, list(FIRST_TURN))
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "Bash" and call.input == {"command": "Paris"}
    seen = last_upstream(upstream, gateway)
    assert TEST_KEY not in json.dumps(seen)
    if gateway.kind == "anthropic":  # type: ignore[attr-defined]
        # Passed through: the beta header, the cache_control'd system blocks and the thinking option as sent.
        assert seen["path"] == "/v1/messages"
        assert seen["headers"]["anthropic-beta"] == ",".join(BETAS)
        assert seen["headers"]["anthropic-version"] == "2023-06-01"
        assert seen["headers"]["x-api-key"] == NODE_KEY
        assert seen["body"]["system"] == SYSTEM and seen["body"]["thinking"] == THINKING
        assert seen["body"]["metadata"] == METADATA and seen["body"]["tools"] == TOOLS
        # The thinking block and its signature arrive exactly as the node streamed them.
        thinking = first.content[0]
        assert thinking.type == "thinking" and thinking.thinking == "Let me think about this step by step."
        assert thinking.signature == signature_for(thinking.thinking)
    else:
        assert seen["path"] == "/v1/chat/completions"
        assert seen["headers"]["authorization"] == "Bearer " + NODE_KEY
        body = seen["body"]
        assert body["model"] == "up-sonnet" and body["stream"] is True
        assert body["messages"][0] == {"role": "system", "content": "\n\n".join(b["text"] for b in SYSTEM)}
        assert [t["function"]["name"] for t in body["tools"]] == ["Bash", "Read"]
        assert [b.type for b in first.content] == ["tool_use"]  # thinking has no portable form: dropped

    # Claude Code runs the tool and sends back the whole assistant turn (thinking included) and the result.
    messages = list(FIRST_TURN) + [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "README.md gateway tests"}]},
    ]
    final = stream_turn(client, messages)
    assert final.stop_reason == "end_turn"
    assert [b.text for b in final.content if b.type == "text"] == ["The tool said: README.md gateway tests"]
    if gateway.kind == "anthropic":  # type: ignore[attr-defined]
        replayed = last_upstream(upstream, gateway)["body"]["messages"][1]["content"][0]
        assert replayed["type"] == "thinking" and replayed["signature"] == signature_for(replayed["thinking"])


def test_small_model_non_streaming(gateway: RunningGateway, upstream: MockUpstream,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client = claude_code(gateway, monkeypatch)
    raw = client.beta.messages.with_raw_response.create(
        model=SMALL_MODEL, max_tokens=512, betas=BETAS, metadata=METADATA,
        system=[{"type": "text", "text": "Analyze if this message indicates a new conversation topic."}],
        messages=[{"role": "user", "content": "list the files here"}])
    message = raw.parse()
    assert raw.headers["x-infermesh-node"] == gateway.node  # type: ignore[attr-defined]
    assert message.stop_reason == "end_turn" and message.content[0].text.startswith("list the files here")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 12
    body = last_upstream(upstream, gateway)["body"]
    assert body["model"] == (SMALL_MODEL if gateway.kind == "anthropic" else "up-haiku")  # type: ignore[attr-defined]
    assert "stream" not in body or body["stream"] is False


def test_count_tokens(gateway: RunningGateway, upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    client = claude_code(gateway, monkeypatch)
    requests_before = upstream.stats(gateway.node)["requests"]  # type: ignore[attr-defined]
    raw = client.beta.messages.with_raw_response.count_tokens(
        model=MAIN_MODEL, system=SYSTEM, tools=TOOLS, messages=FIRST_TURN, betas=["token-counting-2024-11-01"])
    counted = raw.parse()
    if gateway.kind == "anthropic":  # type: ignore[attr-defined]
        # Exact: the node's own count, relayed. The mock counts by its own rule, not the gateway's estimate.
        assert counted.input_tokens == estimate_tokens(dumps([SYSTEM, FIRST_TURN, TOOLS]).decode())
        assert raw.headers["x-infermesh-node"] == "cc-anthropic" and "x-infermesh-estimated" not in raw.headers
        seen = last_upstream(upstream, gateway)
        assert seen["path"] == "/v1/messages/count_tokens"
        assert "token-counting-2024-11-01" in seen["headers"]["anthropic-beta"].split(",")  # as the SDK sent it
        assert seen["headers"]["x-api-key"] == NODE_KEY and TEST_KEY not in json.dumps(seen)
        assert seen["body"]["model"] == "claude-sonnet-4-6" and "max_tokens" not in seen["body"]
    else:
        body = {"system": SYSTEM, "tools": TOOLS, "messages": FIRST_TURN}
        assert counted.input_tokens == estimate_input_tokens(body)
        assert raw.headers["x-infermesh-estimated"] == "true"
        assert upstream.stats(gateway.node)["requests"] == requests_before  # type: ignore[attr-defined]
    # Free: counting tokens is never billed.
    assert not [row for row in gateway.call(lambda: gateway.services.ledger.usage("test", limit=1000))
                if row.get("endpoint") == "count_tokens"]


def test_count_tokens_errors_are_anthropic_shaped(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    client = claude_code(gateway, monkeypatch)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.count_tokens(model="claude-nonexistent", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["type"] == "error" and missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.count_tokens(model=MAIN_MODEL, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    anonymous = anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0, timeout=20)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anonymous.messages.count_tokens(model=MAIN_MODEL, messages=[{"role": "user", "content": "x"}])
    assert denied.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("gateway", ["anthropic"], indirect=True)  # only an Anthropic node is asked to count
def test_count_tokens_falls_back_to_estimate_when_the_node_fails(gateway: RunningGateway, upstream: MockUpstream,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    client = claude_code(gateway, monkeypatch)
    upstream.control("cc-anthropic", status=500)
    try:
        raw = client.messages.with_raw_response.count_tokens(model=MAIN_MODEL, messages=FIRST_TURN)
    finally:
        upstream.control("cc-anthropic", status=None)
    assert raw.parse().input_tokens == estimate_input_tokens({"messages": FIRST_TURN})
    assert raw.headers["x-infermesh-estimated"] == "true"
