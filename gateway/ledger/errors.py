"""Exceptions of the ledger; each maps to one HTTP answer or one operator action."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from gateway.errors import ErrorKind, GatewayError
from gateway.ledger.money import nano_to_usd

_PERIOD_WORD = {"day": "daily", "week": "weekly", "month": "monthly"}


class InsufficientBalance(Exception):
    """The account has nothing left to reserve: answer 402."""

    @classmethod
    def of(cls, account_id: str, balance_nano: int, reserved_nano: int) -> InsufficientBalance:
        return cls(f"account {account_id!r} has no available balance (balance {nano_to_usd(balance_nano)} USD, "
                   f"reserved {nano_to_usd(reserved_nano)} USD)")


class KeyLimitExceeded(Exception):
    """The key's own spend limit is used up (the account may still have money): answer 402 ``budget_exceeded``.

    The message is shown to the client: it says which limit and, for a calendar window, when it resets.
    """

    @classmethod
    def of(cls, key_id: str, limit_nano: int, period: str | None = None,
           resets_at: float | None = None) -> KeyLimitExceeded:
        limit = nano_to_usd(limit_nano)
        if period is None or resets_at is None:
            return cls(f"this key ({key_id}) has reached its spend limit of {limit} USD (a lifetime limit)")
        reset = datetime.fromtimestamp(resets_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(f"this key ({key_id}) has reached its {_PERIOD_WORD[period]} spend limit of {limit} USD; "
                   f"it resets at {reset}")


class LedgerCorrupt(Exception):
    """A snapshot or journal cannot be trusted; the message names the file.

    Raised instead of starting with an empty or partial ledger, because a
    gateway that forgets balances silently gives away money (or loses it).
    """


class LedgerLocked(RuntimeError):
    """Another process holds the state directory; two writers would interleave journals."""


class UnknownAccount(KeyError):
    """No account with that id: answer 404."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument (quotes); messages read better plain.
        return str(self.args[0]) if self.args else "unknown account"


class LedgerUnavailable(GatewayError):
    """The shared ledger (Redis) cannot be reached: fail closed with 503 and Retry-After, never serve free.

    A ``GatewayError`` (kind OVERLOADED), so every handler's ``except GatewayError``
    already answers it in the client protocol's own error shape.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.OVERLOADED, "the billing ledger is unreachable; retry shortly", retry_after_s=2)
        self.detail = detail


class RateLimited(GatewayError):
    """A key's rpm, tpm or max_concurrent is reached: 429 with ``Retry-After`` and OpenAI's ``x-ratelimit-*``
    headers (built in limits.py), in the endpoint's own error shape (a ``GatewayError``, like LedgerUnavailable)."""

    def __init__(self, message: str, retry_after_s: float, headers: dict[str, str]) -> None:
        super().__init__(ErrorKind.RATE_LIMITED, message, code="rate_limit_exceeded",
                         retry_after_s=max(1, math.ceil(retry_after_s)))
        self.headers = headers
