"""The demo config as shipped: in-process mock nodes answer the official SDK with the demo key."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import yaml

from tests.conftest import ROOT

from tests.support.keys import DEMO_KEY


def demo_config(tmp_path: Path) -> dict:
    config = yaml.safe_load((ROOT / "conf" / "gateway.yaml").read_text())
    config["state"]["dir"] = str(tmp_path / "state")
    config["listen"]["port"] = 0
    config["logging"] = {"access_log": False}  # keep test output clean; the access log is tested elsewhere
    return config


def test_demo_config_serves_sdk_plain_and_streaming(start_gateway, tmp_path):
    gateway = start_gateway(demo_config(tmp_path))
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=DEMO_KEY, max_retries=0)
    reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello mock"}])
    assert reply.choices[0].message.content.startswith("Hello mock")
    pieces = [c.choices[0].delta.content for c in sdk.chat.completions.create(
        model="claude-sonnet-4.6", messages=[{"role": "user", "content": "stream please"}], stream=True)
        if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 12 and "".join(pieces).startswith("stream please")
    vectors = sdk.embeddings.create(model="text-embedding-3-small", input="abc")
    assert len(vectors.data[0].embedding) == 8


def test_demo_embeddings_honour_encoding_format(start_gateway, tmp_path):
    """The mock answers base64 when asked, as OpenAI does: the SDK asks for it by default and decodes it."""
    gateway = start_gateway(demo_config(tmp_path))
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=DEMO_KEY, max_retries=0)
    floats = sdk.embeddings.create(model="text-embedding-3-small", input=["abc", "xyz"], encoding_format="float")
    decoded = sdk.embeddings.create(model="text-embedding-3-small", input=["abc", "xyz"])  # base64, decoded by the SDK
    assert [len(item.embedding) for item in decoded.data] == [8, 8]
    assert decoded.data[0].embedding != decoded.data[1].embedding
    for plain, packed in zip(floats.data, decoded.data):
        assert packed.embedding == pytest.approx(plain.embedding, abs=1e-6)  # float32 on the wire
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-3-small", input="abc", encoding_format="base64")
    vector = json.loads(raw.text)["data"][0]["embedding"]
    assert isinstance(vector, str) and len(base64.b64decode(vector)) == 8 * 4


def test_mock_provider_tool_call_round_trip(start_gateway, tmp_path):
    gateway = start_gateway(demo_config(tmp_path))
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=DEMO_KEY, max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    messages = [{"role": "user", "content": "Weather in Paris? call get_weather"}]
    first = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    final = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    assert "sunny, 21C" in final.choices[0].message.content


def test_gateway_py_starts_and_answers(tmp_path):
    """``python gateway.py`` as the README runs it: one line with the address and a curl command."""
    config = demo_config(tmp_path)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "gateway.py"), "--config", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line and DEMO_KEY in line and "curl" in line
        url = line.split("listening on ", 1)[1].split()[0]
        sdk = openai.OpenAI(base_url=url + "/v1", api_key=DEMO_KEY, max_retries=0)
        assert sdk.models.list().data
        assert time.monotonic() - started < 10
    finally:
        proc.terminate()
        assert proc.wait(10) == 0  # SIGTERM drains and exits 0


def test_check_config_reports_every_problem_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "routing": {"strategy": "fastest", "max_attempt": 2},
        "nodes": [{"id": "a", "provider": "openai", "models": {"gpt-x": "gpt-x"}, "api_key": "${NOPE_KEY}"},
                  {"id": "a", "provider": "mock", "models": ["gpt-x"], "weight": -1}],
        "models": {"gpt-x": {"price": {"input": "abc"}, "fallbacks": ["ghost"]}},
    }))
    env = {k: v for k, v in os.environ.items() if k != "NOPE_KEY"}
    result = subprocess.run([sys.executable, str(ROOT / "gateway.py"), "--check-config", str(bad)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 1
    out = result.stdout
    for expected in ("routing.strategy: must be one of", "routing.max_attempt: unknown key",
                     "nodes[0].base_url: is required", "warning: nodes[0] (a) left out: NOPE_KEY is not set",
                     "nodes[1].id: duplicate node id", "nodes[1].weight: must be at least 1",
                     "models.gpt-x.price.input: must be a decimal amount", "models.gpt-x.fallbacks[0]: unknown model"):
        assert expected in out, (expected, out)
    good = subprocess.run([sys.executable, str(ROOT / "gateway.py"), "--check-config",
                           str(ROOT / "conf" / "gateway.yaml")], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout
    assert shutil.which(sys.executable)
