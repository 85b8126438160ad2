from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from gateway.config import Config, Model, parse_config
from gateway.routing.router import Attempt, Outcome, Plan, Router


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


NODES = {  # node id -> (weight, {public model id: node model id})
    "a": (2, {"claude-sonnet-4-6": "claude-sonnet-4-6", "gpt-4o": "gpt-4o"}),
    "b": (1, {"claude-sonnet-4.6": "anthropic/claude-sonnet-4.6", "gpt-4o": "openai/gpt-4o"}),
    "c": (1, {"claude-sonnet-4-6": "claude-c", "mini": "mini"}),
}


def make_config(nodes: dict[str, tuple[int, dict[str, str]]] = NODES, strategy: str = "round-robin",
                max_attempts: int = 3, threshold: int = 1, open_s: float = 30.0) -> Config:
    raw: dict[str, Any] = {
        "routing": {"strategy": strategy, "max_attempts": max_attempts},
        "circuit_breaker": {"failure_threshold": threshold, "open_s": open_s},
        "nodes": [{"id": node_id, "provider": "mock", "weight": weight, "models": models}
                  for node_id, (weight, models) in nodes.items()],
        "models": {
            "claude-sonnet-4-6": {"aliases": ["sonnet"], "price": {"input": 3, "output": 15},
                                  "fallbacks": ["gpt-4o", "mini"]},
            "gpt-4o": {"price": {"input": 2.5, "output": 10}},
            "mini": {"price": {"input": 0.1}},
        },
    }
    return parse_config(raw, env={})


def model(config: Config, model_id: str) -> Model:
    found = config.find_model(model_id)
    assert found is not None
    return found


def make_router(clock: FakeClock | None = None, **kwargs: Any) -> tuple[Router, Config, FakeClock]:
    config = make_config(**kwargs)
    clock = clock or FakeClock()
    return Router(config, clock=clock, rng=random.Random(0)), config, clock


def drain(plan: Plan, outcome: Outcome = Outcome.FAILURE, router: Router | None = None) -> list[Attempt]:
    """Pull every attempt of a plan, reporting each with ``outcome`` so failover proceeds."""
    attempts = []
    while (attempt := plan.next()) is not None:
        attempts.append(attempt)
        if router is not None:
            router.report(attempt, outcome)
    return attempts


def pairs(attempts: list[Attempt]) -> list[tuple[str, str]]:
    return [(attempt.node.id, attempt.model.id) for attempt in attempts]


def row(router: Router, node: str, model_id: str) -> dict[str, object]:
    return next(r for r in router.status() if r["node"] == node and r["model"] == model_id)


# -- model resolution and upstream ids --------------------------------------------


def test_alias_and_normalized_ids_reach_the_same_nodes() -> None:
    router, config, _ = make_router(threshold=100)
    for name in ("claude-sonnet-4-6", "Claude-Sonnet-4.6", "sonnet"):
        attempts = drain(router.plan(model(config, name), fallback_models=[]), router=router)
        assert {a.node.id for a in attempts} == {"a", "b", "c"}
        assert all(a.model.id == "claude-sonnet-4-6" for a in attempts)


def test_attempt_carries_the_nodes_own_model_id() -> None:
    router, config, _ = make_router(threshold=100)
    attempts = drain(router.plan(model(config, "sonnet"), fallback_models=[]), router=router)
    assert {a.node.id: a.upstream_model for a in attempts} == {
        "a": "claude-sonnet-4-6", "b": "anthropic/claude-sonnet-4.6", "c": "claude-c"}
    assert not any(a.is_fallback for a in attempts)


# -- attempts, fallbacks ----------------------------------------------------------


def test_max_attempts_per_model() -> None:
    router, config, _ = make_router(max_attempts=2, threshold=100)
    attempts = drain(router.plan(model(config, "sonnet"), fallback_models=[]), router=router)
    assert len(attempts) == 2


def test_never_the_same_node_twice_for_a_model() -> None:
    router, config, _ = make_router(max_attempts=10, threshold=100)
    attempts = drain(router.plan(model(config, "sonnet"), fallback_models=[]), router=router)
    assert sorted(a.node.id for a in attempts) == ["a", "b", "c"]


def test_configured_fallbacks_follow_the_exhausted_primary() -> None:
    router, config, _ = make_router(threshold=100)
    attempts = drain(router.plan(model(config, "sonnet")), router=router)
    assert [a.model.id for a in attempts] == ["claude-sonnet-4-6"] * 3 + ["gpt-4o"] * 2 + ["mini"]
    assert [a.is_fallback for a in attempts] == [False] * 3 + [True] * 3
    assert {a.node.id for a in attempts[3:5]} == {"a", "b"}  # a node tried for the primary serves a fallback
    assert attempts[3].upstream_model in ("gpt-4o", "openai/gpt-4o")


