"""usage_db.py: records in SQLite, queried by account and time, aggregated by SQL, kept for the retention period."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from gateway.ledger.money import nano_to_usd
from gateway.ledger.usage_db import (_SCHEMA, COLUMNS_LAYOUT, DB_NAME, JSON_LAYOUT, RECORD_FIELDS, ROWS_PER_INSERT,
                                     UsageStore, _add_columns, _insert_rows, _insert_sql, _json_row, usage_row)
from gateway.protocols.names import Protocol
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


def pipeline_record(request_id: str, created_at: float, **changes: Any) -> dict[str, Any]:
    """A record as the pipeline settles it: exactly RECORD_FIELDS, with their types."""
    fields = {"request_id": request_id, "model": "gpt-4o", "node": "n1", "input_tokens": 10, "output_tokens": 5,
              "cached_tokens": 2, "cache_write_tokens": 3, "cache_write_1h_tokens": 1, "estimated": False,
              "status": 200, "latency_ms": 12.5, "ttft_ms": None, "endpoint": "openai", "stream": True,
              "created_at": created_at}
    assert tuple(fields) == RECORD_FIELDS
    fields.update(changes)
    return fields


def as_stored(record: dict[str, Any], cost_nano: int) -> dict[str, Any]:
    """What a query must answer for a settled record: the record plus account, key and cost, nothing else."""
    return {**record, "account": "demo", "key_id": "k1", "cost_usd": nano_to_usd(cost_nano)}


def layouts(path: Path) -> list[int]:
    with sqlite3.connect(path / DB_NAME) as conn:
        return [row[0] for row in conn.execute("SELECT layout FROM usage ORDER BY id")]


def test_request_records_are_stored_in_columns_and_read_back_exactly(tmp_path: Path) -> None:
    store = UsageStore(str(tmp_path), clock=FakeClock(2_000_000_000.0))
    records = [pipeline_record("plain", 1_999_000_000.25),
               pipeline_record("r\\\"/\u2028", 1_999_000_001.5, estimated=True, stream=False, ttft_ms=3.25, node=None,
                               model="m/ü \"x\"", cache_write_1h_tokens=0)]
    records.append(pipeline_record("enum", 1_999_000_002.0, endpoint=Protocol.MESSAGES))  # as the pipeline has it
    for i, record in enumerate(records):
        store.append(usage_row("demo", "k1", 10**9 + i, record))
    found = asyncio.run(store.query("demo", 10))
    store.close()
    assert found[0]["endpoint"] == "messages" and type(found[0]["endpoint"]) is str
    assert found[1:] == [as_stored(records[1], 10**9 + 1), as_stored(records[0], 10**9)]
    assert [type(r["estimated"]) for r in found] == [bool, bool, bool] and found[1]["stream"] is False
    assert layouts(tmp_path) == [COLUMNS_LAYOUT] * 3


def test_other_records_are_stored_as_json_and_read_back_exactly(tmp_path: Path) -> None:
    """A record that is not the pipeline's (a field more or less, a value of another type) keeps the JSON layout."""
    base = pipeline_record("x", 1_999_000_000.0)
    missing = {k: v for k, v in base.items() if k != "ttft_ms"}
    others = [("extra", {**base, "request_id": "extra", "tool": "search"}),
              ("missing", {**missing, "request_id": "missing"}),
              ("int-time", {**base, "request_id": "int-time", "created_at": 1_999_000_003}),
              ("bool-count", {**base, "request_id": "bool-count", "input_tokens": True}),
              ("no-model", {**base, "request_id": "no-model", "model": None})]
    store = UsageStore(str(tmp_path), clock=FakeClock(2_000_000_000.0))
    for i, (_, record) in enumerate(others):
        store.append(usage_row("demo", "k1", 7, {**record, "created_at": record["created_at"] + i}))
    found = {r["request_id"]: r for r in asyncio.run(store.query("demo", 10))}
    summary = asyncio.run(store.summary("demo", 86400))
    store.close()
    for i, (name, record) in enumerate(others):
        assert found[name] == as_stored({**record, "created_at": record["created_at"] + i}, 7)
    assert layouts(tmp_path) == [JSON_LAYOUT] * len(others)
    # the summed columns of a JSON row count only real integers, and a missing model is "?" (as before)
    assert sum(row["requests"] for row in summary) == 5 and {row["model"] for row in summary} == {"gpt-4o", "?"}
    assert sum(row["input_tokens"] for row in summary) == 40


