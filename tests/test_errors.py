"""The one error model: kinds carry status/retryable/breaker, rendering per protocol happens in one place."""

from __future__ import annotations

import json

import pytest

from gateway.errors import ErrorKind, ledger_error
from gateway.ledger.errors import (
    AccountExists,
    InsufficientBalance,
    InvalidLedgerArgument,
    KeyLimitExceeded,
    KeyRevoked,
    LedgerError,
    LedgerUnavailable,
    RateLimited,
    UnknownAccount,
)
from gateway.protocols.error_bodies import error_json, stream_error_frame


def test_kinds_carry_status_retryability_and_breaker() -> None:
    assert [kind.status for kind in ErrorKind] == sorted(kind.status for kind in ErrorKind)
    assert ErrorKind.UPSTREAM_FAILED.trips_breaker and ErrorKind.UPSTREAM_TIMEOUT.trips_breaker
    assert not ErrorKind.OVERLOADED.trips_breaker and ErrorKind.OVERLOADED.retryable
    assert not ErrorKind.INVALID_REQUEST.retryable


@pytest.mark.parametrize("status, openai, anthropic, google", [
    (400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT"),
    (402, "insufficient_quota", "billing_error", "RESOURCE_EXHAUSTED"),
    (404, "not_found_error", "not_found_error", "NOT_FOUND"),
    (502, "upstream_error", "api_error", "UNAVAILABLE"),
    (503, "overloaded_error", "overloaded_error", "UNAVAILABLE"),
    (504, "timeout_error", "timeout_error", "DEADLINE_EXCEEDED"),
])
def test_each_protocol_has_one_shape(status: int, openai: str, anthropic: str, google: str) -> None:
    assert error_json("chat", status, "m", code="c", param="p") == {
        "error": {"message": "m", "type": openai, "param": "p", "code": "c"}}
    assert error_json("messages", status, "m") == {"type": "error", "error": {"type": anthropic, "message": "m"}}
    assert error_json("gemini", status, "m") == {"error": {"code": status, "message": "m", "status": google}}


def test_a_502_has_one_type_raised_or_in_a_stream() -> None:
    raised = error_json("chat", 502, "boom")["error"]["type"]
    frame = stream_error_frame("chat", 502, "boom")
    assert frame.startswith(b"data: ") and json.loads(frame[6:])["error"]["type"] == raised == "upstream_error"
    event, _, data = stream_error_frame("messages", 502, "boom").partition(b"\n")
    assert event == b"event: error" and json.loads(data[6:])["error"]["type"] == "api_error"
    event, _, data = stream_error_frame("responses", 502, "boom").partition(b"\n")
    assert event == b"event: error" and json.loads(data[6:])["code"] == "upstream_error"


@pytest.mark.parametrize("exc, status, code", [
    (InsufficientBalance("x"), 402, "insufficient_quota"),
    (KeyLimitExceeded("x"), 402, "budget_exceeded"),
    (RateLimited("x", 0.2, {"x-ratelimit-limit-requests": "1"}), 429, "rate_limit_exceeded"),
    (KeyRevoked("x"), 401, "invalid_api_key"),
    (LedgerUnavailable("down"), 503, None),
    (UnknownAccount("no account 'a'"), 404, None),
    (AccountExists("account 'a' already exists"), 409, "account_exists"),
    (InvalidLedgerArgument("bad"), 400, None),
])
def test_ledger_exceptions_map_once(exc: LedgerError, status: int, code: str | None) -> None:
    error = ledger_error(exc)
    assert (error.kind.status, error.code) == (status, code)
    if status == 503:
        assert error.retry_after_s == 2 and "down" not in error.message  # no internals to the client
