"""``format=csv`` on ``/v1/usage`` and ``/admin/usage``: up to 100,000 records, streamed a page at a time.

A month of records for an invoice is far larger than a JSON page, and building
it whole would hold every record (and the text) in the gateway's memory at
once: 100,000 records took RSS from 55 to 87 MB that way. So the records are
read ``PAGE`` at a time, newest first, each page formatted on a worker thread
(not the IOLoop) and written to the client before the next is read.

Pages are cut by time: the next page is ``created_at <= `` the oldest time of
this one, with this page's records at exactly that time left for the next, so a
tie at a page boundary is neither skipped nor repeated.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
from typing import Any, Awaitable, Callable

PAGE = 2000
# These columns first (the usage record's documented fields), then any other field of the first page, by name.
CSV_FIRST = ("created_at", "request_id", "account", "key_id", "model", "node", "endpoint", "stream", "status",
             "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "cache_write_1h_tokens",
             "cost_usd", "estimated")

Fetch = Callable[[int, float | None], Awaitable[list[dict[str, Any]]]]  # (limit, until) -> records, newest first


async def send_csv(handler: Any, fetch: Fetch, limit: int, until: float | None, page_size: int = PAGE) -> None:
    """Write up to ``limit`` records as CSV (header row = field names), page by page, then finish."""
    handler.set_header("Content-Type", "text/csv; charset=utf-8")
    handler.set_header("Content-Disposition", 'attachment; filename="usage.csv"')
    handler.set_header("Cache-Control", "no-store")
    loop = asyncio.get_running_loop()
    columns: list[str] | None = None
    left = limit
    while left > 0:
        want = min(page_size, left)
        page = await fetch(want + 1, until)  # one more: is there a next page, and where does it start?
        more = len(page) > want
        page = page[:want]
        if more:
            oldest = page[-1].get("created_at")
            tied = [r for r in page if r.get("created_at") == oldest]
            if len(tied) < len(page):  # the tie goes with the next page, read up to and including that time
                page = page[:len(page) - len(tied)]
                until = math.nextafter(float(oldest or 0), math.inf)
            else:  # a whole page at one instant (never seen): go on strictly before it
                until = float(oldest or 0)
        if columns is None:
            columns = list(CSV_FIRST) + sorted({name for r in page for name in r} - set(CSV_FIRST))
            handler.write(await loop.run_in_executor(None, csv_rows, [columns], None))
        handler.write(await loop.run_in_executor(None, csv_rows, page, columns))
        await handler.flush()
        left -= len(page)
        if not more or not page:
            break
    handler.finish()


def csv_rows(rows: list[Any], columns: list[str] | None) -> bytes:
    """CSV lines: records (dicts, by ``columns``) or, with no columns, the rows as given (the header).

    A cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) is prefixed
    with ``'``; only text fields can start so (model ids, node ids), never the numbers.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row if columns is None else [_cell(row.get(name)) for name in columns])
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
