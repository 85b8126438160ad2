"""Which of a model's usable nodes gets the next attempt.

One balancer instance per model, keyed by node id, so a node that is fast for
one model and slow for another is judged per model. ``choose`` is handed only
usable candidates (breaker, Retry-After and already-tried nodes are filtered
by the router), in config order, never empty.
"""

from __future__ import annotations

import math
import random
from typing import Collection, Mapping, Protocol, Sequence

# Weight of the newest time-to-first-byte sample when the node's previous one
# is the model's last sample too (the usual case for the best node). At 0.3,
# when the best node slows from 5 to 200 ms its average passes a 60 ms rival on
# the first slow sample (5 + 0.3 * 195 = 63.5) and traffic moves at once, while
# one sample still moves the average only part of the way, which damps noise.
#
# An average goes stale while its node is not picked, so a sample counts as if
# the missed samples had been the same value: weight 1 - (1 - alpha) ** gap,
# where gap counts the model's samples since this node's last one. A probe of a
# node unpicked for 20 samples weighs 0.999: one probe tells whether a node
# recovered, and one 2 s outlier on the best node is undone by its next probe.
EWMA_ALPHA = 0.3

# Share of picks that go to a non-best candidate (uniformly among the others),
# so a slower node's average stays current and a recovered or newly fast node
# is noticed. It is both the cost (those requests see a slower node) and the
# refresh rate: with two nodes the other is sampled every ~20 requests, and one
# probe suffices to notice a recovery (see EWMA_ALPHA). The best node keeps
# ~95 % of traffic: the contract's 80 % of 200 is ten standard deviations away,
# room left for what a real run adds (warm-up, concurrency).
EXPLORE_SHARE = 0.05


class Balancer(Protocol):
    """What the router needs of a strategy: candidates in, one of them out."""

    def choose(self, candidates: Sequence[str]) -> str: ...


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: exact shares, spread out, not in bursts.

    Every pick adds each candidate's weight to its running score, takes the
    highest, and charges the winner the sum of the weights. Weights 2:1 give
    A B A A B A ...: exactly 2:1 over every three picks, never three A in a row.
    A candidate left out of a pick (tried, open breaker) keeps its score, as in
    nginx.
    """

    __slots__ = ("_weights", "_score")

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights = dict(weights)
        self._score = dict.fromkeys(weights, 0)

    def choose(self, candidates: Sequence[str]) -> str:
        weights, score = self._weights, self._score
        total = 0
        best = candidates[0]
        best_score = -math.inf
        for node in candidates:
            weight = weights[node]
            current = score[node] + weight
            score[node] = current
            total += weight
            if current > best_score:
                best, best_score = node, current
        score[best] -= total
        return best


class LeastLatency:
    """Prefer the lowest EWMA of time to first byte; explore now and then.

    A node with no sample yet is chosen first: an unmeasured node is exactly
    the one we know least about, and the first sample settles it. Load is not
    factored in: upstream LLM APIs have capacity far beyond one gateway's share.

    The router also keeps one per model under round-robin, only for
    ``observe``/``ewma``, so /admin/nodes shows latencies whatever the strategy.
    """

    __slots__ = ("_rng", "_ewma", "_last_sample", "_samples")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._ewma: dict[str, float] = {}
        self._last_sample: dict[str, int] = {}  # node -> value of _samples at its last sample
        self._samples = 0

    def ewma(self, node_id: str) -> float | None:
        """The moving average in seconds, or None before the first sample."""
        return self._ewma.get(node_id)

    def retain(self, node_ids: Collection[str]) -> None:
        """Forget nodes that no longer serve the model (config reload), keep the rest as they are."""
        for node_id in [node for node in self._ewma if node not in node_ids]:
            del self._ewma[node_id]
            self._last_sample.pop(node_id, None)

    def observe(self, node_id: str, ttfb_s: float) -> None:
        self._samples += 1
        previous = self._ewma.get(node_id)
        if previous is None:
            self._ewma[node_id] = ttfb_s
        else:
            keep = (1.0 - EWMA_ALPHA) ** (self._samples - self._last_sample.get(node_id, 0))
            self._ewma[node_id] = ttfb_s + keep * (previous - ttfb_s)
        self._last_sample[node_id] = self._samples

    def choose(self, candidates: Sequence[str]) -> str:
        ewma = self._ewma
        best_index = 0
        best = math.inf
        for index, node in enumerate(candidates):
            value = ewma.get(node)
            if value is None:
                return node
            if value < best:
                best, best_index = value, index
        count = len(candidates)
        if count > 1 and self._rng.random() < EXPLORE_SHARE:
            other = self._rng.randrange(count - 1)  # uniform over the others, no list built
            return candidates[other + (other >= best_index)]
        return candidates[best_index]
