"""Model -> the attempts one request may make: nodes, breakers, fallbacks.

The pipeline asks for a ``Plan`` per request and pulls attempts from it one at
a time; every attempt it gets, it reports exactly once. Choosing lazily means
a failover attempt sees the breakers and latencies as they are when it is
made, not as they were when the request arrived.

Everything that can be worked out from the config alone (which nodes serve a
model, in which order, its resolved fallbacks, each pair's breaker) is built
at construction and on reload, so ``next``/``report`` only walk a model's few
nodes. Pure Python: no I/O, clock and randomness injected.
"""

from __future__ import annotations

import random
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

from gateway.config import Config, Model, Node, normalize_model_id
from gateway.routing.balancer import Balancer, LeastLatency, SmoothWeightedRoundRobin
from gateway.routing.breaker import Breaker, BreakerState

# /admin/nodes reports successes and failures among a pair's last this-many
# verdicts: a count, not a time window, so a quiet node still shows how its
# last requests went and the bookkeeping is one deque append per report.
RECENT_OUTCOMES = 100


@dataclass(frozen=True, eq=False, slots=True)
class Attempt:
    """One try of one node for one model.

    ``eq=False``: two attempts are two events even on the same node, and the
    pipeline can key dicts and sets by them (a field-wise hash would fail on
    ``Node.models``, a dict).
    """

    node: Node
    model: Model  # the public model actually served (a fallback's when falling back): billing uses its prices
    upstream_model: str  # node.models[normalized model id]
    is_fallback: bool


class Outcome(str, Enum):
    SUCCESS = "success"  # got a first byte / a good response
    FAILURE = "failure"  # connect error, timeout, 5xx, reset before first byte, mid-stream death
    RATE_LIMITED = "rate_limited"  # 429: a failure, and honour retry_after
    CLIENT_ERROR = "client_error"  # the request itself is bad (400...): not the node's fault
    CANCELLED = "cancelled"  # no verdict (client disconnected, hedge loser)


@dataclass(eq=False, slots=True)
class _Pair:
    """Everything the router remembers about one (node, model); survives reloads."""

    node: Node
    upstream_model: str
    breaker: Breaker
    latency: LeastLatency  # the model's tracker
    in_flight: int = 0
    blocked_until: float = float("-inf")  # Retry-After
    probe: Attempt | None = None  # the attempt holding the half-open probe slot
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT_OUTCOMES))


@dataclass(eq=False, slots=True)
class _Route:
    """A model's nodes in config order, its balancer, and its default failover chain."""

    model: Model
    pairs: tuple[_Pair, ...]
    by_node: dict[str, _Pair]
    chooser: Balancer
    latency: LeastLatency
    chain: tuple[_Route, ...] = ()  # itself, then its configured fallbacks


@dataclass(frozen=True, eq=False, slots=True)
class _Issued(Attempt):
    """An Attempt as handed out: it remembers its pair and plan so report() needs no lookup.

    The plan is held weakly: the plan keeps its reported attempts, and a strong
    reference back would make every request a reference cycle that only the
    cyclic garbage collector frees (measured: full collections of 35-78 ms
    every half second under load).
    """

    pair: _Pair
    plan: "weakref.ReferenceType[Plan]"


