"""How the admin CLI shows things to people: aligned tables, dollars, dates; and reads dates back.

Scripts use ``--json`` (the API's own answer) or ``usage --csv``; nothing here is parsed by machines.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Iterable, Sequence

_MICRO = Decimal("0.000001")


def usd(amount: Any) -> str:
    """``"4.999870960"`` -> ``$4.999871``; whole cents keep two decimals (``$5.00``); None -> ``-``.

    One rule for every amount, so a column of balances lines up and reads alike.
    """
    if amount is None:
        return "-"
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return str(amount)
    text = f"{value.quantize(_MICRO, ROUND_HALF_EVEN):f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}${whole.lstrip('-')}.{fraction}"


def when(unix: Any) -> str:
    """A unix time as UTC ``2026-12-07 14:03:22Z``; None -> ``never``."""
    if unix is None:
        return "never"
    return datetime.fromtimestamp(float(unix), timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_time(text: str) -> float:
    """An ISO date or date-time (UTC unless it says otherwise), or a unix time -> unix seconds.

    ValueError names the accepted forms.
    """
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use 2026-12-07, 2026-12-07T14:00, "
                         f"2026-12-07T14:00:00+02:00 or a unix time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers and amounts are right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    right = [bool(cells) and all(_numeric(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    if not cells:
        out.append("(none)")
    return "\n".join(out)


def _numeric(cell: str) -> bool:
    text = cell.lstrip("-$")
    return text.replace(".", "", 1).replace(",", "").isdigit() or cell == "-"


def to_csv(records: list[dict[str, Any]]) -> str:
    """Usage records as CSV: one column per field any record has (first-seen order), one row each."""
    fields: dict[str, None] = {}
    for record in records:
        fields.update(dict.fromkeys(record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buffer.getvalue()