def test_a_database_from_before_the_columns_keeps_its_records(tmp_path: Path) -> None:
    """The table as it was (the whole record as JSON) gets the columns at open; old and new rows read alike."""
    old = record("old", 1_999_000_000.0, cost_nano=5)
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.executescript("""
            CREATE TABLE usage (id INTEGER PRIMARY KEY, created_at REAL NOT NULL, account TEXT NOT NULL,
                model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
                cached_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL, cost_nano INTEGER NOT NULL,
                record TEXT NOT NULL);
            CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);""")
        conn.execute("INSERT INTO usage (created_at, account, model, input_tokens, output_tokens, cached_tokens, "
                     "cache_write_tokens, cost_nano, record) VALUES (?, 'demo', 'gpt-4o', 10, 5, 2, 3, 5, ?)",
                     (old["created_at"], json.dumps(old)))
    store = UsageStore(str(tmp_path), clock=FakeClock(2_000_000_000.0))
    new = pipeline_record("new", 1_999_000_001.0)
    store.append(usage_row("demo", "k1", 9, new))
    found = asyncio.run(store.query("demo", 10))
    summary = asyncio.run(store.summary("demo", 86400))
    store.close()
    assert found == [as_stored(new, 9), old]
    assert layouts(tmp_path) == [JSON_LAYOUT, COLUMNS_LAYOUT]
    assert [(row["requests"], row["input_tokens"], row["cost_usd"]) for row in summary] == [(2, 20, "0.000000014")]


def test_rows_are_committed_by_the_batch_window_without_a_reader(tmp_path: Path) -> None:
    """The writer wakes for an append by itself (no query cutting the window short)."""
    store = UsageStore(str(tmp_path), batch_s=0.01, clock=FakeClock(2_000_000_000.0))
    store.append(usage_row("demo", "k1", 1, pipeline_record("first", 1_999_000_000.0)))
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        deadline = time.monotonic() + 10
        while not conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0]:
            assert time.monotonic() < deadline, "the writer never committed the row"
            time.sleep(0.005)
    store.close()


def test_a_batch_larger_than_one_insert_statement_is_stored_whole_and_in_order(tmp_path: Path) -> None:
    """Rows go to SQLite ROWS_PER_INSERT per statement; a batch of several statements and a remainder, with
    rows of both layouts mixed, loses nothing."""
    count = ROWS_PER_INSERT * 2 + 7
    store = UsageStore(str(tmp_path), clock=FakeClock(2_000_000_000.0))
    for i in range(count):
        created_at = 1_999_000_000.0 + i
        store.append(usage_row("demo", "k1", i, pipeline_record(f"r{i}", created_at)) if i % 10 else
                     record(f"r{i}", created_at, cost_nano=i))
    found = asyncio.run(store.query("demo", 1000))
    store.close()
    assert [r["request_id"] for r in found] == [f"r{i}" for i in reversed(range(count))]
    assert [r["cost_usd"] for r in found] == [nano_to_usd(i) for i in reversed(range(count))]
    assert layouts(tmp_path).count(JSON_LAYOUT) == len(range(0, count, 10))


def test_batches_of_every_size_use_six_insert_statements(tmp_path: Path) -> None:
    """Each distinct INSERT is parsed once and kept by SQLite: chunks of 32, 16, 8, 4, 2 and 1 rows only."""
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.executescript(_SCHEMA)
        _add_columns(conn)
        for size in range(1, 3 * ROWS_PER_INSERT):
            _insert_rows(conn, [_json_row(record(f"s{size}-{i}", 1_999_000_000.0)) for i in range(size)])
        assert conn.execute("SELECT COUNT(*) FROM usage").fetchone()[0] == sum(range(1, 3 * ROWS_PER_INSERT))
    assert _insert_sql.cache_info().currsize <= 6
