"""Money as integer nano-dollars (1 USD = 10**9 nano), end to end.

Binary floats cannot represent $0.02 exactly, and a gateway that sums a
million tiny charges must land on the exact cent. Integers add exactly and
fast, and a nano-dollar is fine enough that a per-token price such as
$0.02 per 1M tokens (20 nano per token) is an integer. Decimal is used only at
the edges: parsing configured or requested amounts, and rounding a request's
cost when a price is finer than a nano per token (see pricing.py).
"""

from __future__ import annotations

from decimal import Context, Decimal, InvalidOperation

NANO_PER_USD = 10**9

# Wide enough that multiplying any sane amount by 10**9 never rounds, so the
# "is it a whole number of nanos?" check below is exact.
_EXACT = Context(prec=60)


def usd_to_nano(amount: Decimal | str | int) -> int:
    """Convert a USD amount to nano-dollars exactly.

    Floats are refused (TypeError) because ``0.1`` is already inexact before
    we see it; pass a string or a Decimal. Amounts finer than a nano-dollar
    are refused (ValueError) rather than silently rounded: a config or admin
    amount that does not fit is a mistake to report, not to hide.
    """
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, str, int)):
        raise TypeError(f"amount must be a Decimal, str or int, not {type(amount).__name__}")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(amount.strip() if isinstance(amount, str) else amount)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    scaled = _EXACT.multiply(value, NANO_PER_USD)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {amount!r} is finer than a nano-dollar (9 decimals)")
    return int(scaled)


def nano_to_usd(nano: int) -> str:
    """Format nano-dollars as a USD decimal string for the API.

    Nine decimals with trailing zeros trimmed, but never fewer than six:
    ``4999987000 -> "4.999987"``, ``20_000_000 -> "0.020000"``,
    ``1 -> "0.000000001"``, ``-1500 -> "-0.0000015"``. Six is the precision
    people read (micro-dollars); the extra digits appear only when they carry
    information, so the string always converts back to the exact integer.
    """
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    digits = f"{frac:09d}".rstrip("0").ljust(6, "0")
    return f"{sign}{whole}.{digits}"