class Router:
    """Plans attempts per request and learns from their outcomes."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._routes: dict[str, _Route] = {}
        self._build(config, reset_breakers=False)

    def plan(self, model: Model, fallback_models: Sequence[Model] | None = None) -> Plan:
        """Attempts for ``model``, then its fallbacks; request ``fallback_models`` replace the configured ones.

        Fallbacks are not transitive: a fallback's own fallbacks are not tried,
        so the chain a client sees is the one written in config (or request).
        """
        primary = self._routes.get(normalize_model_id(model.id))
        if fallback_models is None:
            return Plan(self, primary, primary.chain if primary is not None else ())
        chain: list[_Route] = [primary] if primary is not None else []
        for fallback in fallback_models:
            route = self._routes.get(normalize_model_id(fallback.id))
            if route is not None and route not in chain:
                chain.append(route)
        return Plan(self, primary, tuple(chain))

    def report(self, attempt: Attempt, outcome: Outcome, ttfb_s: float | None = None,
               retry_after_s: float | None = None) -> None:
        """Settle an attempt: in-flight count, breaker, latency, Retry-After, the plan's log.

        Only the probe's verdict moves a half-open breaker: an attempt admitted
        before the breaker opened may finish during the probe, and its word is
        about the node as it was then.
        """
        if not isinstance(attempt, _Issued):
            raise TypeError("report() takes the attempts handed out by Plan.next()")
        pair = attempt.pair
        pair.in_flight -= 1
        breaker = pair.breaker
        is_probe = pair.probe is attempt
        if is_probe:
            pair.probe = None
        counts = is_probe or not breaker.probe_in_flight
        if outcome is Outcome.SUCCESS:
            pair.recent.append(True)
            if ttfb_s is not None:
                pair.latency.observe(pair.node.id, ttfb_s)
            if counts:
                breaker.record_success()
        elif outcome is Outcome.FAILURE or outcome is Outcome.RATE_LIMITED:
            pair.recent.append(False)
            if counts:
                breaker.record_failure()
        elif is_probe:
            breaker.release()
        if retry_after_s:
            pair.blocked_until = max(pair.blocked_until, self._clock() + retry_after_s)
        plan = attempt.plan()
        if plan is not None:
            plan._reported.append((attempt, outcome))

    def reload(self, config: Config) -> None:
        """Adopt new nodes, models and weights, keeping what was learned about surviving pairs.

        Breakers, in-flight counts, Retry-After and latencies carry over for
        every (node id, model) pair that still exists. If the breaker settings
        changed, breakers restart closed: a count against the old threshold
        means nothing under the new one. Round-robin phase restarts (at most one
        cycle of skew). Plans already under way finish on the old routes.
        """
        self._build(config, reset_breakers=config.circuit_breaker != self._config.circuit_breaker)

    def status(self) -> list[dict[str, object]]:
        """One row per (node, model), nodes in config order, for GET /admin/nodes.

        Keys: node, model (public id), upstream_model, provider, weight,
        breaker ("closed" | "open" | "half_open"), ewma_ttfb_ms (None before a
        first byte was timed), in_flight, recent_successes and recent_failures
        (among the pair's last RECENT_OUTCOMES verdicts; client errors and
        cancellations are neither), retry_after_s (seconds still blocked by a
        Retry-After, or None).
        """
        now = self._clock()
        rows: list[dict[str, object]] = []
        for node in self._config.nodes:
            for key in node.models:
                pair = self._pairs[(node.id, key)]
                ewma = pair.latency.ewma(node.id)
                successes = sum(pair.recent)
                rows.append({
                    "node": node.id,
                    "model": self._routes[key].model.id,
                    "upstream_model": pair.upstream_model,
                    "provider": node.provider,
                    "weight": node.weight,
                    "breaker": pair.breaker.state.value,
                    "ewma_ttfb_ms": None if ewma is None else ewma * 1000.0,
                    "in_flight": pair.in_flight,
                    "recent_successes": successes,
                    "recent_failures": len(pair.recent) - successes,
                    "retry_after_s": pair.blocked_until - now if pair.blocked_until > now else None,
                })
        return rows

    # -- internals used by Plan -------------------------------------------------

    def _issue(self, plan: Plan, route: _Route, used: list[str], is_fallback: bool) -> Attempt | None:
        """Pick a usable node of ``route`` not in ``used`` and hand out an attempt on it.

        A half-open node that nobody is probing gets the attempt outright:
        recovery should not wait for the balancer's luck, and it costs one
        request per ``open_s`` at most.
        """
        now = self._clock()
        chosen: _Pair | None = None
        probe = False
        names: list[str] = []
        for pair in route.pairs:
            node_id = pair.node.id
            if node_id in used or pair.blocked_until > now:
                continue
            state = pair.breaker.state
            if state is BreakerState.CLOSED:
                names.append(node_id)
            elif state is BreakerState.HALF_OPEN and not pair.breaker.probe_in_flight:
                chosen, probe = pair, True
                break
        if chosen is None:
            if not names:
                return None
            chosen = route.by_node[route.chooser.choose(names)]
        attempt = _Issued(chosen.node, route.model, chosen.upstream_model, is_fallback, chosen, weakref.ref(plan))
        if probe:
            chosen.breaker.allow()  # claims the probe slot
            chosen.probe = attempt
        chosen.in_flight += 1
        return attempt

    def _new_breaker(self, config: Config) -> Breaker:
        settings = config.circuit_breaker
        return Breaker(settings.failure_threshold, settings.open_s, self._clock)

    def _build(self, config: Config, reset_breakers: bool) -> None:
        """Precompute routes and chains; reuse the _Pair of every surviving (node, model)."""
        pairs: dict[tuple[str, str], _Pair] = {}
        routes: dict[str, _Route] = {}
        for key, model in config.models.items():
            serving = [node for node in config.nodes if key in node.models]
            old_route = self._routes.get(key)
            if old_route is None:
                latency = LeastLatency(self._rng)
            else:
                latency = old_route.latency
                latency.retain({node.id for node in serving})
            route_pairs: list[_Pair] = []
            for node in serving:
                pair = self._pairs.get((node.id, key))
                if pair is None:
                    pair = _Pair(node, node.models[key], self._new_breaker(config), latency)
                elif reset_breakers:
                    pair.breaker, pair.probe = self._new_breaker(config), None
                pair.node, pair.upstream_model, pair.latency = node, node.models[key], latency
                pairs[(node.id, key)] = pair
                route_pairs.append(pair)
            chooser: Balancer = latency if config.routing.strategy == "least-latency" else \
                SmoothWeightedRoundRobin({node.id: node.weight for node in serving})
            routes[key] = _Route(model, tuple(route_pairs), {p.node.id: p for p in route_pairs}, chooser, latency)
        for route in routes.values():
            chain = [route]
            for name in route.model.fallbacks:
                fallback = config.find_model(name)
                target = None if fallback is None else routes.get(normalize_model_id(fallback.id))
                if target is not None and target not in chain:
                    chain.append(target)
            route.chain = tuple(chain)
        self._config, self._pairs, self._routes = config, pairs, routes
        self._max_attempts = config.routing.max_attempts


class Plan:
    """The lazy sequence of attempts for one request.

    Selection happens at next() time, so breaker states and latencies are
    current when the failover attempt is chosen. Up to ``routing.max_attempts``
    distinct nodes per model, then the next model of the chain.
    """

    __slots__ = ("_router", "_primary", "_chain", "_index", "_made", "_used", "_reported", "_notes", "__weakref__")

    def __init__(self, router: Router, primary: _Route | None, chain: tuple[_Route, ...]) -> None:
        self._router = router
        self._primary = primary
        self._chain = chain
        self._index = 0
        self._made = 0
        self._used: list[str] = []  # node ids tried for the current model
        self._reported: list[tuple[Attempt, Outcome]] = []
        self._notes: dict[Attempt, str] | None = None

    def next(self) -> Attempt | None:
        """The next attempt, or None when every model of the chain is exhausted or has no usable node."""
        router = self._router
        while self._index < len(self._chain):
            route = self._chain[self._index]
            if self._made < router._max_attempts:
                attempt = router._issue(self, route, self._used, route is not self._primary)
                if attempt is not None:
                    self._made += 1
                    self._used.append(attempt.node.id)
                    return attempt
            self._index += 1
            self._made = 0
            self._used.clear()
        return None

    def note(self, attempt: Attempt, detail: str) -> None:
        """Attach a short detail ("HTTP 500", "timeout before first byte") to an attempt, before or after report."""
        if self._notes is None:
            self._notes = {}
        self._notes[attempt] = detail

    @property
    def tried(self) -> list[tuple[str, str, str]]:
        """(node id, public model id, outcome[: detail]) per reported attempt, in report order.

        Built on read: only the error path (the 502 message) reads it.
        """
        notes = self._notes or {}
        return [(attempt.node.id, attempt.model.id,
                 f"{outcome.value}: {notes[attempt]}" if attempt in notes else outcome.value)
                for attempt, outcome in self._reported]
