"""SIGHUP: nodes, models and prices reload atomically, open streams keep going, a bad file is rejected."""

from __future__ import annotations

import json
import signal

import yaml

from tests.ops.conftest import DEMO_KEY, Stream, demo_config


def _price(gateway, model_id: str) -> str:
    reply = gateway.request("GET", "/pricing")
    assert reply.status == 200
    return next(row["input"] for row in reply.json()["models"] if row["id"] == model_id)


def _chat(gateway, model: str) -> tuple[int, dict]:
    reply = gateway.request("POST", "/v1/chat/completions",
                            {"model": model, "messages": [{"role": "user", "content": "hi"}]}, key=DEMO_KEY)
    return reply.status, reply.json()


def test_sighup_reloads_models_and_prices_without_dropping_streams(gateway_process, tmp_path):
    config = demo_config(tmp_path, token_delay_ms=100)
    gateway = gateway_process(config)
    assert _price(gateway, "gpt-4o-mini") == "0.15"
    assert _chat(gateway, "gpt-4.1-nano")[0] == 404

    stream = Stream(gateway.port, "gpt-4o-mini", "keep going")
    config["models"]["gpt-4o-mini"]["price"]["input"] = 0.25
    config["models"]["gpt-4.1-nano"] = {"price": {"input": 0.10, "output": 0.40}}
    config["nodes"][0]["models"]["gpt-4.1-nano"] = "gpt-4.1-nano"
    gateway.config_path.write_text(yaml.safe_dump(config))
    gateway.signal(signal.SIGHUP)
    reloaded = gateway.wait_event("reloaded")
    assert reloaded["level"] == "info" and reloaded["models"] == 5 and "restart_required" not in reloaded

    assert _price(gateway, "gpt-4o-mini") == "0.25"
    status, reply = _chat(gateway, "gpt-4.1-nano")
    assert status == 200 and reply["model"] == "gpt-4.1-nano"
    received = stream.rest()  # the stream opened before the reload runs to its end
    assert received.endswith(b"data: [DONE]\n\n") and received.count(b'"content"') >= 12

    # An invalid file: rejected, logged with every problem, the running config kept.
    gateway.config_path.write_text("models:\n  gpt-4o-mini: {price: {input: -1}}\nnodes: [\n")
    gateway.signal(signal.SIGHUP)
    rejected = gateway.wait_event("reload_rejected")
    assert rejected["level"] == "error" and rejected["problems"]
    config["models"]["gpt-4o-mini"]["price"]["input"] = -1  # valid YAML, invalid config
    gateway.config_path.write_text(yaml.safe_dump(config))
    gateway.signal(signal.SIGHUP)
    rejected = gateway.wait_event("reload_rejected", nth=2)
    assert any("models.gpt-4o-mini.price.input" in problem for problem in rejected["problems"]), rejected
    assert _price(gateway, "gpt-4o-mini") == "0.25"
    assert _chat(gateway, "gpt-4.1-nano")[0] == 200
    body = gateway.request("GET", "/metrics").body
    assert b'infermesh_config_reloads_total{result="rejected"} 2.0' in body
    assert b'infermesh_config_reloads_total{result="ok"} 1.0' in body
    assert b"infermesh_config_last_reload_successful 0.0" in body

    gateway.signal(signal.SIGTERM)
    assert gateway.wait() == 0


def test_reload_of_a_setting_that_needs_a_restart_says_so(gateway_process, tmp_path):
    config = demo_config(tmp_path)
    gateway = gateway_process(config)
    config["state"]["snapshot_interval_s"] = 10
    gateway.config_path.write_text(yaml.safe_dump(config))
    gateway.signal(signal.SIGHUP)
    reloaded = gateway.wait_event("reloaded")
    assert reloaded["level"] == "warning" and reloaded["restart_required"] == ["state"]
    gateway.signal(signal.SIGTERM)
    assert gateway.wait() == 0
