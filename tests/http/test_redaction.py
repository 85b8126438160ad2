"""Upstream secrets never reach a client or a log (contract §4): ``[redacted]`` instead.

The hostile mock upstream's ``echo-key`` mode quotes the credential it received,
in a 400's message (as some providers do: "invalid key sk-...") or inside a
successful reply, on every path, streamed or not.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from gateway import redact
from gateway.config import load_config
from gateway.observability.logs import AccessLog
from tests.conftest import MockUpstream, RunningGateway
from tests.http.test_hostile_upstream import BAD, NODE_KEYS, PATHS, body_for, call, hostile_config

ALL_KEYS = [key.encode() for key in NODE_KEYS.values()]


@pytest.fixture(scope="module")
def gateway(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("redaction")
    config = hostile_config(upstream, root / "state")
    for node in config["nodes"]:  # only the echoing nodes: every request reaches one
        node["base_url"] = node["base_url"].replace("hostile-", "echo-")
    config["nodes"] = [n for n in config["nodes"] if n["id"] in BAD.values()]
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    running = RunningGateway(path)
    for node in BAD.values():
        upstream.control(f"echo-{node}", fault="echo-key")
    yield running
    running.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("status", [400, 200])
def test_an_echoed_upstream_key_is_redacted(gateway, upstream, path, stream, status):
    endpoint, model = PATHS[path]
    node = f"echo-{BAD[model]}"
    upstream.control(node, status=status if status != 200 else None)
    try:
        body = body_for(endpoint, model, stream)
        body["messages"][0]["content"] = "say ECHO-KEY please"  # the mock repeats it, as the key
        answer = call(gateway, endpoint, body)
    finally:
        upstream.control(node, status=None)
    assert answer.status_code == status
    assert not any(key in answer.content for key in ALL_KEYS)
    assert b"[redacted]" in answer.content
    assert not any(key.decode() in value for key in ALL_KEYS for value in answer.headers.values())


def test_the_access_log_and_lifecycle_lines_are_redacted(tmp_path: Path):
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump({
        "admin": {"token": "admin-token-0123456789"},
        "nodes": [{"id": "n", "provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                   "api_key": "sk-log-secret/0123456789", "models": ["m"]}],
        "models": {"m": {"price": {"input": 1, "output": 1}}}}))
    redact.register(load_config(config_path))
    out = io.StringIO()
    AccessLog(out).write({"error": "node said: invalid key sk-log-secret/0123456789 (admin-token-0123456789)"})
    line = out.getvalue()
    assert "sk-log-secret" not in line and "admin-token-0123456789" not in line
    assert line.count("[redacted]") == 2


def test_the_matcher_handles_json_escapes_and_overlaps():
    redactor = redact.Redactor(["sk-abc/def-12345", "sk-abc/def-12345-long", "short"])
    assert redactor.bytes(b'{"m":"sk-abc\\/def-12345"}') == b'{"m":"[redacted]"}'
    assert redactor.text("k=sk-abc/def-12345-long.") == "k=[redacted]."
    assert redactor.text("short stays") == "short stays"  # under MIN_SECRET_CHARS: not a secret worth matching
    data = b"nothing to hide"
    assert redactor.bytes(data) is data  # the common case: no copy
