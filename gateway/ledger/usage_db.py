"""Usage records of the embedded ledger in SQLite (``usage.sqlite3`` in the state dir).

Usage records are history, not money: the charge itself is the journal's,
written before the response ends. So records are written off the request
path. ``append`` (on the IOLoop) only queues the row; a writer thread
inserts everything queued every ``batch_s`` in one transaction. Queries run on
a reader thread (WAL lets it read while the writer writes) and are awaited,
so the IOLoop never waits for the disk.

A record of the request path (exactly ``RECORD_FIELDS``, as the pipeline
settles it) is stored in columns: the row is a tuple of the values it holds,
with no JSON to encode and no amount to parse, because ``usage_row`` runs once
per request on the IOLoop thread and the writer's work shares the same core.
Any other record (imports, other callers) is stored as JSON in ``record``, as
every record was before these columns existed; ``layout`` says which, and a
query answers both alike.

What a crash can lose: ``kill -9`` loses the records still queued, at most the
last batch window (``batch_s`` plus one commit); a committed transaction
survives a process crash because WAL pages reach the OS on commit. A power
loss may also take back the last commits (``synchronous=NORMAL``). The
charges are in the journal either way.

Reads see every record appended before them: a query first waits (on the
reader thread) until the writer has committed what was queued when the query
began. Records older than ``retention_days`` are deleted by the writer at
start and then hourly. An old ``usage.jsonl`` (and ``usage.jsonl.1``) from
before the database is imported once, at open, then renamed ``*.imported``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import operator
import os
import sqlite3
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import orjson

from gateway.ledger.money import nano_to_usd, usd_to_nano

log = logging.getLogger("infermesh.ledger")

DB_NAME = "usage.sqlite3"
JSONL_NAME = "usage.jsonl"
PRUNE_EVERY_S = 3600.0
_SUMMED = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens")

# The record the pipeline settles, field by field in its order; the ledger adds account, key_id and cost_usd.
RECORD_FIELDS = ("request_id", "model", "node", "input_tokens", "output_tokens", "cached_tokens",
                 "cache_write_tokens", "cache_write_1h_tokens", "estimated", "status", "latency_ms", "ttft_ms",
                 "endpoint", "stream", "created_at")
_PICK = operator.itemgetter(*RECORD_FIELDS)
JSON_LAYOUT, COLUMNS_LAYOUT = 0, 1  # ``layout``: the whole record in ``record`` / in the columns

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    account TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_account_time ON usage (account, created_at);
CREATE INDEX IF NOT EXISTS usage_by_time ON usage (created_at);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Added to the table above by ``_add_columns`` (a database from before them gets them at open, NULL in its
# rows). No declared type: SQLite then keeps each value as it was given (an int stays an int, a float a float).
_RECORD_COLUMNS = ("request_id", "key_id", "node", "cache_write_1h_tokens", "estimated", "status", "latency_ms",
                   "ttft_ms", "endpoint", "stream")
_INSERTED = ("created_at, account, model, input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_nano, "
             f"record, layout, {', '.join(_RECORD_COLUMNS)}")
_ROW_PARAMETERS = f"({', '.join('?' * (10 + len(_RECORD_COLUMNS)))})"
ROWS_PER_INSERT = 32  # 640 parameters: under the 999 of SQLite's older builds


@functools.cache
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO usage ({_INSERTED}) VALUES {', '.join([_ROW_PARAMETERS] * rows)}"


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Many rows per statement: a third less work per row than ``executemany`` (one step, one reset and one
    GIL release per statement instead of per row). Chunks of 32 rows, the rest in 16, 8, 4, 2 and 1, so that
    only six statements are ever prepared (each costs a parse, and SQLite's cache keeps it)."""
    start, size = 0, ROWS_PER_INSERT
    while start < len(rows):
        while len(rows) - start < size:
            size //= 2
        conn.execute(_insert_sql(size), list(itertools.chain.from_iterable(rows[start:start + size])))
        start += size


