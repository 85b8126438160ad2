"""usage_csv.py: CSV pages cut by time; records tied at a page boundary are neither skipped nor repeated."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

from gateway.http.usage_csv import send_csv


class Collector:
    """What send_csv needs of a Tornado handler: headers, write, flush, finish."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.flushes = 0
        self.finished = False

    def set_header(self, name: str, value: str) -> None:
        self.headers[name] = value

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    async def flush(self) -> None:
        self.flushes += 1

    def finish(self) -> None:
        self.finished = True


def export(records: list[dict[str, Any]], limit: int, page_size: int) -> tuple[list[dict[str, str]], Collector]:
    newest_first = sorted(records, key=lambda r: -r["created_at"])

    async def fetch(n: int, until: float | None) -> list[dict[str, Any]]:
        return [r for r in newest_first if until is None or r["created_at"] < until][:n]

    handler = Collector()
    asyncio.run(send_csv(handler, fetch, limit, None, page_size))
    assert handler.finished and handler.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(b"".join(handler.chunks).decode()))), handler


def test_ties_at_page_boundaries_are_exported_once() -> None:
    """Groups of equal times smaller than a page (a page of 2,000 records at one float instant cannot occur)."""
    times = [10.0, 9.0, 9.0, 9.0, 8.0, 7.0, 7.0, 6.0, 5.0, 5.0, 5.0, 4.0, 3.0, 3.0]
    records = [{"created_at": t, "request_id": f"r{i}", "model": "=cmd"} for i, t in enumerate(times)]
    rows, handler = export(records, 1000, page_size=4)
    assert sorted(row["request_id"] for row in rows) == sorted(r["request_id"] for r in records)
    assert [float(row["created_at"]) for row in rows] == sorted(times, reverse=True)
    assert handler.flushes >= 4  # written page by page
    assert {row["model"] for row in rows} == {"'=cmd"}  # no formula reaches a spreadsheet
    assert list(rows[0])[:3] == ["created_at", "request_id", "account"]


def test_limit_is_exact_across_pages() -> None:
    records = [{"created_at": float(i), "request_id": f"r{i}"} for i in range(20)]
    rows, _ = export(records, 7, page_size=3)
    assert [row["request_id"] for row in rows] == [f"r{i}" for i in range(19, 12, -1)]