def test_request_fallbacks_replace_configured_ones() -> None:
    router, config, _ = make_router(threshold=100)
    attempts = drain(router.plan(model(config, "sonnet"), [model(config, "mini")]), router=router)
    assert pairs(attempts)[3:] == [("c", "mini")]
    assert attempts[3].model is model(config, "mini")


def test_request_fallbacks_skip_duplicates_and_the_primary() -> None:
    router, config, _ = make_router(threshold=100)
    fallbacks = [model(config, "mini"), model(config, "sonnet"), model(config, "mini")]
    attempts = drain(router.plan(model(config, "sonnet"), fallbacks), router=router)
    assert [a.model.id for a in attempts] == ["claude-sonnet-4-6"] * 3 + ["mini"]


def test_empty_request_fallbacks_mean_none() -> None:
    router, config, _ = make_router(threshold=100)
    attempts = drain(router.plan(model(config, "sonnet"), []), router=router)
    assert all(not a.is_fallback for a in attempts) and len(attempts) == 3


def test_next_after_the_end_stays_none() -> None:
    router, config, _ = make_router(threshold=100)
    plan = router.plan(model(config, "mini"))
    drain(plan, router=router)
    assert plan.next() is None


# -- breakers ---------------------------------------------------------------------


def test_open_breaker_nodes_are_skipped() -> None:
    router, config, _ = make_router(threshold=1)
    attempt = router.plan(model(config, "gpt-4o")).next()
    assert attempt is not None
    router.report(attempt, Outcome.FAILURE)
    survivor = {"a": "b", "b": "a"}[attempt.node.id]
    for _ in range(5):
        assert pairs(drain(router.plan(model(config, "gpt-4o")), Outcome.SUCCESS, router)) == [(survivor, "gpt-4o")]
    assert row(router, attempt.node.id, "gpt-4o")["breaker"] == "open"


def test_breaker_is_per_node_and_model() -> None:
    router, config, _ = make_router(threshold=1)
    for attempt in drain(router.plan(model(config, "gpt-4o")), router=router):
        assert attempt.model.id == "gpt-4o"
    assert {a.node.id for a in drain(router.plan(model(config, "sonnet"), []), router=router)} == {"a", "b", "c"}


def test_all_nodes_open_for_primary_and_fallbacks_allows_nothing() -> None:
    router, config, _ = make_router(threshold=1)
    drain(router.plan(model(config, "sonnet")), router=router)
    assert router.plan(model(config, "sonnet")).next() is None


def test_model_without_candidates_moves_on_to_fallbacks() -> None:
    router, config, _ = make_router(threshold=1)
    drain(router.plan(model(config, "sonnet"), []), router=router)
    attempt = router.plan(model(config, "sonnet")).next()
    assert attempt is not None and attempt.model.id == "gpt-4o" and attempt.is_fallback


def test_rate_limited_counts_as_a_failure() -> None:
    router, config, _ = make_router(threshold=1)
    attempt = router.plan(model(config, "mini")).next()
    assert attempt is not None
    router.report(attempt, Outcome.RATE_LIMITED)
    assert row(router, "c", "mini")["breaker"] == "open"


def test_client_error_and_cancelled_do_not_count() -> None:
    router, config, _ = make_router(threshold=1)
    for outcome in (Outcome.CLIENT_ERROR, Outcome.CANCELLED):
        attempt = router.plan(model(config, "mini")).next()
        assert attempt is not None
        router.report(attempt, outcome)
    assert row(router, "c", "mini")["breaker"] == "closed"
    assert (row(router, "c", "mini")["recent_successes"], row(router, "c", "mini")["recent_failures"]) == (0, 0)


def open_mini(threshold: int = 1) -> tuple[Router, Config, FakeClock]:
    """A router whose only 'mini' node has just opened, and whose open_s has passed."""
    router, config, clock = make_router(threshold=threshold)
    for attempt in [router.plan(model(config, "mini")).next() for _ in range(threshold)]:
        assert attempt is not None
        router.report(attempt, Outcome.FAILURE)
    clock.now += 30
    return router, config, clock


def test_half_open_gives_exactly_one_probe() -> None:
    router, config, _ = open_mini()
    probe = router.plan(model(config, "mini")).next()
    assert probe is not None and probe.node.id == "c"
    assert router.plan(model(config, "mini")).next() is None
    router.report(probe, Outcome.SUCCESS, ttfb_s=0.01)
    assert row(router, "c", "mini")["breaker"] == "closed"
    assert router.plan(model(config, "mini")).next() is not None


