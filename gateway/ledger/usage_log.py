"""Per-request usage records: an append-only file plus a bounded in-memory index.

Usage records are not money: the charge itself is in the ledger journal,
written synchronously. So the file is buffered (flushed at each snapshot and
on close) and a crash may lose the last few records; the balance stays right.
The in-memory deques answer ``GET /v1/usage`` without touching the disk, and
are refilled from the file (and its one rotated predecessor) on start.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any

import ujson

log = logging.getLogger("infermesh.ledger")

USAGE_NAME = "usage.jsonl"


class UsageLog:
    """``usage.jsonl`` rotated to ``usage.jsonl.1`` at ``max_bytes``; the newest records per account in memory."""

    def __init__(self, directory: str, max_bytes: int = 64 * 1024 * 1024, per_account: int = 10_000,
                 overall: int = 100_000) -> None:
        """Load recent records from disk, then open the file for appending."""
        self.path = os.path.join(directory, USAGE_NAME)
        self._max_bytes = max_bytes
        self._per_account = per_account
        self._by_account: dict[str, deque[dict[str, Any]]] = {}
        self._all: deque[dict[str, Any]] = deque(maxlen=overall)
        for path in (self.path + ".1", self.path):
            self._load(path)
        self._file = open(self.path, "ab", buffering=64 * 1024)
        os.chmod(self.path, 0o600)
        self._size = self._file.tell()
        self._failing = False

    def _load(self, path: str) -> None:
        """Refill the index after a restart; unreadable lines (a torn tail) are skipped, not fatal."""
        try:
            with open(path, "rb") as handle:
                lines = handle.read().split(b"\n")
        except FileNotFoundError:
            return
        bad = 0
        for line in lines:
            if not line:
                continue
            try:
                record = ujson.loads(line)
                self._remember(record)
            except (ValueError, TypeError, KeyError):
                bad += 1
        if bad:
            log.warning("skipped %d unreadable usage records in %s", bad, path)

    def _remember(self, record: dict[str, Any]) -> None:
        """Index a record for queries; the deques drop the oldest beyond their bound."""
        account = record["account"]
        records = self._by_account.get(account)
        if records is None:
            records = self._by_account[account] = deque(maxlen=self._per_account)
        records.append(record)
        self._all.append(record)

    def append(self, record: dict[str, Any]) -> None:
        """Remember the record and queue it for the file.

        A write error is logged (once until writes succeed again) and not
        raised: the charge is already journaled, and failing the request
        now would only hide that it was billed.
        """
        self._remember(record)
        data = (ujson.dumps(record) + "\n").encode()
        try:
            if self._size + len(data) > self._max_bytes and self._size > 0:
                self._rotate()
            self._file.write(data)
            self._size += len(data)
            self._failing = False
        except OSError:
            if not self._failing:
                log.exception("cannot write usage records to %s", self.path)
            self._failing = True

    def _rotate(self) -> None:
        """Keep one predecessor file: usage history on disk is bounded to about 2 x ``max_bytes``."""
        self._file.close()
        os.replace(self.path, self.path + ".1")
        self._file = open(self.path, "ab", buffering=64 * 1024)
        os.chmod(self.path, 0o600)
        self._size = 0

    def query(self, account_id: str | None, limit: int, since: float | None) -> list[dict[str, Any]]:
        """Newest first (by settle order), at most ``limit``, ``created_at >= since``; copies."""
        source = self._all if account_id is None else self._by_account.get(account_id)
        result: list[dict[str, Any]] = []
        if source is None or limit <= 0:
            return result
        for record in reversed(source):
            if since is not None and record.get("created_at", 0) < since:
                continue
            result.append(dict(record))
            if len(result) >= limit:
                break
        return result

    def flush(self) -> None:
        """Push buffered records to the OS (called at each snapshot)."""
        try:
            self._file.flush()
        except OSError:
            log.exception("cannot write usage records to %s", self.path)

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        try:
            self._file.close()
        except OSError:
            log.exception("cannot write usage records to %s", self.path)
