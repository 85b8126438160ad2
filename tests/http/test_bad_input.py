"""Bad input: each gets the right status and a clear OpenAI-shaped error; the gateway keeps serving."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys

import pytest
import yaml

from tests.support.keys import TEST_KEY
from tests.conftest import ROOT, base_config, wait_for

AUTH = {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}
GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gateway(start_gateway, tmp_path, capfd):
    config = base_config(tmp_path / "state", [{"id": "m", "provider": "mock", "models": ["gpt-4o-mini",
                                                                                       "claude-sonnet-4-6",
                                                                                       "text-embedding-3-small"]}])
    config["logging"] = {"access_log": True}
    config["limits"] = {"max_body_bytes": 4096}
    return start_gateway(config)


def request(gateway, method: str, path: str, body: bytes | str | None, headers: dict[str, str]):
    host, port = gateway.url.rsplit(":", 1)
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    conn.request(method, path, body, headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None, response


CASES = [
    ("malformed JSON", "POST", "/v1/chat/completions", b'{"model": "gpt-4o-mini",', AUTH, 400, None),
    ("array body", "POST", "/v1/chat/completions", b"[1, 2]", AUTH, 400, None),
    ("string body", "POST", "/v1/chat/completions", b'"hello"', AUTH, 400, None),
    ("missing model", "POST", "/v1/chat/completions", json.dumps({"messages": GOOD["messages"]}), AUTH, 400, "model"),
    ("messages not a list", "POST", "/v1/chat/completions", json.dumps({**GOOD, "messages": "hi"}), AUTH, 400,
     "messages"),
    ("stream yes", "POST", "/v1/chat/completions", json.dumps({**GOOD, "stream": "yes"}), AUTH, 400, "stream"),
    ("negative max_tokens", "POST", "/v1/chat/completions", json.dumps({**GOOD, "max_tokens": -5}), AUTH, 400,
     "max_tokens"),
    ("absurd max_tokens", "POST", "/v1/chat/completions", json.dumps({**GOOD, "max_tokens": 10**12}), AUTH, 400,
     "max_tokens"),
    ("fractional max_tokens", "POST", "/v1/chat/completions", json.dumps({**GOOD, "max_tokens": 1.5}), AUTH, 400,
     "max_tokens"),
    ("temperature out of range", "POST", "/v1/chat/completions", json.dumps({**GOOD, "temperature": 9}), AUTH, 400,
     "temperature"),
    ("body too large", "POST", "/v1/chat/completions",
     json.dumps({**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}), AUTH, 413, None),
    ("unknown path", "POST", "/v1/nothing-here", b"{}", AUTH, 404, None),
    ("wrong method", "GET", "/v1/chat/completions", None, AUTH, 405, None),
    ("missing key", "POST", "/v1/chat/completions", json.dumps(GOOD), {"Content-Type": "application/json"}, 401,
     None),
    ("unknown key", "POST", "/v1/chat/completions", json.dumps(GOOD),
     {"Authorization": "Bearer sk-not-a-real-key-123456"}, 401, None),
    ("model with control characters", "POST", "/v1/chat/completions",
     json.dumps({**GOOD, "model": "gpt-4o-mini\u0007"}), AUTH, 400, "model"),
    ("unknown model", "POST", "/v1/chat/completions", json.dumps({**GOOD, "model": "gpt-99"}), AUTH, 404, "model"),
    ("embedding model on chat", "POST", "/v1/chat/completions",
     json.dumps({**GOOD, "model": "text-embedding-3-small"}), AUTH, 400, "model"),
    ("embeddings without input", "POST", "/v1/embeddings", json.dumps({"model": "text-embedding-3-small"}), AUTH,
     400, "input"),
    ("unknown fallback model", "POST", "/v1/chat/completions", json.dumps({**GOOD, "fallback_models": ["nope"]}),
     AUTH, 404, "fallback_models"),
]


@pytest.mark.parametrize("name,method,path,body,headers,status,param", CASES, ids=[c[0] for c in CASES])
def test_bad_input(gateway, capfd, name, method, path, body, headers, status, param):
    got, payload, response = request(gateway, method, path, body, headers)
    assert got == status
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    assert response.getheader("x-request-id")
    assert response.getheader("x-infermesh-node")
    # Still serving.
    ok, reply, _ = request(gateway, "POST", "/v1/chat/completions", json.dumps(GOOD), AUTH)
    assert ok == 200 and reply["choices"][0]["message"]["content"]
    out, err = capfd.readouterr()
    assert TEST_KEY not in out + err and "sk-not-a-real-key" not in out + err
    assert "hi" not in [line.get("prompt") for line in map(json.loads, filter(None, out.splitlines()))]


def test_header_with_control_characters_is_refused_without_logging_it(gateway, capfd, caplog):
    """The HTTP parser (llhttp) refuses such a header before any handler runs: a JSON 400 that does not
    quote it, then the connection closes.

    It answers and closes at once, so the client may see the 400 or a reset
    while it is still sending: either way the request is refused.
    """
    caplog.set_level("DEBUG")
    try:
        status, payload, _ = request(gateway, "POST", "/v1/chat/completions", json.dumps(GOOD),
                                     {"x-api-key": "sk-ctl-\x01\x02-secret-0000"})
        assert status == 400 and payload["error"]["type"] == "invalid_request_error"
        assert "sk-ctl" not in json.dumps(payload)
    except ConnectionResetError:
        pass
    ok, _, _ = request(gateway, "POST", "/v1/chat/completions", json.dumps(GOOD), AUTH)
    assert ok == 200
    seen = ""

    def logged() -> bool:  # the access line is written after the answer: read on until it is there
        nonlocal seen
        out, err = capfd.readouterr()
        seen += out + err
        return '"kind":"access"' in seen

    assert wait_for(logged, 5)
    assert "sk-ctl" not in seen + caplog.text


def test_anthropic_endpoint_errors_are_anthropic_shaped(gateway):
    status, payload, _ = request(gateway, "POST", "/v1/messages", b"{not json", {"x-api-key": TEST_KEY})
    assert status == 400
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    status, payload, _ = request(gateway, "POST", "/v1/messages", b"{}", {})
    assert status == 401 and payload["error"]["type"] == "authentication_error"


def test_access_log_has_no_secrets_or_text(tmp_path):
    """The real process's stdout: one JSON line per request, no key, no prompt text."""
    config = base_config(tmp_path / "state", [{"id": "m", "provider": "mock", "models": ["gpt-4o-mini",
                                                                                      "claude-sonnet-4-6",
                                                                                      "text-embedding-3-small"]}])
    config["logging"] = {"access_log": True}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, str(ROOT / "gateway.py"), "--config", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split("http://127.0.0.1:")[1].split()[0])
        secret_prompt = "my-secret-prompt-text"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for headers in (AUTH, {"Authorization": "Bearer sk-not-a-real-key-123456"}):
            conn.request("POST", "/v1/chat/completions",
                         json.dumps({**GOOD, "messages": [{"role": "user", "content": secret_prompt}]}), headers)
            conn.getresponse().read()
        conn.close()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("kind") == "access"]
    assert [line["status"] for line in access] == [200, 401]
    assert access[0]["account"] == "test" and access[0]["output_tokens"] > 0
    everything = out + err
    assert secret_prompt not in everything and TEST_KEY not in everything
    assert "sk-not-a-real-key" not in everything
