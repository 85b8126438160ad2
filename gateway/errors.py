"""The gateway's one error model: a kind (status, retryable, trips a breaker) and a message.

Every failure the gateway answers itself is a ``GatewayError``. Its kind says
only what the failure *is*; how it looks on the wire is decided in one place,
``protocols/error_bodies.py``, per client protocol, and written by
``BaseHandler.write_error`` (Tornado's own idiom) or, for a stream that has
already started, by the relay as the protocol's error event. The ledger raises
its own exceptions (``ledger/errors.py``); ``ledger_error`` maps them here, once.
"""

from __future__ import annotations

from enum import Enum

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


class ErrorKind(Enum):
    # value: (HTTP status, retryable: the same request may succeed later, trips_breaker: the node's fault)
    INVALID_REQUEST = (400, False, False)
    AUTHENTICATION = (401, False, False)
    INSUFFICIENT_BALANCE = (402, False, False)
    PERMISSION = (403, False, False)
    NOT_FOUND = (404, False, False)
    METHOD_NOT_ALLOWED = (405, False, False)
    CONFLICT = (409, False, False)
    PAYLOAD_TOO_LARGE = (413, False, False)
    RATE_LIMITED = (429, True, False)
    INTERNAL = (500, True, False)
    UPSTREAM_FAILED = (502, True, True)
    OVERLOADED = (503, True, False)
    UPSTREAM_TIMEOUT = (504, True, True)

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def retryable(self) -> bool:
        return self.value[1]

    @property
    def trips_breaker(self) -> bool:
        return self.value[2]


class GatewayError(Exception):
    """An error answered to the client; ``param`` names the request field at fault, ``code`` is machine-readable.

    ``headers`` are sent with the error answer (e.g. a 429's ``x-ratelimit-*``).
    """

    def __init__(self, kind: ErrorKind, message: str, param: str | None = None, code: str | None = None,
                 retry_after_s: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s


def ledger_error(exc: LedgerError) -> GatewayError:
    """The one mapping from the ledger's exceptions to answers."""
    if isinstance(exc, InsufficientBalance):
        return GatewayError(ErrorKind.INSUFFICIENT_BALANCE, "your balance is exhausted; top up to continue",
                            code="insufficient_quota")
    if isinstance(exc, KeyLimitExceeded):  # the message names the limit and when its window resets
        return GatewayError(ErrorKind.INSUFFICIENT_BALANCE, str(exc), code="budget_exceeded")
    if isinstance(exc, RateLimited):
        return GatewayError(ErrorKind.RATE_LIMITED, str(exc), code="rate_limit_exceeded",
                            retry_after_s=exc.retry_after_s, headers=exc.headers)
    if isinstance(exc, KeyRevoked):
        return GatewayError(ErrorKind.AUTHENTICATION, "this API key has been revoked", code="invalid_api_key")
    if isinstance(exc, LedgerUnavailable):  # fail closed: never serve free while billing is unreachable
        return GatewayError(ErrorKind.OVERLOADED, "the billing ledger is unreachable; retry shortly", retry_after_s=2)
    if isinstance(exc, UnknownAccount):
        return GatewayError(ErrorKind.NOT_FOUND, str(exc))
    if isinstance(exc, AccountExists):
        return GatewayError(ErrorKind.CONFLICT, str(exc), "id", code="account_exists")
    if isinstance(exc, InvalidLedgerArgument):
        return GatewayError(ErrorKind.INVALID_REQUEST, str(exc))
    return GatewayError(ErrorKind.INTERNAL, "internal ledger error")
