"""Exceptions of the ledger; each maps to one HTTP answer or one operator action."""

from __future__ import annotations

from gateway.errors import ErrorKind, GatewayError
from gateway.ledger.money import nano_to_usd


class InsufficientBalance(Exception):
    """The account has nothing left to reserve: answer 402."""

    @classmethod
    def of(cls, account_id: str, balance_nano: int, reserved_nano: int) -> InsufficientBalance:
        return cls(f"account {account_id!r} has no available balance (balance {nano_to_usd(balance_nano)} USD, "
                   f"reserved {nano_to_usd(reserved_nano)} USD)")


class KeyLimitExceeded(Exception):
    """The key's own spend limit is used up (the account may still have money): answer 402."""

    @classmethod
    def of(cls, key_id: str, limit_nano: int) -> KeyLimitExceeded:
        return cls(f"key {key_id} has reached its spend limit of {nano_to_usd(limit_nano)} USD")


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
