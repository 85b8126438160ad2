"""POST /admin/reload: the same reload as SIGHUP, driven over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.conftest import base_config

TOKEN = "admin-token-for-tests-123"


def post(url: str, token: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_admin_reload_applies_a_valid_file_and_rejects_an_invalid_one(start_gateway, tmp_path):
    nodes = [{"id": "m", "provider": "mock", "models": ["gpt-4o-mini", "claude-sonnet-4-6",
                                                        "text-embedding-3-small"]}]
    config = base_config(tmp_path / "state", nodes, admin={"token": TOKEN})
    gateway = start_gateway(config)
    source = Path(gateway.config.source)

    assert post(gateway.url + "/admin/reload", None)[0] == 401
    config["models"]["gpt-4o-mini"]["price"]["input"] = 0.5
    source.write_text(yaml.safe_dump(config))
    status, body = post(gateway.url + "/admin/reload", TOKEN)
    assert status == 200 and body["reloaded"] is True
    with urllib.request.urlopen(gateway.url + "/pricing", timeout=5) as response:
        prices = {row["id"]: row["input"] for row in json.loads(response.read())["models"]}
    assert prices["gpt-4o-mini"] == "0.5"

    source.write_text(yaml.safe_dump({**config, "routing": {"strategy": "fastest"}}))
    status, body = post(gateway.url + "/admin/reload", TOKEN)
    assert status == 400 and body["reloaded"] is False
    assert any(problem.startswith("routing.strategy") for problem in body["problems"])
    with urllib.request.urlopen(gateway.url + "/pricing", timeout=5) as response:
        prices = {row["id"]: row["input"] for row in json.loads(response.read())["models"]}
    assert prices["gpt-4o-mini"] == "0.5"  # the running config is kept