_SELECTED = ("layout, record, request_id, model, node, input_tokens, output_tokens, cached_tokens, cache_write_tokens, "
             "cache_write_1h_tokens, estimated, status, latency_ms, ttft_ms, endpoint, stream, created_at, account, "
             "key_id, cost_nano")
_NO_COLUMNS = (None,) * len(_RECORD_COLUMNS)
UsageRow = tuple[Any, ...] | dict[str, Any]  # what usage_row returns: a row, or a record for the JSON layout


def usage_row(account: str, key_id: str, cost_nano: int, record: dict[str, Any]) -> UsageRow:
    """What ``UsageStore.append`` takes for one settled request: ``record`` plus the account, key and cost.

    A record of exactly ``RECORD_FIELDS`` whose summed and indexed values have their types becomes the row
    itself (columns). Anything else becomes the record with ``account``, ``key_id`` and ``cost_usd`` added
    (on a copy), turned into a JSON row by the writer thread, where a record that cannot be stored is logged
    instead of raising into a request that is already charged.
    """
    if len(record) == len(RECORD_FIELDS):
        try:
            (request_id, model, node, input_tokens, output_tokens, cached_tokens, cache_write_tokens, cache_write_1h,
             estimated, status, latency_ms, ttft_ms, endpoint, stream, created_at) = _PICK(record)
        except KeyError:
            pass
        else:
            if (type(input_tokens) is int and type(output_tokens) is int and type(cached_tokens) is int
                    and type(cache_write_tokens) is int and type(created_at) is float and type(model) is str
                    and type(estimated) is bool and type(stream) is bool and isinstance(endpoint, str)):
                # Bools as ints and the endpoint (a StrEnum) as a plain str: for any value not of an exact
                # int/float/str type, sqlite3 looks for an adapter first, an exception raised and caught per value.
                return (created_at, account, model, input_tokens, output_tokens, cached_tokens, cache_write_tokens,
                        cost_nano, "", COLUMNS_LAYOUT, request_id, key_id, node, cache_write_1h, 1 if estimated else 0,
                        status, latency_ms, ttft_ms, str.__str__(endpoint), 1 if stream else 0)
    usage = dict(record)
    usage["account"] = account
    usage["key_id"] = key_id
    usage["cost_usd"] = nano_to_usd(cost_nano)
    return usage


def _json_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """The indexed and summed columns, plus the whole record as JSON (what queries return)."""
    def count(name: str) -> int:
        value = record.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    try:
        cost = usd_to_nano(str(record.get("cost_usd") or "0"))
    except (TypeError, ValueError):
        cost = 0
    return (float(record.get("created_at") or 0), str(record["account"]), str(record.get("model") or "?"),
            count("input_tokens"), count("output_tokens"), count("cached_tokens"), count("cache_write_tokens"),
            cost, orjson.dumps(record).decode(), JSON_LAYOUT, *_NO_COLUMNS)  # str: bytes would be a BLOB


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored row back as the record that was appended (``_SELECTED`` order)."""
    if row[0] != COLUMNS_LAYOUT:
        return orjson.loads(row[1])  # type: ignore[no-any-return]
    record = dict(zip(RECORD_FIELDS, row[2:17]))
    record["estimated"] = bool(record["estimated"])
    record["stream"] = bool(record["stream"])
    record["account"] = row[17]
    record["key_id"] = row[18]
    record["cost_usd"] = nano_to_usd(row[19])
    return record


def _add_columns(conn: sqlite3.Connection) -> None:
    """Give a table created before the record columns (or just now by ``_SCHEMA``) the ones it lacks."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
    if "layout" not in present:
        conn.execute(f"ALTER TABLE usage ADD COLUMN layout INTEGER NOT NULL DEFAULT {JSON_LAYOUT}")
    for name in _RECORD_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE usage ADD COLUMN {name}")


