from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.routing.balancer import (
    EWMA_ALPHA,
    EXPLORE_SHARE,
    LeastLatency,
    SmoothWeightedRoundRobin,
)

# -- smooth weighted round robin ----------------------------------------------


@pytest.mark.parametrize("picks", [300, 3000])
def test_swrr_gives_exact_shares(picks: int) -> None:
    balancer = SmoothWeightedRoundRobin({"a": 2, "b": 1})
    counts = Counter(balancer.choose(["a", "b"]) for _ in range(picks))
    assert counts == {"a": picks * 2 // 3, "b": picks // 3}


def test_swrr_interleaves_instead_of_bursting() -> None:
    balancer = SmoothWeightedRoundRobin({"a": 2, "b": 1})
    sequence = "".join(balancer.choose(["a", "b"]) for _ in range(3000))
    assert sequence.startswith("abaaba")
    assert "aaa" not in sequence
    assert all(sequence[i:i + 3].count("a") == 2 for i in range(0, 3000, 3))


def test_swrr_matches_nginx_sequence() -> None:
    balancer = SmoothWeightedRoundRobin({"a": 5, "b": 1, "c": 1})
    assert "".join(balancer.choose(["a", "b", "c"]) for _ in range(7)) == "aabacaa"


def test_swrr_only_picks_among_candidates() -> None:
    balancer = SmoothWeightedRoundRobin({"a": 5, "b": 1, "c": 1})
    assert {balancer.choose(["b", "c"]) for _ in range(10)} == {"b", "c"}
    assert balancer.choose(["c"]) == "c"


# -- least latency --------------------------------------------------------------


def test_ewma_starts_at_first_sample_then_moves_by_alpha() -> None:
    balancer = LeastLatency(random.Random(0))
    assert balancer.ewma("a") is None
    balancer.observe("a", 0.100)
    assert balancer.ewma("a") == pytest.approx(0.100)
    balancer.observe("a", 0.200)
    assert balancer.ewma("a") == pytest.approx(0.100 + EWMA_ALPHA * 0.100)


def test_stale_average_gives_way_to_a_probe() -> None:
    balancer = LeastLatency(random.Random(0))
    balancer.observe("a", 0.200)
    for _ in range(19):
        balancer.observe("b", 0.060)
    balancer.observe("a", 0.005)  # 20 samples since a's last: weighs 1 - 0.7**20
    assert balancer.ewma("a") == pytest.approx(0.005 + (1 - EWMA_ALPHA) ** 20 * 0.195)
    assert balancer.ewma("a") < 0.006


def test_retain_forgets_only_departed_nodes() -> None:
    balancer = LeastLatency(random.Random(0))
    balancer.observe("a", 0.010)
    balancer.observe("b", 0.020)
    balancer.retain({"b", "c"})
    assert balancer.ewma("a") is None
    assert balancer.ewma("b") == pytest.approx(0.020)


def test_untried_nodes_are_chosen_first_in_order() -> None:
    balancer = LeastLatency(random.Random(0))
    balancer.observe("a", 0.001)
    assert balancer.choose(["a", "b", "c"]) == "b"
    balancer.observe("b", 0.001)
    assert balancer.choose(["a", "b", "c"]) == "c"


def test_exploration_share_is_bounded() -> None:
    balancer = LeastLatency(random.Random(7))
    for node, latency in (("a", 0.005), ("b", 0.060), ("c", 0.100)):
        balancer.observe(node, latency)
    counts = Counter(balancer.choose(["a", "b", "c"]) for _ in range(20000))
    explored = (counts["b"] + counts["c"]) / 20000
    assert EXPLORE_SHARE * 0.8 < explored < EXPLORE_SHARE * 1.2
    assert abs(counts["b"] - counts["c"]) < 0.2 * counts["b"]  # exploration is spread over the others


def simulate(balancer: LeastLatency, latency_s: dict[str, float], picks: int) -> list[str]:
    """Each pick is answered at its node's current latency, as the router would report it."""
    chosen = []
    for _ in range(picks):
        node = balancer.choose(list(latency_s))
        balancer.observe(node, latency_s[node])
        chosen.append(node)
    return chosen


@pytest.mark.parametrize("seed", range(10))
def test_fast_node_gets_most_traffic(seed: int) -> None:
    balancer = LeastLatency(random.Random(seed))
    latency = {"slow": 0.060, "fast": 0.005}
    simulate(balancer, latency, 20)  # warm-up
    picks = simulate(balancer, latency, 200)
    assert picks.count("fast") >= 160


@pytest.mark.parametrize("seed", range(10))
def test_traffic_moves_within_100_picks_when_fast_node_slows(seed: int) -> None:
    balancer = LeastLatency(random.Random(seed))
    latency = {"slow": 0.060, "fast": 0.005}
    simulate(balancer, latency, 220)
    latency["fast"] = 0.200
    after = simulate(balancer, latency, 100)
    assert after[:10].count("slow") >= 5  # moved within a few picks
    assert after[10:].count("slow") >= 80  # and stays


@pytest.mark.parametrize("seed", range(10))
def test_recovered_node_is_noticed_through_probes(seed: int) -> None:
    balancer = LeastLatency(random.Random(seed))
    latency = {"a": 0.200, "b": 0.060}
    simulate(balancer, latency, 200)
    latency["a"] = 0.005
    after = simulate(balancer, latency, 200)
    assert after[100:].count("a") >= 60  # noticed within the first 100 picks (else ~5 would be)
