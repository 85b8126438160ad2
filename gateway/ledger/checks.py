"""Argument checks every ledger backend applies the same way (InvalidLedgerArgument says what is wrong).

The embedded ledger and the Redis backend take the same calls from the same
HTTP handlers, so they must refuse the same input with the same message; the
checks live here once instead of being repeated, and drifting, in each backend.
"""

from __future__ import annotations

from typing import Any, Sequence

from gateway.ledger.errors import InvalidLedgerArgument
from gateway.ledger.keys import MANAGEMENT_KEY, check_key_options, check_kind
from gateway.ledger.limits import NO_LIMITS, KeyLimits

MAX_NAME = 128  # account ids and key names
MAX_REFERENCE = 256  # credit references


def check_text(value: Any, what: str, max_len: int) -> None:
    """Ids, names and references end up in logs and JSON: no empties, no control characters."""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidLedgerArgument(f"{what} must be a non-empty string of at most {max_len} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidLedgerArgument(f"{what} must not contain control characters")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_account(account_id: Any, balance_nano: Any) -> None:
    """A new account: a valid id and a non-negative opening balance."""
    check_text(account_id, "account id", MAX_NAME)
    if not _is_int(balance_nano) or balance_nano < 0:
        raise InvalidLedgerArgument(f"balance must be a non-negative number of nano-dollars, not {balance_nano!r}")


def check_credit(amount_nano: Any, reference: Any) -> None:
    """A credit: a positive amount and a reference that makes it idempotent."""
    if not _is_int(amount_nano) or amount_nano <= 0:
        raise InvalidLedgerArgument(f"credit amount must be a positive number of nano-dollars, not {amount_nano!r}")
    check_text(reference, "reference", MAX_REFERENCE)


def check_cost(cost_nano: Any) -> None:
    """What a settle charges: never negative (a negative charge would be a free credit).

    A plain ValueError: the cost comes from the gateway's own pricing, so a bad one is a bug, not bad input.
    """
    if not _is_int(cost_nano) or cost_nano < 0:
        raise ValueError(f"cost must not be negative, not {cost_nano}")


def check_new_key(name: Any, kind: object, models: Sequence[str] | None, limit_nano: int | None,
                  expires_at: float | None, limits: KeyLimits = NO_LIMITS) -> tuple[str, frozenset[str] | None]:
    """A new key's name, kind and options; returns the kind and the normalized model set.

    A management key never calls models, so it takes no model list, no spend limit and no rate limit.
    """
    check_text(name, "key name", MAX_NAME)
    kind = check_kind(kind)
    if kind == MANAGEMENT_KEY and (models is not None or limit_nano is not None or limits != NO_LIMITS):
        raise InvalidLedgerArgument("a management key cannot call models, so it takes no 'models', no 'limit_usd' and "
                                    "no rate limits")
    limits.check(limit_nano)
    return kind, check_key_options(models, limit_nano, expires_at)
