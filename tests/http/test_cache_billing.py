"""Cache reads and writes billed at their own prices, and ``usage.cost`` in every response, end to end.

Every client protocol (the official OpenAI and Anthropic SDKs; Gemini clients'
requests on the wire) x every provider (the mock upstream process speaking each
provider's real wire, plus the in-process mock), streamed and not. The prompt
asks the mock model to report 40 cache-read tokens and 50 cache-written ones, 20 of them to the 1-hour cache (``[cache read=.. write=..
write_1h=..]``, see ``gateway/upstream/mock_script.py``); each provider reports
what its real API reports: Anthropic all three, OpenAI chat (OpenRouter's
fields) reads and writes without the split, Responses and Gemini reads only.

What must hold, per cell:
* the streamed request costs exactly what the unstreamed one costs, to the nano;
* that cost is the contract's formula applied to the record's token counts,
  at prices chosen so that each token class has its own price;
* the client saw the same cost as ``usage.cost`` (non-streamed body, and the
  final usage event of the stream), parsed by its SDK, and in
  ``x-infermesh-cost-usd``.
"""

from __future__ import annotations

import http.client
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import anthropic
import openai
import pytest
import yaml

from gateway.ledger.money import usd_to_nano
from tests.support.keys import TEST_KEY
from tests.conftest import MockUpstream, RunningGateway, base_config

CLIENTS = ("chat", "responses", "messages", "gemini")
PROVIDERS = ("openai", "openai-responses", "anthropic", "gemini", "mock")
READ, WRITE_5M, WRITE_1H = 40, 30, 20
PROMPT = f"Please cache this [cache read={READ} write={WRITE_5M} write_1h={WRITE_1H}] and answer"
# nano-dollars per token of (input, output, cached_input, cache_write, cache_write_1h): all different.
PRICE = {"input": "3.00", "output": "15.00", "cached_input": "0.30", "cache_write": "3.75", "cache_write_1h": "6.00"}
RATE = {name: int(Decimal(value) * 1000) for name, value in PRICE.items()}
# provider -> (public model, expected (cached, cache writes, 1-hour writes) as the provider reports them)
CELLS = {
    "openai": ("m-openai", (READ, WRITE_5M + WRITE_1H, 0)),
    "openai-responses": ("m-responses", (READ, WRITE_5M + WRITE_1H, 0)),  # Responses clients: (READ, 0, 0)
    "anthropic": ("m-anthropic", (READ, WRITE_5M + WRITE_1H, WRITE_1H)),
    "gemini": ("m-gemini", (READ, 0, 0)),
    "mock": ("m-mock", (READ, WRITE_5M + WRITE_1H, 0)),
}


@pytest.fixture(scope="module")
def gateway(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("cache-billing")
    nodes = [
        {"id": "oa", "provider": "openai", "base_url": upstream.base("cb-openai"), "api_key": "sk-a",
         "models": {"m-openai": "up-a"}},
        {"id": "oa-resp", "provider": "openai", "responses": True, "base_url": upstream.base("cb-resp"),
         "api_key": "sk-b", "models": {"m-responses": "up-b"}},
        {"id": "ant", "provider": "anthropic", "base_url": upstream.base("cb-ant", ""), "api_key": "sk-c",
         "models": {"m-anthropic": "claude-up"}},
        {"id": "gem", "provider": "gemini", "base_url": upstream.base("cb-gem", ""), "api_key": "gk-d",
         "models": {"m-gemini": "gemini-up"}},
        {"id": "mock", "provider": "mock", "models": {"m-mock": "mock-up"}},
    ]
    models = {model: {"price": PRICE} for model, _ in CELLS.values()}
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(base_config(root / "state", nodes, models=models)))
    running = RunningGateway(path)
    yield running
    running.stop()


def expected_cost(record: dict[str, Any]) -> int:
    """The contract's formula, written independently of gateway/ledger/pricing.py."""
    cached, write, write_1h = record["cached_tokens"], record["cache_write_tokens"], record["cache_write_1h_tokens"]
    return ((record["input_tokens"] - cached - write) * RATE["input"] + cached * RATE["cached_input"]
            + (write - write_1h) * RATE["cache_write"] + write_1h * RATE["cache_write_1h"]
            + record["output_tokens"] * RATE["output"])


def nano(cost: Any) -> int:
    """``usage.cost`` as the SDK parsed it (a float) back to nano-dollars; it must be exact."""
    assert isinstance(cost, float | int), cost
    scaled = Decimal(repr(cost)) * 10**9
    assert scaled == scaled.to_integral_value(), f"{cost!r} is not a whole number of nano-dollars"
    return int(scaled)


