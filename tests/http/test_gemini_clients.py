"""Gemini clients around the matrix: count tokens, embeddings, the catalogue, keys, errors, failover.

The google-genai SDK drives a real gateway whose nodes are the mock upstream
process speaking each provider's wire (the matrix's nodes, plus embedding
models on OpenAI-protocol nodes and a model whose first node is broken).
Raw HTTP is used only where the SDK cannot show the wire (``?key=``, the
JSON-array stream, error bodies).
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Iterator

import pytest
import yaml
from google import genai
from google.genai import errors, types

from tests.conftest import MockUpstream, RunningGateway, base_config
from tests.support.keys import TEST_KEY
from tests.http.gemini_sdk import PROMPT, client
from tests.http.test_protocol_matrix import EMBED_NODE, NODES, NODE_KEYS, last_usage, matrix_config



@pytest.fixture(scope="module")
def gateway(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("gemini-clients")
    config = matrix_config(upstream, root / "state")
    config["nodes"][0]["models"]["text-embedding-3-small"] = "up-embed"  # an OpenAI node's embeddings
    mock = next(node for node in config["nodes"] if node["provider"] == "mock")
    mock["models"]["mock-embed"] = "mock-embed"  # and the in-process mock's
    config["nodes"] += [
        {"id": "flaky", "provider": "openai", "base_url": upstream.base("pm-gem-flaky"), "api_key": "sk-flaky",
         "models": {"failover-model": "up-failover"}},
        {"id": "steady", "provider": "gemini", "base_url": upstream.base("pm-gem-steady", ""),
         "api_key": NODE_KEYS["gemini"], "models": {"failover-model": "gemini-steady"}},
    ]
    config["models"]["text-embedding-3-small"] = {"kind": "embedding", "price": {"input": 0.02}}
    config["models"]["mock-embed"] = {"kind": "embedding", "price": {"input": 0.01}}
    config["models"]["failover-model"] = {"price": {"input": 1.0, "output": 2.0}}
    config["routing"] = {"strategy": "round-robin"}
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    upstream.control("pm-gem-flaky", status=503)
    running = RunningGateway(path)
    created = running.call(lambda: running.services.ledger.create_key("test", "restricted", models=["gpt-4o-mini"]))
    running.restricted_key = created["key"]  # type: ignore[attr-defined]
    yield running
    running.stop()


def post(gateway: RunningGateway, path: str, body: Any, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]), timeout=20)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data, response


ASK = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "mock"])
def test_count_tokens(gateway: RunningGateway, upstream: MockUpstream, provider: str) -> None:
    sdk = client(gateway)
    name = NODES[provider][3]
    before = upstream.stats(name)["requests"] if name else 0
    counted = sdk.models.count_tokens(model=NODES[provider][1], contents=PROMPT)
    headers = counted.sdk_http_response.headers
    assert counted.total_tokens > 0
    if provider == "gemini":  # exact, from the node, on its own model id
        assert headers["x-infermesh-node"] == "gem" and "x-infermesh-estimated" not in headers
        last = upstream.stats(name)["last"]
        assert last["path"] == "/v1beta/models/gemini-2.5-flash-002:countTokens"
        assert last["headers"]["x-goog-api-key"] == NODE_KEYS["gemini"]
    else:  # estimated (free, no upstream call)
        assert headers["x-infermesh-estimated"] == "true" and counted.total_tokens == 6  # ceil(21 / 4)
        if name:
            assert upstream.stats(name)["requests"] == before


@pytest.mark.parametrize(("model", "node"), [("text-embedding-004", "gem-embed"),
                                             ("text-embedding-3-small", "oa"), ("mock-embed", "mock")])
def test_embeddings(gateway: RunningGateway, upstream: MockUpstream, model: str, node: str) -> None:
    sdk = client(gateway)
    before = len(gateway.call(lambda: gateway.services.ledger.usage("test", limit=1000)))
    batch = sdk.models.embed_content(model=model, contents=["a", "bb"],
                                     config=types.EmbedContentConfig(output_dimensionality=8))
    assert [len(e.values) for e in batch.embeddings] == [8, 8]
    assert batch.embeddings[0].values != batch.embeddings[1].values
    assert batch.sdk_http_response.headers["x-infermesh-node"] == node
    record = last_usage(gateway, before)
    assert record["node"] == node and record["endpoint"] == "gemini_embeddings" and record["input_tokens"] > 0
    if node == "gem-embed":  # a batch to a Gemini node passes through, model rewritten in every item
        sent = upstream.stats(EMBED_NODE)["last"]["body"]["requests"]
        assert [r["model"] for r in sent] == ["models/gemini-embedding-001"] * 2
    # embedContent (one content), raw: the SDK always batches on the Gemini API
    status, data, _ = post(gateway, f"/v1beta/models/{model}:embedContent",
                           {"content": {"parts": [{"text": "a"}]}}, {"x-goog-api-key": TEST_KEY})
    assert status == 200 and json.loads(data)["embedding"]["values"] == batch.embeddings[0].values


def test_catalogue(gateway: RunningGateway) -> None:
    for version in ("v1", "v1beta"):  # /v1/models answers Google's shape to a Google-style key
        sdk = client(gateway, version)  # held: a collected Client closes its connections
        names = {m.name: m for m in sdk.models.list()}
        assert "models/gemini-2.5-flash" in names and "models/gpt-4o-mini" in names
        assert names["models/text-embedding-004"].supported_actions == ["embedContent", "batchEmbedContents"]
    model = sdk.models.get(model="claude-sonnet-4.6")
    assert model.name == "models/claude-sonnet-4-6" and "generateContent" in model.supported_actions


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_hosted_tools_reach_gemini_nodes_and_are_named_when_dropped(gateway: RunningGateway, upstream: MockUpstream,
                                                                    provider: str) -> None:
    body = {**ASK, "tools": [{"googleSearch": {}}, {"codeExecution": {}}]}
    status, data, response = post(gateway, f"/v1beta/models/{NODES[provider][1]}:generateContent", body,
                                   {"x-goog-api-key": TEST_KEY})
    assert status == 200, data
    sent = upstream.stats(NODES[provider][3])["last"]["body"]
    if provider == "gemini":  # passed through as sent
        assert sent["tools"] == body["tools"] and response.getheader("x-infermesh-dropped-tools") is None
    else:
        assert "tools" not in sent
        assert response.getheader("x-infermesh-dropped-tools") == "googleSearch, codeExecution"


def test_openai_model_ids_with_colons_stay_openai(gateway: RunningGateway) -> None:
    """``/v1/models/{id}`` is OpenAI's, also for an id with a colon (acme:davinci); only Gemini's actions are Gemini's."""
    conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]), timeout=10)
    conn.request("GET", "/v1/models/acme:davinci", headers={"Authorization": "Bearer " + TEST_KEY})
    response = conn.getresponse()
    error = json.loads(response.read())["error"]
    conn.close()
    assert response.status == 404 and error["code"] == "model_not_found" and "status" not in error