def _connect(path: str) -> sqlite3.Connection:
    """WAL (readers never wait for the writer), NORMAL sync (a commit survives a process crash), and a
    512 KiB page cache instead of SQLite's 2 MiB per connection: the OS caches the file anyway, and the
    gateway's idle memory is budgeted."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA cache_size=-512")
    return conn


class UsageStore:
    """Append from the IOLoop, query with ``await``; one writer thread, one reader thread."""

    def __init__(self, directory: str, retention_days: int = 400, batch_s: float = 0.2,
                 clock: Callable[[], float] = time.time) -> None:
        """Create or open the database, import an old ``usage.jsonl`` once, start the writer."""
        self.path = os.path.join(directory, DB_NAME)
        self._retention_s = retention_days * 86400.0
        self._batch_s = batch_s
        self._clock = clock
        conn = _connect(self.path)
        os.chmod(self.path, 0o600)
        conn.executescript(_SCHEMA)
        _add_columns(conn)
        _import_jsonl(conn, directory)
        self._prune(conn)  # before the first query can see expired records
        conn.close()
        self._queue: deque[UsageRow] = deque()
        self._queued = threading.Event()  # set by append when it finds it clear: wakes the writer
        self._cut = threading.Event()  # a reader waits, or close: commit now, do not wait out the batch window
        self._done = threading.Condition()  # the writer announces each commit to waiting readers
        self._appended = 0  # rows handed to append (IOLoop thread only writes it)
        self._committed = 0  # rows the writer has committed (or given up on)
        self._closing = False
        self._failing = False
        self._writer = threading.Thread(target=self._write_loop, name="usage-writer", daemon=True)
        self._writer.start()
        self._readers = ThreadPoolExecutor(1, thread_name_prefix="usage-reader")
        self._read_conn: sqlite3.Connection | None = None

    # -- writing (IOLoop -> writer thread) --------------------------------------------

    def append(self, row: UsageRow) -> None:
        """Queue one ``usage_row``; never blocks: no lock (``deque.append`` is atomic), and the writer's event
        is set only by the first row after it last drained the queue."""
        self._queue.append(row)
        self._appended += 1
        if not self._queued.is_set():
            self._queued.set()

    def _write_loop(self) -> None:
        """Wait for a row, let the batch window fill (a waiting reader cuts it short), commit, repeat;
        prune old records every ``PRUNE_EVERY_S``.

        The events are cleared before the queue is drained: a row appended after the drain sets them again,
        and a row appended before it is in this batch."""
        conn = _connect(self.path)
        queue = self._queue
        next_prune = time.monotonic() + PRUNE_EVERY_S  # the first prune ran in __init__
        while True:
            if self._queued.wait(max(next_prune - time.monotonic(), 0.0)) and not self._closing:
                self._cut.wait(self._batch_s)
            self._queued.clear()
            self._cut.clear()
            closing = self._closing
            batch = [queue.popleft() for _ in range(len(queue))]
            if batch:
                self._insert(conn, batch)
                with self._done:
                    self._committed += len(batch)
                    self._done.notify_all()
            if time.monotonic() >= next_prune:
                self._prune(conn)
                next_prune = time.monotonic() + PRUNE_EVERY_S
            if closing:
                conn.close()
                return

    def _insert(self, conn: sqlite3.Connection, batch: list[UsageRow]) -> None:
        """One transaction per batch. A failure is logged (once until writes succeed again), not raised:
        the charges are journaled already, and the records are lost only for history."""
        try:
            conn.execute("BEGIN")
            _insert_rows(conn, [row if isinstance(row, tuple) else _json_row(row) for row in batch])
            conn.execute("COMMIT")
            self._failing = False
        except (sqlite3.Error, KeyError, TypeError, ValueError, OverflowError):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not self._failing:
                log.exception("cannot write %d usage records to %s", len(batch), self.path)
            self._failing = True

    def _prune(self, conn: sqlite3.Connection) -> None:
        try:
            deleted = conn.execute("DELETE FROM usage WHERE created_at < ?",
                                   (self._clock() - self._retention_s,)).rowcount
            if deleted:
                log.info("deleted %d usage records older than the retention period", deleted)
        except sqlite3.Error:
            log.exception("cannot delete old usage records from %s", self.path)

    # -- reading (awaited; runs on the reader thread) -------------------------------------

    async def query(self, account_id: str | None, limit: int, since: float | None = None,
                    until: float | None = None) -> list[dict[str, Any]]:
        """Newest first, at most ``limit``, ``since <= created_at < until``."""
        where, args = _window(account_id, since, until)
        sql = f"SELECT {_SELECTED} FROM usage {where} ORDER BY created_at DESC, id DESC LIMIT ?"
        return await self._read(sql, (*args, max(limit, 0)), _records)

    async def summary(self, account_id: str | None, width: int, since: float | None = None,
                      until: float | None = None) -> list[dict[str, Any]]:
        """Per (bucket start, model), oldest first: requests, token sums and exact cost, summed by SQLite."""
        where, args = _window(account_id, since, until)
        sql = (f"SELECT CAST(created_at / ? AS INTEGER) * ? AS start, model, COUNT(*), "
               f"{', '.join(f'SUM({name})' for name in _SUMMED)}, SUM(cost_nano) FROM usage {where} "
               f"GROUP BY start, model ORDER BY start, model")
        rows = await self._read(sql, (width, width, *args), list)
        return [{"start": row[0], "model": row[1], "requests": row[2], **dict(zip(_SUMMED, row[3:7])),
                 "cost_usd": nano_to_usd(row[7])} for row in rows]

    async def _read(self, sql: str, args: tuple[Any, ...], convert: Callable[[list[Any]], list[Any]]) -> list[Any]:
        """Run a query on the reader thread; ``convert`` (also there) turns its rows into the answer."""
        target = self._appended
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read_sync, sql, args, target,
                                                                convert)

    def _read_sync(self, sql: str, args: tuple[Any, ...], target: int,
                   convert: Callable[[list[Any]], list[Any]]) -> list[Any]:
        with self._done:  # read your writes: wait for what was queued before the query (bounded)
            if self._committed < target:
                self._cut.set()
                self._done.wait_for(lambda: self._committed >= target or self._closing, timeout=5)
        if self._read_conn is None:
            self._read_conn = _connect(self.path)
        return convert(self._read_conn.execute(sql, args).fetchall())

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Write what is queued, stop both threads, close the database."""
        with self._done:
            self._closing = True
            self._done.notify_all()
        self._cut.set()
        self._queued.set()
        self._writer.join(timeout=30)
        self._readers.shutdown(wait=True)
        if self._read_conn is not None:
            self._read_conn.close()


