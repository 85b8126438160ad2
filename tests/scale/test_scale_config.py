"""``state.backend`` / ``state.redis_url`` / ``state.redis_prefix`` validation (no Redis needed)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config

BASE = {"models": {"m": {"price": {"input": 1, "output": 1}}},
        "nodes": [{"id": "n", "provider": "mock", "models": ["m"]}]}


def problems(state: dict[str, Any]) -> list[str]:
    try:
        parse_config({**BASE, "state": state}, {})
    except ConfigError as error:
        return error.problems
    return []


def test_embedded_is_the_default_and_redis_needs_a_url() -> None:
    config = parse_config(dict(BASE), {})
    assert (config.state.backend, config.state.redis_prefix, config.state.reservation_ttl_s) == \
        ("embedded", "infermesh:", 60.0)
    assert problems({"backend": "redis"}) == [
        "state.redis_url: is required with state.backend: redis (e.g. redis://127.0.0.1:6379/0)"]
    for url in ("redis://10.0.0.5:6379/0", "rediss://user:pw@host:6380", "unix:///run/redis.sock"):
        assert problems({"backend": "redis", "redis_url": url}) == []


@pytest.mark.parametrize("state, expected", [
    ({"backend": "mysql"}, "state.backend: must be one of embedded, redis"),
    ({"backend": "redis", "redis_url": "http://x"}, "state.redis_url: must start with redis://"),
    ({"redis_prefix": "a b"}, "state.redis_prefix: must be 1 to 64 characters"),
    ({"reservation_ttl_s": 0.1}, "state.reservation_ttl_s: must be at least 1"),
    ({"redis_urll": "redis://x"}, "state.redis_urll: unknown key"),
])
def test_bad_state_settings_are_reported(state: dict[str, Any], expected: str) -> None:
    found = problems(state)
    assert any(problem.startswith(expected) for problem in found), found