def test_key_in_query_is_never_logged(start_gateway: Any, tmp_path: Any, capfd: pytest.CaptureFixture[str]) -> None:
    config = base_config(tmp_path / "state", [{"id": "m", "provider": "mock",
                                               "models": ["gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]}])
    config["logging"] = {"access_log": True, "level": "debug"}
    gateway = start_gateway(config)
    for key in (TEST_KEY, "sk-wrong-key-in-the-url-0000"):
        status, _, _ = post(gateway, f"/v1beta/models/gpt-4o-mini:generateContent?key={key}&alt=json", ASK)
        assert status == (200 if key == TEST_KEY else 401)
    out, err = capfd.readouterr()
    assert '"endpoint":"gemini"' in out  # the access log did write its lines
    assert "key=" not in out + err and TEST_KEY not in out + err and "sk-wrong-key" not in out + err


def test_key_in_query_never_travels_upstream(gateway: RunningGateway, upstream: MockUpstream) -> None:
    status, data, _ = post(gateway, f"/v1beta/models/gemini-2.5-flash:generateContent?key={TEST_KEY}", ASK)
    reply = json.loads(data)
    assert status == 200 and reply["candidates"][0]["content"]["parts"][0]["text"].startswith(PROMPT)
    assert reply["usageMetadata"]["cost"] > 0  # pass-through, with the gateway's cost added
    last = upstream.stats("pm-gemini")["last"]
    assert last["query"] == "" and TEST_KEY not in json.dumps(last)
    status, data, _ = post(gateway, "/v1beta/models/gemini-2.5-flash:generateContent", ASK,
                           {"Authorization": "Bearer " + TEST_KEY})
    assert status == 200


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_stream_without_alt_sse_is_a_json_array(gateway: RunningGateway, provider: str) -> None:
    status, data, response = post(gateway, f"/v1beta/models/{NODES[provider][1]}:streamGenerateContent", ASK,
                                  {"x-goog-api-key": TEST_KEY})
    assert status == 200 and response.getheader("Content-Type") == "application/json"
    chunks = json.loads(data)
    assert len(chunks) > 1
    text = "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text.startswith(PROMPT) and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["cost"] > 0
    types.GenerateContentResponse._from_response(response=chunks[-1], kwargs={})  # as the SDK reads it


ERRORS = [
    ("no key", "gemini-2.5-flash", ASK, {}, 401, "UNAUTHENTICATED"),
    ("unknown key", "gemini-2.5-flash", ASK, {"x-goog-api-key": "sk-nope"}, 401, "UNAUTHENTICATED"),
    ("model not allowed", "gemini-2.5-flash", ASK, {"x-goog-api-key": "restricted"}, 403, "PERMISSION_DENIED"),
    ("unknown model", "gemini-9", ASK, {"x-goog-api-key": TEST_KEY}, 404, "NOT_FOUND"),
    ("no contents", "gpt-4o-mini", {"contents": []}, {"x-goog-api-key": TEST_KEY}, 400, "INVALID_ARGUMENT"),
    ("bad role", "gpt-4o-mini", {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]},
     {"x-goog-api-key": TEST_KEY}, 400, "INVALID_ARGUMENT"),
    ("embedding model", "text-embedding-004", ASK, {"x-goog-api-key": TEST_KEY}, 400, "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize(("case", "model", "body", "headers", "status", "google"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_in_google_shape(gateway: RunningGateway, case: str, model: str, body: Any,
                                headers: dict[str, str], status: int, google: str) -> None:
    if headers.get("x-goog-api-key") == "restricted":
        headers = {"x-goog-api-key": gateway.restricted_key}  # type: ignore[attr-defined]
    got, data, _ = post(gateway, f"/v1beta/models/{model}:generateContent", body, headers)
    error = json.loads(data)["error"]
    assert (got, error["code"], error["status"]) == (status, status, google) and error["message"]


def test_sdk_raises_its_own_errors(gateway: RunningGateway, upstream: MockUpstream) -> None:
    bad = genai.Client(api_key="sk-nope", http_options=types.HttpOptions(base_url=gateway.url))
    with pytest.raises(errors.ClientError) as caught:
        bad.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert caught.value.code == 401 and caught.value.status == "UNAUTHENTICATED"
    upstream.control("pm-anthropic", status=400)  # the node's own 400, translated to Google's shape
    try:
        sdk = client(gateway)
        with pytest.raises(errors.ClientError) as caught:
            sdk.models.generate_content(model="claude-sonnet-4-6", contents="hi")
    finally:
        upstream.control("pm-anthropic", status=None)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "mock upstream error 400"
    status, data, _ = post(gateway, "/v1beta/models/gemini-2.5-flash:fooBar", ASK, {"x-goog-api-key": TEST_KEY})
    assert status == 404 and json.loads(data)["error"]["status"] == "NOT_FOUND"
    for action in ("embedContent", "batchEmbedContents"):  # the embedding actions: Google's shape too
        status, data, _ = post(gateway, f"/v1beta/models/gemini-2.5-flash:{action}", {"requests": []},
                               {"x-goog-api-key": TEST_KEY})
        assert status == 400 and json.loads(data)["error"]["status"] == "INVALID_ARGUMENT", data


def test_failover_and_billing_are_the_shared_pipeline(gateway: RunningGateway, upstream: MockUpstream) -> None:
    """A broken first node is failed over (both attempts in the header); the answer is billed once."""
    sdk = client(gateway)
    for _ in range(4):  # round robin: at least one request starts on the broken node
        before = len(gateway.call(lambda: gateway.services.ledger.usage("test", limit=1000)))
        reply = sdk.models.generate_content(model="failover-model", contents=PROMPT)
        headers = reply.sdk_http_response.headers
        assert reply.text.startswith(PROMPT) and headers["x-infermesh-node"] == "steady"
        record = last_usage(gateway, before)
        assert record["node"] == "steady" and record["endpoint"] == "gemini" and not record["estimated"]
        assert float(headers["x-infermesh-cost-usd"]) > 0
    assert upstream.stats("pm-gem-flaky")["requests"] >= 1
    metrics = gateway.call(lambda: gateway.services.metrics.registry)
    failovers = metrics.get_sample_value("infermesh_failovers_total", {"model": "failover-model"})
    assert failovers and failovers >= 1
