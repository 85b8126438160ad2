"""usage_db.py: records in SQLite, queried by account and time, aggregated by SQL, kept for the retention period."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from gateway.ledger.money import nano_to_usd
from gateway.ledger.usage_db import DB_NAME, UsageStore
from tests.ledger.ledger_fixtures import FakeClock

DAY = 86400.0


def record(request_id: str, created_at: float, account: str = "demo", cost_nano: int = 1, **extra: Any) -> dict:
    return {"request_id": request_id, "created_at": created_at, "account": account, "key_id": "k1",
            "model": extra.pop("model", "gpt-4o"), "input_tokens": 10, "output_tokens": 5, "cached_tokens": 2,
            "cache_write_tokens": 3, "cost_usd": nano_to_usd(cost_nano), **extra}


def test_records_are_queried_by_account_and_half_open_time_window(tmp_path: Path) -> None:
    store = UsageStore(str(tmp_path), clock=FakeClock(2_000_000_000.0))
    for i in range(10):
        store.append(record(f"d{i}", 1_999_000_000.0 + i))
        store.append(record(f"a{i}", 1_999_000_000.0 + i, account="acme"))

    async def check() -> None:
        # read your writes: nothing was flushed by hand, the query waits for the writer
        assert [r["request_id"] for r in await store.query("demo", 3)] == ["d9", "d8", "d7"]
        window = await store.query("demo", 100, since=1_999_000_002.0, until=1_999_000_005.0)
        assert [r["request_id"] for r in window] == ["d4", "d3", "d2"]  # since inclusive, until exclusive
        assert len(await store.query(None, 1000)) == 20
        assert await store.query("nobody", 10) == []

    asyncio.run(check())
    store.close()
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        plans = " ".join(str(row) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT record FROM usage WHERE account = 'demo' AND created_at >= 1 "
            "ORDER BY created_at DESC LIMIT 5"))
        assert "usage_by_account_time" in plans


def test_summary_is_aggregated_by_the_database_exactly(tmp_path: Path) -> None:
    store = UsageStore(str(tmp_path), clock=FakeClock(2_000_000_000.0))
    base = 1_999_958_400.0  # a UTC day boundary
    for i in range(5):  # 5 records in hour 0, model a; 3 in hour 1, model b; costs to the nano
        store.append(record(f"r{i}", base + i, cost_nano=100_000_001, model="a"))
    for i in range(3):
        store.append(record(f"s{i}", base + 3600 + i, cost_nano=7, model="b"))
    store.append(record("other", base, account="acme", cost_nano=999))
    rows = asyncio.run(store.summary("demo", 3600, since=base))
    store.close()
    assert rows == [
        {"start": int(base), "model": "a", "requests": 5, "input_tokens": 50, "output_tokens": 25,
         "cached_tokens": 10, "cache_write_tokens": 15, "cost_usd": "0.500000005"},
        {"start": int(base) + 3600, "model": "b", "requests": 3, "input_tokens": 30, "output_tokens": 15,
         "cached_tokens": 6, "cache_write_tokens": 9, "cost_usd": "0.000000021"},
    ]


def test_records_older_than_the_retention_period_are_deleted(tmp_path: Path) -> None:
    clock = FakeClock(2_000_000_000.0)
    store = UsageStore(str(tmp_path), retention_days=30, clock=clock)
    store.append(record("old", clock.now - 31 * DAY))
    store.append(record("new", clock.now - 29 * DAY))
    store.close()  # committed; pruning happens when a store opens and then hourly
    store = UsageStore(str(tmp_path), retention_days=30, clock=clock)
    assert [r["request_id"] for r in asyncio.run(store.query(None, 10))] == ["new"]
    store.close()


def test_an_old_usage_jsonl_is_imported_once(tmp_path: Path) -> None:
    lines = [json.dumps(record(f"j{i}", 1_999_000_000.0 + i)) for i in range(3)]
    (tmp_path / "usage.jsonl.1").write_text(json.dumps(record("rotated", 1_998_000_000.0)) + "\n")
    (tmp_path / "usage.jsonl").write_text("\n".join(lines) + "\n{\"torn\": \n")
    clock = FakeClock(2_000_000_000.0)
    for _ in range(2):  # opened twice: imported once
        store = UsageStore(str(tmp_path), clock=clock)
        ids = [r["request_id"] for r in asyncio.run(store.query("demo", 100))]
        store.close()
        assert ids == ["j2", "j1", "j0", "rotated"]
    assert not (tmp_path / "usage.jsonl").exists()
    assert (tmp_path / "usage.jsonl.imported").exists() and (tmp_path / "usage.jsonl.1.imported").exists()
