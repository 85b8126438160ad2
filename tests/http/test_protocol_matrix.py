"""Every client protocol to every provider, end to end, through the official SDKs.

Rows: the client protocol (``chat`` and ``responses`` through the OpenAI SDK,
``messages`` through the Anthropic SDK, ``gemini`` through the google-genai
SDK, ``tests/http/gemini_sdk.py``). Columns: the node's provider, each a
node of one gateway: ``openai`` (Chat Completions on the mock upstream
process), ``openai-responses`` (an openai node with ``responses: true``: the
Responses pass-through), ``anthropic`` and ``gemini`` (their real wire formats
on the mock upstream process) and ``mock`` (the in-process provider). Cells:
``plain``, ``stream``, ``tools`` (a tool call, the client runs the tool, sends
the result, gets an answer quoting it) and ``tools-stream`` (the same, both
legs streamed). Test ids read ``test_matrix[<client>-<provider>-<mode>]``;
``docs/protocols.md`` names them.

The mock upstream's wires check requests as the real APIs do (auth headers,
unknown fields, tool results answering tool calls), so a translation bug is
a 400 here; the SDKs parsing every reply and stream without error is the
other half. Each cell also looks at what the upstream received.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import anthropic
import openai
import pytest
import yaml

from tests.support.keys import TEST_KEY
from tests.conftest import MockUpstream, RunningGateway, base_config
from tests.http.gemini_sdk import gemini_plain, gemini_stream, gemini_tools

CLIENTS = ("chat", "responses", "messages", "gemini")
PROVIDERS = ("openai", "openai-responses", "anthropic", "gemini", "mock")
MODES = ("plain", "stream", "tools", "tools-stream")

# provider -> (node id, public model, the node's own model id, upstream node name on the mock process)
NODES = {
    "openai": ("oa", "gpt-4o-mini", "up-gpt-4o-mini", "pm-openai"),
    "openai-responses": ("oa-resp", "gpt-4-1", "up-gpt-4.1", "pm-openai-resp"),
    "anthropic": ("ant", "claude-sonnet-4-6", "claude-sonnet-4-6-20260101", "pm-anthropic"),
    "gemini": ("gem", "gemini-2.5-flash", "gemini-2.5-flash-002", "pm-gemini"),
    "mock": ("mock", "mock-model", "mock-model", None),
}
NODE_KEYS = {"openai": "sk-oa-node", "openai-responses": "sk-oa-resp-node", "anthropic": "sk-ant-node",
             "gemini": "gm-node-key"}
EMBED_NODE = "pm-gemini-embed"

PROMPT = "hello from the matrix"
QUESTION = "What is the weather in Paris? Please call get_weather."
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "description": "a city"}},
          "required": ["city"]}
TOOL_DESCRIPTION = "Current weather for a city"


def run_tool(arguments: dict[str, Any]) -> str:
    return f"18C and sunny in {arguments['city']}"


# --- the gateway ---------------------------------------------------------------


def matrix_config(upstream: MockUpstream, state_dir: Path) -> dict[str, Any]:
    nodes = [
        {"id": "oa", "provider": "openai", "base_url": upstream.base("pm-openai"), "api_key": NODE_KEYS["openai"],
         "models": {"gpt-4o-mini": "up-gpt-4o-mini"}},
        {"id": "oa-resp", "provider": "openai", "responses": True, "base_url": upstream.base("pm-openai-resp"),
         "api_key": NODE_KEYS["openai-responses"], "models": {"gpt-4-1": "up-gpt-4.1"}},
        {"id": "ant", "provider": "anthropic", "base_url": upstream.base("pm-anthropic", ""),
         "api_key": NODE_KEYS["anthropic"], "models": {"claude-sonnet-4-6": "claude-sonnet-4-6-20260101"}},
        {"id": "gem", "provider": "gemini", "base_url": upstream.base("pm-gemini", ""),
         "api_key": NODE_KEYS["gemini"], "models": {"gemini-2.5-flash": "gemini-2.5-flash-002"}},
        {"id": "gem-embed", "provider": "gemini", "base_url": upstream.base(EMBED_NODE, ""),
         "api_key": NODE_KEYS["gemini"], "models": {"text-embedding-004": "gemini-embedding-001"}},
        {"id": "mock", "provider": "mock", "models": {"mock-model": "mock-model"}},
    ]
    models = {
        "gpt-4o-mini": {"price": {"input": 0.15, "output": 0.60}},
        "gpt-4-1": {"aliases": ["gpt-4.1"], "price": {"input": 2.00, "output": 8.00}},
        "claude-sonnet-4-6": {"aliases": ["claude-sonnet-4.6"],
                              "price": {"input": 3.00, "output": 15.00, "cached_input": 0.30}},
        "gemini-2.5-flash": {"price": {"input": 0.30, "output": 2.50}},
        "mock-model": {"price": {"input": 1.00, "output": 2.00}},
        "text-embedding-004": {"kind": "embedding", "price": {"input": 0.02}},
    }
    return base_config(state_dir, nodes, models=models)


@pytest.fixture(scope="module")
def gateway(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("matrix")
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(matrix_config(upstream, root / "state")))
    running = RunningGateway(path)
    yield running
    running.stop()


def oai(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=20)


def ant(gateway: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=TEST_KEY, max_retries=0, timeout=20)


# --- one client protocol each: plain, stream, tool round trip ---------------------
# Each returns the answer text; tool round trips return (tool arguments, answer text).


def chat_plain(gw: RunningGateway, model: str) -> tuple[str, dict[str, str]]:
    raw = oai(gw).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}])
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.object == "chat.completion"
    return choice.message.content, dict(raw.headers)


def chat_stream(gw: RunningGateway, model: str) -> str:
    chunks = list(oai(gw).chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    return text


def _chat_tools(model: str) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "get_weather", "description": TOOL_DESCRIPTION,
                                              "parameters": SCHEMA}}]


def chat_tools(gw: RunningGateway, model: str, stream: bool) -> tuple[dict[str, Any], str]:
    sdk = oai(gw)
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    if stream:
        with sdk.chat.completions.stream(model=model, messages=messages, tools=_chat_tools(model)) as events:
            for _ in events:
                pass
            first = events.get_final_completion()
    else:
        first = sdk.chat.completions.create(model=model, messages=messages, tools=_chat_tools(model))
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    arguments = json.loads(call.function.arguments)
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": run_tool(arguments)},
    ]
    if stream:
        with sdk.chat.completions.stream(model=model, messages=messages, tools=_chat_tools(model)) as events:
            text = "".join(e.delta for e in events if e.type == "content.delta")
            final = events.get_final_completion()
        assert final.choices[0].message.content == text
    else:
        final = sdk.chat.completions.create(model=model, messages=messages, tools=_chat_tools(model))
        text = final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"
    return arguments, text


def responses_plain(gw: RunningGateway, model: str) -> tuple[str, dict[str, str]]:
    raw = oai(gw).responses.with_raw_response.create(model=model, input=PROMPT, instructions="Be brief.")
    response = raw.parse()
    assert response.status == "completed" and response.object == "response"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    return response.output_text, dict(raw.headers)


def responses_stream(gw: RunningGateway, model: str) -> str:
    with oai(gw).responses.stream(model=model, input=[{"role": "user", "content": PROMPT}]) as events:
        seen = list(events)
        final = events.get_final_response()
    numbers = [e.sequence_number for e in seen]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert seen[0].type == "response.created" and seen[-1].type == "response.completed"
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert final.output_text == text and final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    return text


def _responses_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "name": "get_weather", "description": TOOL_DESCRIPTION, "parameters": SCHEMA,
             "strict": False}]


def _responses_call(sdk: openai.OpenAI, model: str, items: list[dict[str, Any]], stream: bool) -> Any:
    if not stream:
        return sdk.responses.create(model=model, input=items, tools=_responses_tools())
    with sdk.responses.stream(model=model, input=items, tools=_responses_tools()) as events:
        for _ in events:
            pass
        return events.get_final_response()


def responses_tools(gw: RunningGateway, model: str, stream: bool) -> tuple[dict[str, Any], str]:
    sdk = oai(gw)
    items: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first = _responses_call(sdk, model, items, stream)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    arguments = json.loads(call.arguments)
    items += [{"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
              {"type": "function_call_output", "call_id": call.call_id, "output": run_tool(arguments)}]
    final = _responses_call(sdk, model, items, stream)
    assert final.status == "completed"
    return arguments, final.output_text


def messages_plain(gw: RunningGateway, model: str) -> tuple[str, dict[str, str]]:
    raw = ant(gw).messages.with_raw_response.create(
        model=model, max_tokens=256, system="Be brief.", messages=[{"role": "user", "content": PROMPT}])
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    (block,) = message.content
    assert block.type == "text"
    return block.text, dict(raw.headers)


def messages_stream(gw: RunningGateway, model: str) -> str:
    with ant(gw).messages.stream(model=model, max_tokens=256,
                                 messages=[{"role": "user", "content": PROMPT}]) as events:
        text = "".join(events.text_stream)
        final = events.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    assert [b.type for b in final.content] == ["text"] and final.content[0].text == text
    return text


def _messages_tools() -> list[dict[str, Any]]:
    return [{"name": "get_weather", "description": TOOL_DESCRIPTION, "input_schema": SCHEMA}]


def _messages_call(sdk: anthropic.Anthropic, model: str, messages: list[dict[str, Any]], stream: bool) -> Any:
    if not stream:
        return sdk.messages.create(model=model, max_tokens=256, messages=messages, tools=_messages_tools())
    with sdk.messages.stream(model=model, max_tokens=256, messages=messages, tools=_messages_tools()) as events:
        for _ in events:
            pass
        return events.get_final_message()


def messages_tools(gw: RunningGateway, model: str, stream: bool) -> tuple[dict[str, Any], str]:
    sdk = ant(gw)
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first = _messages_call(sdk, model, messages, stream)
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.id
    messages += [{"role": "assistant", "content": first.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                               "content": run_tool(call.input)}]}]
    final = _messages_call(sdk, model, messages, stream)
    assert final.stop_reason == "end_turn"
    return dict(call.input), "".join(b.text for b in final.content if b.type == "text")


PLAIN: dict[str, Callable[..., tuple[str, dict[str, str]]]] = {
    "chat": chat_plain, "responses": responses_plain, "messages": messages_plain, "gemini": gemini_plain}
STREAM: dict[str, Callable[..., str]] = {"chat": chat_stream, "responses": responses_stream,
                                         "messages": messages_stream, "gemini": gemini_stream}
TOOLS: dict[str, Callable[..., tuple[dict[str, Any], str]]] = {
    "chat": chat_tools, "responses": responses_tools, "messages": messages_tools, "gemini": gemini_tools}


# --- what the upstream saw ---------------------------------------------------------


def check_upstream(upstream: MockUpstream, provider: str, stream: bool, tool_result: bool) -> None:
    """The last request the provider's node received was in that provider's own format."""
    _, _, own_model, name = NODES[provider]
    if name is None:
        return
    last = upstream.stats(name)["last"]
    headers, body = last["headers"], last["body"]
    assert TEST_KEY not in json.dumps(last)  # the client's key never travels upstream
    assert "fallback_models" not in body
    if provider in ("openai", "openai-responses"):
        assert headers["authorization"] == "Bearer " + NODE_KEYS[provider]
        assert body["model"] == own_model
        if provider == "openai":
            assert last["path"] == "/v1/chat/completions"
            assert body["messages"]
            if stream:
                assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
            if tool_result:
                assert body["messages"][-1]["role"] == "tool"
                assert body["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"
        else:
            assert last["path"] == "/v1/responses"
            assert body["input"]
            if tool_result:
                assert [i.get("type") for i in body["input"][-2:]] == ["function_call", "function_call_output"]
    elif provider == "anthropic":
        assert last["path"] == "/v1/messages"
        assert headers["x-api-key"] == NODE_KEYS["anthropic"] and headers["anthropic-version"]
        assert "authorization" not in headers
        assert isinstance(body["max_tokens"], int) and body["model"] == own_model
        assert body.get("stream", False) is stream
        if tool_result:
            assert body["messages"][-2]["content"][-1]["type"] == "tool_use"
            assert body["messages"][-1]["content"][0]["type"] == "tool_result"
            assert body["messages"][-1]["content"][0]["tool_use_id"] == body["messages"][-2]["content"][-1]["id"]
    elif provider == "gemini":
        method = "streamGenerateContent" if stream else "generateContent"
        assert last["path"] == f"/v1beta/models/{own_model}:{method}"
        assert last["query"] == ("alt=sse" if stream else "")
        assert headers["x-goog-api-key"] == NODE_KEYS["gemini"] and "authorization" not in headers
        assert body["contents"] and "model" not in body and "stream" not in body
        if tool_result:
            answer = body["contents"][-1]["parts"][0]["functionResponse"]
            assert answer["name"] == "get_weather" and "18C and sunny" in json.dumps(answer["response"])
            assert body["contents"][-2]["role"] == "model" and "functionCall" in body["contents"][-2]["parts"][0]


# --- the matrix ----------------------------------------------------------------


def _cells() -> list[Any]:
    cells = []
    for client in CLIENTS:
        for provider in PROVIDERS:
            if provider == "openai-responses" and client != "responses":
                continue  # chat and messages reach a responses node over Chat Completions: the openai column
            for mode in MODES:
                cells.append(pytest.param(client, provider, mode, id=f"{client}-{provider}-{mode}"))
    return cells


@pytest.mark.parametrize(("client", "provider", "mode"), _cells())
def test_matrix(gateway: RunningGateway, upstream: MockUpstream, client: str, provider: str, mode: str) -> None:
    node_id, model, _, _ = NODES[provider]
    request_count_before = len(gateway.call(lambda: gateway.services.ledger.usage("test", limit=1000)))
    if mode == "plain":
        text, headers = PLAIN[client](gateway, model)
        assert headers["x-infermesh-node"] == node_id
        assert float(headers["x-infermesh-cost-usd"]) > 0
        assert text.startswith(PROMPT)
    elif mode == "stream":
        assert STREAM[client](gateway, model).startswith(PROMPT)
    else:
        arguments, text = TOOLS[client](gateway, model, mode == "tools-stream")
        assert arguments == {"city": "Paris"}
        assert text == "The tool said: 18C and sunny in Paris"
    check_upstream(upstream, provider, stream=mode in ("stream", "tools-stream"),
                   tool_result=mode.startswith("tools"))
    # Billed from the node's own usage report, translated: never an estimate.
    record = last_usage(gateway, request_count_before)
    assert record["node"] == node_id and not record["estimated"] and record["status"] == 200
    assert record["input_tokens"] > 0
    assert record["output_tokens"] == (12 if mode in ("plain", "stream") else 8)  # 8 words: "The tool said: 18C ..."


def last_usage(gateway: RunningGateway, before: int) -> dict[str, Any]:
    """The newest usage record, once the request has settled (a stream settles as it closes)."""
    deadline = time.monotonic() + 5
    while True:
        rows = gateway.call(lambda: gateway.services.ledger.usage("test", limit=1000))
        if len(rows) > before or time.monotonic() > deadline:
            return rows[0]
        time.sleep(0.01)


# --- around the matrix ---------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_embeddings_through_gemini(gateway: RunningGateway, upstream: MockUpstream, encoding: str) -> None:
    kwargs = {} if encoding == "base64" else {"encoding_format": "float"}  # the SDK asks for base64 by default
    result = oai(gateway).embeddings.create(model="text-embedding-004", input=["a", "bb"], **kwargs)
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 8 for item in result.data)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 1  # Gemini counts nothing: ceil(3 characters / 4), as documented
    last = upstream.stats(EMBED_NODE)["last"]
    assert last["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert last["query"] == "" and last["headers"]["x-goog-api-key"] == NODE_KEYS["gemini"]
    assert [r["model"] for r in last["body"]["requests"]] == ["models/gemini-embedding-001"] * 2
    assert [r["content"]["parts"][0]["text"] for r in last["body"]["requests"]] == ["a", "bb"]


@pytest.mark.parametrize("spelling", ["claude-sonnet-4.6", "Claude-Sonnet-4.6", "CLAUDE-SONNET-4-6"])
def test_model_ids_match_case_insensitively_with_dots(gateway: RunningGateway, upstream: MockUpstream,
                                                       spelling: str) -> None:
    message = ant(gateway).messages.create(model=spelling, max_tokens=64,
                                           messages=[{"role": "user", "content": PROMPT}])
    assert message.content[0].text.startswith(PROMPT)
    assert upstream.stats("pm-anthropic")["last"]["body"]["model"] == "claude-sonnet-4-6-20260101"
    completion = oai(gateway).chat.completions.create(model=spelling, messages=[{"role": "user", "content": PROMPT}])
    assert completion.model == "claude-sonnet-4-6"  # translated replies name the public model


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
def test_truncated_reply_reports_max_tokens(gateway: RunningGateway, provider: str) -> None:
    """A reply cut by the output limit keeps its stop reason across the translation."""
    _, model, _, _ = NODES[provider]
    message = ant(gateway).messages.create(model=model, max_tokens=3, messages=[{"role": "user", "content": PROMPT}])
    assert message.stop_reason == "max_tokens" and message.content[0].text == "hello from the"
    completion = oai(gateway).chat.completions.create(model=model, max_tokens=3,
                                                      messages=[{"role": "user", "content": PROMPT}])
    assert completion.choices[0].finish_reason == "length"
    response = oai(gateway).responses.create(model=model, max_output_tokens=3, input=PROMPT)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"


# --- Anthropic-shaped 400s ---------------------------------------------------------------


def _raw_messages(gateway: RunningGateway, body: dict[str, Any]) -> anthropic.BadRequestError:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ant(gateway).post("/v1/messages", cast_to=anthropic.types.Message, body=body)
    return caught.value


BAD_MESSAGES = {
    "missing-max-tokens": {"messages": [{"role": "user", "content": "hi"}]},
    "unknown-block-type": {"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "banana"}]}]},
    "text-block-without-text": {"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
    "tool-result-without-tool-use": {"max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nowhere", "content": "x"}]}]},
    "system-block-not-text": {"max_tokens": 10, "system": [{"type": "image"}],
                              "messages": [{"role": "user", "content": "hi"}]},
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_bad_messages_get_anthropic_shaped_400(gateway: RunningGateway, upstream: MockUpstream, case: str,
                                               provider: str) -> None:
    name = NODES[provider][3]
    before = upstream.stats(name)["requests"]
    error = _raw_messages(gateway, {"model": NODES[provider][1], **BAD_MESSAGES[case]})
    assert error.status_code == 400
    assert error.body["type"] == "error" and error.body["error"]["type"] == "invalid_request_error"
    assert error.body["error"]["message"]
    assert upstream.stats(name)["requests"] == before  # refused before any upstream round trip


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
def test_upstream_400_reaches_messages_client_in_anthropic_shape(gateway: RunningGateway, upstream: MockUpstream,
                                                                 provider: str) -> None:
    name = NODES[provider][3]
    upstream.control(name, status=400)
    try:
        with pytest.raises(anthropic.BadRequestError) as caught:
            ant(gateway).messages.create(model=NODES[provider][1], max_tokens=10,
                                         messages=[{"role": "user", "content": "hi"}])
    finally:
        upstream.control(name, status=None)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"] == {"type": "invalid_request_error", "message": "mock upstream error 400"}


def test_upstream_rejection_of_a_passed_through_field_is_relayed(gateway: RunningGateway) -> None:
    """Same protocol: the node's own 400 (here: a field Anthropic does not know) goes back as sent."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        ant(gateway).messages.create(model="claude-sonnet-4-6", max_tokens=10, extra_body={"banana": 1},
                                     messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["error"]["message"] == "banana: Extra inputs are not permitted"
    assert caught.value.body["request_id"] == "req_mock"  # the upstream's body, untouched


