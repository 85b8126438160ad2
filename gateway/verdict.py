"""The verdict on one upstream attempt: typed, settled exactly once, counted on the way.

Every attempt the router hands out (``Plan.next``) ends in one ``Verdict``:
its outcome (what the router and its breaker learn), the phase it reached,
a reason from a closed set, the node's Retry-After and the time to first
byte. ``settle`` is the one place a verdict is reported to the router and
counted in ``infermesh_upstream_attempts_total``; nothing else calls
``Router.report``. Decisions read the reason, never the text: the pipeline
answers 504 rather than 502 when every attempt's reason is ``TIMEOUT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.observability.metrics import Metrics
from gateway.routing.router import Attempt, Outcome, Plan, Router
from gateway.upstream.exchange import Phase, UpstreamError


class Reason(Enum):
    """Why an attempt ended as it did; the value is how the 502 message says it."""

    OK = "ok"
    CONNECT = "connection failed"
    TIMEOUT = "timed out"
    RESET = "connection reset"
    ABORTED = "aborted"
    TOO_LARGE = "response too large"
    HTTP_STATUS = "error status"  # a 5xx, 429, 401/403/404 from the node (detail: "HTTP 503")
    BAD_RESPONSE = "bad response"  # a 2xx that is not what it claims (detail says how)
    CLIENT_FAULT = "client fault"  # 400/413/422: the request's fault, returned to the client as is
    UNSUPPORTED = "unsupported"  # this node's protocol cannot express the request
    OVERLOADED = "overloaded"  # no upstream transfer slot free: the gateway's limit, not the node's
    CANCELLED = "cancelled"  # no verdict on the node: the client left, a hedge lost, the gateway stopped


_UPSTREAM_REASONS = {"connect": Reason.CONNECT, "timeout": Reason.TIMEOUT, "reset": Reason.RESET,
                     "aborted": Reason.ABORTED, "too_large": Reason.TOO_LARGE}
_WHERE = {Phase.CONNECT: "while connecting", Phase.FIRST_BYTE: "before the first byte",
          Phase.MID_STREAM: "mid-stream"}


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: Reason
    detail: str = ""  # what the 502 message says about this attempt
    phase: Phase | None = None
    retry_after_s: float | None = None
    ttfb_s: float | None = None

    @classmethod
    def success(cls, ttfb_s: float | None = None) -> Verdict:
        return cls(Outcome.SUCCESS, Reason.OK, ttfb_s=ttfb_s)

    @classmethod
    def cancelled(cls, detail: str = "") -> Verdict:
        return cls(Outcome.CANCELLED, Reason.CANCELLED, detail)

    @classmethod
    def failure(cls, reason: Reason, detail: str, retry_after_s: float | None = None) -> Verdict:
        return cls(Outcome.FAILURE, reason, detail, retry_after_s=retry_after_s)

    @classmethod
    def of_upstream_error(cls, exc: UpstreamError) -> Verdict:
        reason = _UPSTREAM_REASONS.get(exc.reason)
        text = reason.value if reason is not None else exc.reason
        return cls(Outcome.FAILURE, reason or Reason.BAD_RESPONSE, f"{text} {_WHERE[exc.phase]}", exc.phase)

    @classmethod
    def of_status(cls, status: int, retry_after_s: float | None = None) -> Verdict:
        """A non-2xx status from the node: 429 is rate limiting, 400/413/422 the client's fault, else a failure."""
        if status in CLIENT_FAULT_STATUSES:
            return cls(Outcome.CLIENT_ERROR, Reason.CLIENT_FAULT, f"HTTP {status}")
        outcome = Outcome.RATE_LIMITED if status == 429 else Outcome.FAILURE
        return cls(outcome, Reason.HTTP_STATUS, f"HTTP {status}", Phase.FIRST_BYTE, retry_after_s)


CLIENT_FAULT_STATUSES = frozenset({400, 413, 422})  # the request itself is bad: same answer anywhere


def describe(exc: UpstreamError) -> str:
    """An upstream transport failure in words ("timed out before the first byte")."""
    return Verdict.of_upstream_error(exc).detail


def settle(router: Router, metrics: Metrics, attempt: Attempt, verdict: Verdict, plan: Plan | None = None) -> Verdict:
    """Report the verdict to the router (breaker, latency, Retry-After, the plan's log) and count it."""
    router.report(attempt, verdict.outcome, verdict.ttfb_s, verdict.retry_after_s)
    metrics.child(metrics.attempts, attempt.node.id, verdict.outcome.value).inc()
    if plan is not None and verdict.detail:
        plan.note(attempt, verdict.detail)
    return verdict
