"""Config: the contract's schema, interpolation, and every problem reported at once with its path."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from gateway.config import ConfigError, load_config, normalize_model_id, parse_config

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"nodes": [{"id": "m", "provider": "mock", "models": ["gpt-x"]}],
           "models": {"gpt-x": {"price": {"input": 1, "output": 2}}}}


def problems(raw, env=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env or {})
    return caught.value.problems


def test_contract_example_parses(tmp_path):
    text = (ROOT.parent / "shared" / "design" / "interface.md").read_text() if (
        ROOT.parent / "shared" / "design" / "interface.md").exists() else None
    if text is None:
        pytest.skip("shared/design is not beside this checkout")
    block = text.split("```yaml", 1)[1].split("```", 1)[0]
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "b", "OPENROUTER_API_KEY": "c"}
    config = parse_config(yaml.safe_load(block), env)
    assert config.find_model("Claude-Sonnet-4.6").price.cached_input == Decimal("0.3")
    assert config.nodes[2].models["claude-sonnet-4-6"] == "anthropic/claude-sonnet-4.6"
    assert config.models["claude-sonnet-4-6"].hedge_after_ms == 1500
    assert config.upstream.timeouts.first_byte_timeout_s == 60


def test_shipped_configs_are_valid():
    load_config(ROOT / "conf" / "gateway.yaml", env={})
    env = {name: "x" for name in ("INFERMESH_ADMIN_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                                  "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY")}
    load_config(ROOT / "conf" / "example.yaml", env=env)


def test_interpolation_with_defaults_and_missing_variables():
    raw = {**MINIMAL, "admin": {"token": "${TOKEN}"}, "state": {"dir": "${DIR:-/var/lib/x}"}}
    config = parse_config(raw, {"TOKEN": "t0k"})
    assert config.admin.token == "t0k" and config.state.dir == "/var/lib/x"
    assert problems(raw) == ["admin.token: environment variable TOKEN is not set "
                             "(use ${TOKEN:-default} for a default)"]


def test_unknown_keys_are_errors_everywhere():
    raw = {**MINIMAL, "routing": {"stratgy": "round-robin"},
           "nodes": [{"id": "m", "provider": "mock", "models": ["gpt-x"], "wieght": 2}],
           "models": {"gpt-x": {"price": {"input": 1}, "fallback": ["y"]}}}
    found = problems(raw)
    assert any(p.startswith("routing.stratgy: unknown key") for p in found)
    assert any(p.startswith("nodes[0].wieght: unknown key") for p in found)
    assert any(p.startswith("models.gpt-x.fallback: unknown key") for p in found)


def test_all_problems_at_once_with_paths():
    raw = {"listen": {"port": 70000}, "limits": {"max_body_bytes": "big"},
           "nodes": [{"id": "a", "provider": "openai", "base_url": "ftp://x", "models": {"nope": "n"}},
                     {"provider": "nonsense", "models": ["gpt-x"]}],
           "models": {"gpt-x": {"price": {"input": -1}}, "GPT.X": {"price": {"input": 1}}},
           "accounts": [{"id": "a", "keys": ["short"]}]}
    found = problems(raw)
    for expected in ("listen.port: must be at most 65535", "limits.max_body_bytes: must be an integer",
                     "nodes[0].base_url: must start with http://", "nodes[0].models.nope: is not in the models",
                     "nodes[1].id: is required", "nodes[1].provider: must be one of",
                     "models.gpt-x.price.input: must be a non-negative amount", "collides with",
                     "accounts[0].keys[0]: keys must be at least 16 characters"):
        assert any(expected in p for p in found), (expected, found)


def test_money_is_decimal_not_float():
    config = parse_config({**MINIMAL, "models": {"gpt-x": {"price": {"input": 0.1, "output": "0.30"}}}}, {})
    assert config.models["gpt-x"].price.input == Decimal("0.1")
    assert config.models["gpt-x"].price.output == Decimal("0.30")


def test_model_ids_normalize_and_aliases_resolve():
    raw = {**MINIMAL, "models": {"gpt-x": {"aliases": ["Legacy.X"], "price": {"input": 1}}}}
    config = parse_config(raw, {})
    assert normalize_model_id("Claude-Sonnet-4.6") == "claude-sonnet-4-6"
    assert config.find_model("GPT.X").id == "gpt-x" and config.find_model("legacy-x").id == "gpt-x"
    assert config.find_model("other") is None


def test_fallbacks_must_exist_and_models_must_be_served():
    raw = {**MINIMAL, "models": {"gpt-x": {"price": {"input": 1}, "fallbacks": ["ghost", "gpt-x"]},
                                 "lonely": {"price": {"input": 1}}}}
    found = problems(raw)
    assert "models.gpt-x.fallbacks[0]: unknown model 'ghost'" in found
    assert "models.gpt-x.fallbacks[1]: a model cannot fall back to itself" in found
    assert "models.lonely: no node serves this model" in found


def test_per_node_timeouts_override_upstream_defaults():
    raw = {**MINIMAL, "upstream": {"first_byte_timeout_s": 10},
           "nodes": [{"id": "m", "provider": "mock", "models": ["gpt-x"], "idle_timeout_s": 3}]}
    node = parse_config(raw, {}).nodes[0]
    assert node.timeouts.first_byte_timeout_s == 10 and node.timeouts.idle_timeout_s == 3