def test_failed_probe_reopens() -> None:
    router, config, clock = open_mini()
    probe = router.plan(model(config, "mini")).next()
    assert probe is not None
    router.report(probe, Outcome.FAILURE)
    assert row(router, "c", "mini")["breaker"] == "open"
    clock.now += 29
    assert router.plan(model(config, "mini")).next() is None


@pytest.mark.parametrize("outcome", [Outcome.CANCELLED, Outcome.CLIENT_ERROR])
def test_probe_without_verdict_frees_the_slot(outcome: Outcome) -> None:
    router, config, _ = open_mini()
    probe = router.plan(model(config, "mini")).next()
    assert probe is not None
    router.report(probe, outcome)
    assert row(router, "c", "mini")["breaker"] == "half_open"
    assert router.plan(model(config, "mini")).next() is not None  # the next request probes


def test_half_open_node_gets_the_probe_before_healthy_ones() -> None:
    router, config, clock = make_router(threshold=1)
    attempt = router.plan(model(config, "gpt-4o"), []).next()
    assert attempt is not None
    router.report(attempt, Outcome.FAILURE)
    clock.now += 30
    probe = router.plan(model(config, "gpt-4o"), []).next()
    assert probe is not None and probe.node.id == attempt.node.id


def test_only_the_probe_decides_a_half_open_breaker() -> None:
    router, config, clock = make_router(threshold=2)
    stale, first, second = (router.plan(model(config, "mini")).next() for _ in range(3))
    assert stale and first and second
    router.report(first, Outcome.FAILURE)
    router.report(second, Outcome.FAILURE)
    clock.now += 30
    probe = router.plan(model(config, "mini")).next()
    assert probe is not None
    router.report(stale, Outcome.SUCCESS)  # admitted before the breaker opened
    assert row(router, "c", "mini")["breaker"] == "half_open"
    assert router.plan(model(config, "mini")).next() is None
    router.report(probe, Outcome.FAILURE)
    assert row(router, "c", "mini")["breaker"] == "open"


# -- Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [Outcome.RATE_LIMITED, Outcome.FAILURE])
def test_retry_after_is_honoured_then_expires(outcome: Outcome) -> None:
    router, config, clock = make_router(threshold=100)
    attempt = router.plan(model(config, "gpt-4o"), []).next()
    assert attempt is not None
    router.report(attempt, outcome, retry_after_s=10)
    other = {"a": "b", "b": "a"}[attempt.node.id]
    plan = router.plan(model(config, "gpt-4o"), [])
    assert pairs(drain(plan, router=router)) == [(other, "gpt-4o")]  # skipped even as the last one left
    assert row(router, attempt.node.id, "gpt-4o")["retry_after_s"] == 10
    clock.now += 10
    assert {a.node.id for a in drain(router.plan(model(config, "gpt-4o"), []), router=router)} == {"a", "b"}
    assert row(router, attempt.node.id, "gpt-4o")["retry_after_s"] is None


# -- strategies through the router ------------------------------------------------------


def test_round_robin_follows_weights() -> None:
    router, config, _ = make_router(threshold=100)
    picks = []
    for _ in range(300):
        attempt = router.plan(model(config, "gpt-4o")).next()
        assert attempt is not None
        router.report(attempt, Outcome.SUCCESS, ttfb_s=0.01)
        picks.append(attempt.node.id)
    assert Counter(picks) == {"a": 200, "b": 100}


def test_least_latency_learns_from_reported_ttfb() -> None:
    router, config, _ = make_router(strategy="least-latency", threshold=100)
    latency = {"a": 0.060, "b": 0.005}
    picks = []
    for _ in range(220):
        attempt = router.plan(model(config, "gpt-4o")).next()
        assert attempt is not None
        router.report(attempt, Outcome.SUCCESS, ttfb_s=latency[attempt.node.id])
        picks.append(attempt.node.id)
    assert picks[20:].count("b") >= 160
    assert row(router, "b", "gpt-4o")["ewma_ttfb_ms"] == pytest.approx(5.0)


# -- bookkeeping ---------------------------------------------------------------------


def test_in_flight_counts_from_next_to_report() -> None:
    router, config, _ = make_router(threshold=100)
    first = router.plan(model(config, "mini")).next()
    second = router.plan(model(config, "mini")).next()
    assert first and second
    assert row(router, "c", "mini")["in_flight"] == 2
    router.report(first, Outcome.SUCCESS)
    assert row(router, "c", "mini")["in_flight"] == 1
    router.report(second, Outcome.CANCELLED)
    assert row(router, "c", "mini")["in_flight"] == 0