def _records(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [_record(row) for row in rows]


def _window(account_id: str | None, since: float | None, until: float | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    if account_id is not None:
        clauses.append("account = ?")
        args.append(account_id)
    if since is not None:
        clauses.append("created_at >= ?")
        args.append(since)
    if until is not None:
        clauses.append("created_at < ?")
        args.append(until)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)


def _import_jsonl(conn: sqlite3.Connection, directory: str) -> None:
    """Move the history of the old file-based usage log into the database, once.

    The import and its mark in ``meta`` are one transaction, so a crash during
    it imports again from scratch rather than twice. Unreadable lines (a torn
    tail) are skipped and counted.
    """
    paths = [p for p in (os.path.join(directory, JSONL_NAME + ".1"), os.path.join(directory, JSONL_NAME))
             if os.path.exists(p)]
    if not paths or conn.execute("SELECT 1 FROM meta WHERE name = 'jsonl_imported'").fetchone():
        return
    bad = imported = 0
    conn.execute("BEGIN")
    for path in paths:
        with open(path, "rb") as handle:
            rows, skipped = _jsonl_rows(handle)
            _insert_rows(conn, rows)
            imported += len(rows)
            bad += skipped
    conn.execute("INSERT INTO meta (name, value) VALUES ('jsonl_imported', ?)", (repr(time.time()),))
    conn.execute("COMMIT")
    for path in paths:
        os.replace(path, path + ".imported")
    log.info("imported %d usage records from %s into %s (%d unreadable lines skipped)", imported,
             ", ".join(paths), DB_NAME, bad)


def _jsonl_rows(lines: Iterable[bytes]) -> tuple[list[tuple[Any, ...]], int]:
    rows, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            rows.append(_json_row(orjson.loads(line)))
        except (ValueError, TypeError, KeyError):
            bad += 1
    return rows, bad