# --- more of each conversation's shape ------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS[:1] + PROVIDERS[2:])
def test_chat_stream_usage_chunk_only_when_asked(gateway: RunningGateway, provider: str) -> None:
    chunks = list(oai(gateway).chat.completions.create(
        model=NODES[provider][1], messages=[{"role": "user", "content": PROMPT}], stream=True))
    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith(PROMPT)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "mock"])
def test_multi_turn_with_image_and_forced_tool(gateway: RunningGateway, upstream: MockUpstream,
                                               provider: str) -> None:
    """History, an inline image and a forced tool choice, from a Messages client, in each node's terms."""
    image = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    message = ant(gateway).messages.create(
        model=NODES[provider][1], max_tokens=128, system="Be brief.", tools=_messages_tools(),
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": [
                      {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
                      {"type": "text", "text": QUESTION}]}])
    assert message.stop_reason == "tool_use" and message.content[-1].input == {"city": "Paris"}
    name = NODES[provider][3]
    if name is None:
        return
    body = upstream.stats(name)["last"]["body"]
    if provider == "openai":
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
        assert body["messages"][3]["content"][0] == {"type": "image_url",
                                                     "image_url": {"url": "data:image/png;base64," + image}}
        assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    elif provider == "gemini":
        assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert body["contents"][2]["parts"][0] == {"inlineData": {"mimeType": "image/png", "data": image}}
        assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY",
                                                                "allowedFunctionNames": ["get_weather"]}}
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
        assert body["messages"][2]["content"][0]["source"]["data"] == image


@pytest.mark.parametrize("client", ["chat", "responses"])
@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai-responses"])
def test_upstream_400_reaches_openai_clients_in_openai_shape(gateway: RunningGateway, upstream: MockUpstream,
                                                             client: str, provider: str) -> None:
    name, model = NODES[provider][3], NODES[provider][1]
    upstream.control(name, status=400)
    try:
        with pytest.raises(openai.BadRequestError) as caught:
            if client == "chat":
                oai(gateway).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
            else:
                oai(gateway).responses.create(model=model, input="x")
    finally:
        upstream.control(name, status=None)
    assert caught.value.body["message"] == "mock upstream error 400"
    assert caught.value.body["type"] == "invalid_request_error"
