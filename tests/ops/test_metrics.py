"""``/metrics`` after real traffic: every family the contract lists, with sane values; the dashboard's PromQL."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.keys import TEST_KEY
from tests.conftest import ROOT, base_config

HEADERS = {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}


def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=HEADERS, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(family: Any, suffix: str = "", **labels: str) -> list[Any]:
    return [s for s in family.samples if s.name == family.name + suffix
            and all(s.labels.get(k) == v for k, v in labels.items())]


def _total(family: Any, suffix: str = "", **labels: str) -> float:
    return sum(s.value for s in _samples(family, suffix, **labels))


@pytest.fixture(scope="module")
def scraped(upstream, tmp_path_factory) -> dict[str, Any]:
    """A gateway with a failing node (failovers), a slow one behind a hedge, and the mock; then traffic."""
    import yaml

    from tests.conftest import (
        RunningGateway,  # the in-thread gateway: same Server as production
    )

    tmp = tmp_path_factory.mktemp("metrics")
    upstream.control("ops-metrics-bad", status=500)
    upstream.control("ops-metrics-slow", first_byte_ms=500)
    nodes = [
        {"id": "bad", "provider": "openai", "base_url": upstream.base("ops-metrics-bad"), "api_key": "sk-up",
         "models": {"gpt-4o-mini": "up-model"}},
        {"id": "slow", "provider": "openai", "base_url": upstream.base("ops-metrics-slow"), "api_key": "sk-up",
         "models": {"claude-sonnet-4-6": "up-claude"}},
        {"id": "mock", "provider": "mock", "models": ["gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]},
    ]
    config = base_config(tmp / "state", nodes, routing={"strategy": "round-robin", "max_attempts": 3})
    config["models"]["claude-sonnet-4-6"]["hedge_after_ms"] = 50
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = RunningGateway(path)
    try:
        chat = gateway.url + "/v1/chat/completions"
        for _ in range(4):  # round robin: at least one starts on the failing node and fails over
            assert _post(chat, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})[0] == 200
        for _ in range(4):  # at least one starts on the slow node and is hedged
            status, body = _post(chat, {"model": "claude-sonnet-4-6", "stream": True,
                                        "messages": [{"role": "user", "content": "stream"}]})
            assert status == 200 and body.endswith(b"data: [DONE]\n\n")
        assert _post(gateway.url + "/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"})[0] == 200
        assert _post(chat, {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})[0] == 404
        deadline = time.monotonic() + 5
        while True:  # the journal fsyncs on its own thread, batched: wait for it to have reported
            families = _scrape(gateway.url)
            if _total(families["infermesh_ledger_fsync_seconds"], "_count") > 0 or time.monotonic() > deadline:
                return families
            time.sleep(0.02)
    finally:
        gateway.stop()


def test_request_counters_and_latency_histograms(scraped):
    requests = scraped["infermesh_requests"]
    assert requests.type == "counter"
    assert _total(requests, "_total", endpoint="chat", model="gpt-4o-mini", status_class="2xx") == 4
    assert _total(requests, "_total", endpoint="chat", model="claude-sonnet-4-6", status_class="2xx") == 4
    assert _total(requests, "_total", endpoint="embeddings", status_class="2xx") == 1
    assert _total(requests, "_total", status_class="4xx") == 1
    for name, endpoint, count in (("infermesh_request_duration_seconds", "chat", 9),
                                  ("infermesh_time_to_first_token_seconds", "chat", 4)):
        family = scraped[name]
        assert family.type == "histogram"
        assert _total(family, "_count", endpoint=endpoint) == count
        buckets = _samples(family, "_bucket", endpoint=endpoint)
        bounds = [float(s.labels["le"]) for s in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf")
        assert min(bounds) <= 0.05 and max(b for b in bounds if b != float("inf")) >= 60  # LLM-sized range
        values = [s.value for s in buckets]
        assert values == sorted(values) and values[-1] == count
    overhead = scraped["infermesh_gateway_overhead_seconds"]
    assert _total(overhead, "_count") == 10
    assert 0 < _total(overhead, "_sum") < _total(scraped["infermesh_request_duration_seconds"], "_sum")


def test_upstream_attempts_failovers_hedges_and_breakers(scraped):
    attempts = scraped["infermesh_upstream_attempts"]
    assert _total(attempts, "_total", node="bad", outcome="failure") >= 1
    assert _total(attempts, "_total", node="mock", outcome="success") == 9
    assert _total(scraped["infermesh_failovers"], "_total", model="gpt-4o-mini") >= 1
    assert _total(scraped["infermesh_hedges"], "_total", model="claude-sonnet-4-6") >= 1
    breakers = scraped["infermesh_breaker_state"]
    assert breakers.type == "gauge"
    pairs = {(s.labels["node"], s.labels["model"]): s.value for s in breakers.samples}
    assert ("bad", "gpt-4o-mini") in pairs and ("mock", "text-embedding-3-small") in pairs
    assert set(pairs.values()) <= {0, 1, 2}


def test_in_flight_tokens_cost_fsync_and_process(scraped):
    assert _total(scraped["infermesh_inflight_requests"]) == 0
    assert _total(scraped["infermesh_inflight_streams"]) == 0
    tokens = scraped["infermesh_tokens"]
    assert _total(tokens, "_total", model="gpt-4o-mini", kind="input") > 0
    assert _total(tokens, "_total", model="claude-sonnet-4-6", kind="output") > 0
    cost = scraped["infermesh_cost_usd"]
    assert 0 < _total(cost, "_total", model="claude-sonnet-4-6") < 1
    assert _total(scraped["infermesh_ledger_fsync_seconds"], "_count") > 0
    assert scraped["infermesh_config_last_reload_successful"].samples[0].value == 1
    assert _total(scraped["process_resident_memory_bytes"]) > 0
    assert _total(scraped["process_open_fds"]) > 0
    assert "process_cpu_seconds" in scraped


def test_no_label_names_a_key_or_an_account(scraped):
    for family in scraped.values():
        for sample in family.samples:
            assert not {"key", "key_id", "account", "api_key"} & set(sample.labels)
            assert TEST_KEY not in json.dumps(sample.labels)


def test_grafana_dashboard_queries_only_exposed_metrics(scraped):
    dashboard = json.loads((ROOT / "conf" / "grafana" / "infermesh.json").read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    exposed = {family.name for family in scraped.values()}
    for family in scraped.values():
        exposed |= {sample.name for sample in family.samples}
        if family.type == "histogram":
            exposed |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        if family.type == "counter":
            exposed.add(family.name + "_total")
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for topic in ("model", "error", "p50", "first token", "overhead", "breaker", "tokens", "spend", "in flight"):
        assert topic in titles
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:infermesh|process|python)_[a-z0-9_]+)\b", target["expr"]))
            assert names, target["expr"]
            assert names <= exposed, (panel["title"], names - exposed)


def test_metrics_on_a_separate_port(start_gateway, tmp_path):
    """``listen.metrics_port``: /metrics answers only there, so the scrape port can stay private."""
    import urllib.error
    import urllib.request

    from tests.conftest import base_config

    nodes = [{"id": "m", "provider": "mock", "models": ["gpt-4o-mini", "claude-sonnet-4-6", "text-embedding-3-small"]}]
    gateway = start_gateway(base_config(tmp_path / "state", nodes, listen={"host": "127.0.0.1", "port": 0,
                                                                           "metrics_port": 0}))
    metrics_port = gateway.server.metrics_port
    assert metrics_port and metrics_port != gateway.server.port
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        assert b"infermesh_requests_total" in response.read()
    try:
        urllib.request.urlopen(gateway.url + "/metrics", timeout=5)
        raise AssertionError("/metrics must not be served on the API port")
    except urllib.error.HTTPError as error:
        assert error.code == 404
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/v1/models", timeout=5)
        raise AssertionError("the metrics port serves nothing else")
    except urllib.error.HTTPError as error:
        assert error.code == 404
