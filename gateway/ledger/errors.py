"""Exceptions of the ledger. They know nothing of HTTP: ``gateway/errors.ledger_error`` maps each to an answer."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from gateway.ledger.money import nano_to_usd

_PERIOD_WORD = {"day": "daily", "week": "weekly", "month": "monthly"}


class LedgerError(Exception):
    """Base of what a ledger operation may raise for the caller to answer."""


class InsufficientBalance(LedgerError):
    """The account has nothing left to reserve: answer 402."""

    @classmethod
    def of(cls, account_id: str, balance_nano: int, reserved_nano: int) -> InsufficientBalance:
        return cls(f"account {account_id!r} has no available balance (balance {nano_to_usd(balance_nano)} USD, "
                   f"reserved {nano_to_usd(reserved_nano)} USD)")


class KeyLimitExceeded(LedgerError):
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


class KeyRevoked(LedgerError):
    """The key was revoked after this process authenticated it (a shared ledger saw it first): answer 401."""


class UnknownAccount(LedgerError, KeyError):
    """No account with that id: answer 404."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument (quotes); messages read better plain.
        return str(self.args[0]) if self.args else "unknown account"


class InvalidLedgerArgument(LedgerError, ValueError):
    """An argument the ledger refuses (a bad name, amount or key option): answer 400 with the message."""


class AccountExists(InvalidLedgerArgument):
    """``create_account`` with an id that is taken: answer 409."""


class LedgerUnavailable(LedgerError):
    """The shared ledger (Redis) cannot be reached: fail closed with 503 and Retry-After, never serve free."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the billing ledger is unreachable: {detail}")
        self.detail = detail


class LedgerCorrupt(Exception):
    """A snapshot or journal cannot be trusted; the message names the file.

    Raised instead of starting with an empty or partial ledger, because a
    gateway that forgets balances silently gives away money (or loses it).
    """


class LedgerLocked(RuntimeError):
    """Another process holds the state directory; two writers would interleave journals."""


class RateLimited(LedgerError):
    """A key's rpm, tpm or max_concurrent is reached: answer 429 with ``Retry-After`` and OpenAI's
    ``x-ratelimit-*`` headers (built in limits.py)."""

    def __init__(self, message: str, retry_after_s: float, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.headers = headers
