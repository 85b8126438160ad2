"""Attempt verdicts: a reason from a closed set decides 502 vs 504, never the message text."""

from __future__ import annotations

from gateway.routing.router import Outcome
from gateway.upstream.exchange import Phase, UpstreamError
from gateway.verdict import Reason, Verdict


def test_transport_failures_keep_their_phase_and_reason() -> None:
    verdict = Verdict.of_upstream_error(UpstreamError(Phase.FIRST_BYTE, "timeout"))
    assert (verdict.outcome, verdict.reason, verdict.phase) == (Outcome.FAILURE, Reason.TIMEOUT, Phase.FIRST_BYTE)
    assert verdict.detail == "timed out before the first byte"
    reset = Verdict.of_upstream_error(UpstreamError(Phase.CONNECT, "connect", "refused: timed out"))
    assert reset.reason is Reason.CONNECT  # the words "timed out" in a detail do not make it a timeout


def test_statuses() -> None:
    assert Verdict.of_status(429, 3.0) == Verdict(Outcome.RATE_LIMITED, Reason.HTTP_STATUS, "HTTP 429",
                                                  Phase.FIRST_BYTE, 3.0)
    assert Verdict.of_status(503).outcome is Outcome.FAILURE
    assert Verdict.of_status(422).outcome is Outcome.CLIENT_ERROR and Verdict.of_status(422).reason is \
        Reason.CLIENT_FAULT