def gemini_call(gw: RunningGateway, model: str, stream: bool) -> tuple[str, int, str | None]:
    """A Gemini client's request on the wire: ``usageMetadata.cost`` of the reply, or of the stream's last chunk
    (the google-genai SDK parses these replies too: tests/http/test_gemini_clients.py)."""
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    conn = http.client.HTTPConnection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]), timeout=20)
    conn.request("POST", f"/v1beta/models/{model}:{action}",
                 json.dumps({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}),
                 {"x-goog-api-key": TEST_KEY, "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    assert response.status == 200, data
    if not stream:
        return (response.getheader("x-request-id"), nano(json.loads(data)["usageMetadata"]["cost"]),
                response.getheader("x-infermesh-cost-usd"))
    chunks = [json.loads(line[5:]) for line in data.decode().splitlines() if line.startswith("data:")]
    costs = [chunk["usageMetadata"]["cost"] for chunk in chunks if "cost" in chunk.get("usageMetadata", {})]
    assert costs and "cost" in chunks[-1]["usageMetadata"], chunks[-1]  # the last chunk carries the final cost
    return response.getheader("x-request-id"), nano(costs[-1]), None


def call(gw: RunningGateway, client: str, model: str, stream: bool) -> tuple[str, int, str | None]:
    """One request through the official SDK; returns (request id, usage.cost in nano, x-infermesh-cost-usd)."""
    if client == "gemini":
        return gemini_call(gw, model, stream)
    if client == "messages":
        sdk: Any = anthropic.Anthropic(base_url=gw.url, api_key=TEST_KEY, max_retries=0, timeout=20)
        raw = sdk.messages.with_raw_response.create(model=model, max_tokens=64, stream=stream,
                                                     messages=[{"role": "user", "content": PROMPT}])
    else:
        sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=TEST_KEY, max_retries=0, timeout=20)
        if client == "chat":
            extra = {"stream_options": {"include_usage": True}} if stream else {}
            raw = sdk.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": PROMPT}], stream=stream, **extra)
        else:
            raw = sdk.responses.with_raw_response.create(model=model, input=PROMPT, stream=stream)
    parsed = raw.parse()
    if not stream:
        return raw.headers["x-request-id"], nano(parsed.usage.cost), raw.headers.get("x-infermesh-cost-usd")
    costs = []
    for event in parsed:
        usage = None
        if client == "chat":
            usage = event.usage
        elif client == "responses" and event.type in ("response.completed", "response.incomplete"):
            usage = event.response.usage
        elif client == "messages" and event.type == "message_delta":
            usage = event.usage
        if usage is not None:
            costs.append(nano(usage.cost))
    assert len(costs) == 1, costs  # exactly the final usage event carries it
    return raw.headers["x-request-id"], costs[0], None


def record_of(gw: RunningGateway, request_id: str) -> dict[str, Any]:
    http = openai.OpenAI(base_url=gw.url, api_key=TEST_KEY)._client
    response = http.get(gw.url + "/v1/usage?limit=1000", headers={"Authorization": f"Bearer {TEST_KEY}"})
    records = [r for r in response.json()["data"] if r["request_id"] == request_id]
    assert len(records) == 1, request_id
    return records[0]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("client", CLIENTS)
def test_streamed_costs_what_unstreamed_costs_and_the_client_sees_it(gateway: RunningGateway, client: str,
                                                                     provider: str) -> None:
    model, (cached, writes, writes_1h) = CELLS[provider]
    if (client, provider) == ("responses", "openai-responses"):  # the only cell on the Responses wire
        writes = 0
    costs = {}
    for stream in (False, True):
        request_id, seen, header = call(gateway, client, model, stream)
        record = record_of(gateway, request_id)
        assert not record["estimated"] and record["status"] == 200
        assert (record["cached_tokens"], record["cache_write_tokens"], record["cache_write_1h_tokens"]) == \
            (cached, writes, writes_1h), record
        charged = usd_to_nano(record["cost_usd"])
        assert charged == expected_cost(record) > 0
        assert seen == charged, (stream, record)
        if header is not None:
            assert usd_to_nano(header) == charged
        costs[stream] = charged
    assert costs[True] == costs[False]


def test_prices_are_published(gateway: RunningGateway) -> None:
    http = openai.OpenAI(base_url=gateway.url, api_key=TEST_KEY)._client
    rows = {row["id"]: row for row in http.get(gateway.url + "/pricing").json()["models"]}
    assert {k: rows["m-anthropic"][k] for k in PRICE} == {k: str(Decimal(v)) for k, v in PRICE.items()}
    model = openai.OpenAI(base_url=gateway.url + "/v1", api_key=TEST_KEY).models.retrieve("m-anthropic")
    assert model.pricing["cache_write"] == "3.75" and model.pricing["cache_write_1h"] == "6.00"


def test_metrics_count_cache_reads_and_writes_apart(gateway: RunningGateway) -> None:
    call(gateway, "messages", "m-anthropic", False)
    http = openai.OpenAI(base_url=gateway.url, api_key=TEST_KEY)._client
    text = http.get(gateway.url + "/metrics").text
    counts = {kind: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              for kind in ("input", "output", "cache_read", "cache_write")
              if line.startswith(f'infermesh_tokens_total{{kind="{kind}",model="m-anthropic"}}')}
    assert set(counts) == {"input", "output", "cache_read", "cache_write"}, counts
    assert counts["cache_read"] > 0 and counts["cache_write"] > 0
    assert counts["cache_write"] / counts["cache_read"] == pytest.approx((WRITE_5M + WRITE_1H) / READ)
    assert json.dumps(counts)  # the families are plain numbers