def test_status_rows() -> None:
    router, config, _ = make_router(threshold=2)
    for outcome, ttfb in ((Outcome.SUCCESS, 0.010), (Outcome.SUCCESS, 0.020), (Outcome.FAILURE, None)):
        attempt = router.plan(model(config, "mini")).next()
        assert attempt is not None
        router.report(attempt, outcome, ttfb_s=ttfb)
    router.plan(model(config, "mini")).next()
    assert [(r["node"], r["model"]) for r in router.status()] == [
        ("a", "claude-sonnet-4-6"), ("a", "gpt-4o"), ("b", "claude-sonnet-4-6"), ("b", "gpt-4o"),
        ("c", "claude-sonnet-4-6"), ("c", "mini")]
    assert row(router, "c", "mini") == {
        "node": "c", "model": "mini", "upstream_model": "mini", "provider": "mock", "weight": 1,
        "breaker": "closed", "ewma_ttfb_ms": pytest.approx(13.0), "in_flight": 1,
        "recent_successes": 2, "recent_failures": 1, "retry_after_s": None}
    assert row(router, "a", "gpt-4o")["ewma_ttfb_ms"] is None


def test_plan_tried_and_notes() -> None:
    router, config, _ = make_router(threshold=100)
    plan = router.plan(model(config, "sonnet"), [model(config, "mini")])
    first, second, third, fourth = (plan.next() for _ in range(4))
    assert first and second and third and fourth
    plan.note(first, "HTTP 500")  # noted before the report
    router.report(first, Outcome.FAILURE)
    router.report(second, Outcome.RATE_LIMITED)
    plan.note(second, "HTTP 429")  # and after
    router.report(third, Outcome.FAILURE)
    assert plan.tried == [(first.node.id, "claude-sonnet-4-6", "failure: HTTP 500"),
                          (second.node.id, "claude-sonnet-4-6", "rate_limited: HTTP 429"),
                          (third.node.id, "claude-sonnet-4-6", "failure")]
    plan.note(fourth, "timeout before first byte")
    router.report(fourth, Outcome.FAILURE)
    assert plan.tried[-1] == ("c", "mini", "failure: timeout before first byte")


def test_report_rejects_attempts_it_did_not_hand_out() -> None:
    router, config, _ = make_router()
    node = config.nodes[2]
    with pytest.raises(TypeError):
        router.report(Attempt(node, model(config, "mini"), "mini", False), Outcome.SUCCESS)


def test_attempts_are_hashable_and_distinct() -> None:
    router, config, _ = make_router(threshold=100)
    first = router.plan(model(config, "mini")).next()
    second = router.plan(model(config, "mini")).next()
    assert first is not None and second is not None
    assert first != second and len({first, second}) == 2


# -- reload ---------------------------------------------------------------------------


def test_reload_keeps_state_of_surviving_pairs() -> None:
    router, config, clock = make_router(strategy="least-latency", threshold=1)
    failed = router.plan(model(config, "gpt-4o"), []).next()
    assert failed is not None
    router.report(failed, Outcome.FAILURE)  # opens (failed, gpt-4o)
    timed = router.plan(model(config, "mini")).next()
    pending = router.plan(model(config, "mini")).next()
    assert timed and pending
    router.report(timed, Outcome.SUCCESS, ttfb_s=0.040)
    nodes = dict(NODES)
    nodes["c"] = (5, {"mini": "mini-v2"})  # c stops serving sonnet, new weight and upstream id
    nodes["d"] = (1, {"gpt-4o": "gpt-4o"})
    router.reload(make_config(nodes, strategy="least-latency", threshold=1))
    assert row(router, failed.node.id, "gpt-4o")["breaker"] == "open"
    mini = row(router, "c", "mini")
    assert (mini["ewma_ttfb_ms"], mini["in_flight"], mini["weight"], mini["upstream_model"]) == (
        pytest.approx(40.0), 1, 5, "mini-v2")
    assert row(router, "d", "gpt-4o")["breaker"] == "closed"
    assert not any(r["node"] == "c" and r["model"] == "claude-sonnet-4-6" for r in router.status())
    router.report(pending, Outcome.SUCCESS)  # an attempt from before the reload still settles
    assert row(router, "c", "mini")["in_flight"] == 0
    clock.now += 30  # and the kept breaker still recovers on schedule
    probe = router.plan(model(config, "gpt-4o"), []).next()
    assert probe is not None and probe.node.id == failed.node.id


def test_reload_with_new_breaker_settings_restarts_breakers() -> None:
    router, config, _ = make_router(threshold=1)
    attempt = router.plan(model(config, "mini")).next()
    assert attempt is not None
    router.report(attempt, Outcome.FAILURE)
    router.reload(make_config(threshold=3))
    assert row(router, "c", "mini")["breaker"] == "closed"
