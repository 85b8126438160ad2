"""Append-only journal of ledger changes, with batched fsync on a background thread.

Durability has two levels, paid for differently:

* Process crash (``kill -9``, OOM): ``append`` hands the whole line to the OS
  with one ``os.write`` before it returns. The page cache outlives the
  process, so nothing that returned is lost. This is the only cost on the
  request path.
* Power loss: a daemon thread fsyncs the file within ~20 ms of a write,
  batching every line written meanwhile into one fsync. The IOLoop never
  waits for the disk.

Files are named ``journal-<first seq>.jsonl``, one JSON object per line with
a ``seq`` that increases by one. After a snapshot the journal is rotated:
a new file starts at the next seq and the older files, all covered by the
snapshot, are deleted.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from typing import Any, Callable, Iterator

import orjson

from gateway.ledger.errors import LedgerCorrupt

log = logging.getLogger("infermesh.ledger")

_NAME = re.compile(r"^journal-(\d+)\.jsonl$")


def journal_files(directory: str) -> list[str]:
    """The journal files of a state directory, oldest first (by first seq, numerically)."""
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return [path for _, path in sorted(found)]


def read_journal(directory: str, after_seq: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(file, entry)`` for every journaled entry with seq > ``after_seq``, in order.

    A fragment after a file's last newline is a line torn by a crash in the
    middle of its write (or a power loss): it never returned to a caller, so
    it is dropped with a warning. Any other unreadable line, or a gap in the
    sequence, raises LedgerCorrupt naming the file: replaying around a hole
    would silently produce wrong balances.
    """
    expected = after_seq + 1
    for path in journal_files(directory):
        with open(path, "rb") as handle:
            data = handle.read()
        lines = data.split(b"\n")
        if lines[-1]:
            log.warning("ignoring torn last line of %s (%d bytes, from a crash mid-write)", path, len(lines[-1]))
        for number, line in enumerate(lines[:-1], 1):
            try:
                entry = orjson.loads(line)
                seq = entry["seq"]
            except (ValueError, TypeError, KeyError):
                raise LedgerCorrupt(f"ledger journal {path} is corrupt at line {number}") from None
            if not isinstance(seq, int):
                raise LedgerCorrupt(f"ledger journal {path} line {number}: bad sequence {seq!r}")
            if seq <= after_seq:
                continue
            if seq != expected:
                raise LedgerCorrupt(f"ledger journal {path} line {number}: expected sequence {expected}, "
                                    f"found {seq} (entries are missing)")
            expected += 1
            yield path, entry


def charge_head(account_id: str, key_id: str) -> bytes:
    """The account and key fields of a charge entry, as JSON object members (for ``Journal.append_charge``)."""
    return b'"account":%b,"key_id":%b' % (orjson.dumps(account_id), orjson.dumps(key_id))


def fsync_directory(directory: str) -> None:
    """Make a created, renamed or deleted directory entry survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """The open journal file: ``append`` on the caller's thread, fsync on a daemon thread.

    ``on_fsync`` (if set) is called on the fsync thread with each fsync's
    duration in seconds, for a metrics histogram; ``fsync_seconds`` keeps the
    most recent durations for anyone who prefers to poll.
    """

    def __init__(self, directory: str, last_seq: int, fsync_interval_s: float = 0.02) -> None:
        """Start a new file after ``last_seq`` (everything before is in a snapshot) and the thread."""
        self.directory = directory
        self.on_fsync: Callable[[float], None] | None = None
        self.fsync_seconds: deque[float] = deque(maxlen=1024)
        self._seq = last_seq
        self._interval = fsync_interval_s
        self._fd = -1
        self._size = 0
        self._fd_lock = threading.Lock()  # guards _fd against a swap while the thread fsyncs it
        self._wake = threading.Event()  # set = unsynced data
        self._stop = threading.Event()
        self._open_next()
        self._thread = threading.Thread(target=self._run, name="infermesh-journal-fsync", daemon=True)
        self._thread.start()

    @property
    def last_seq(self) -> int:
        """The seq of the last entry written."""
        return self._seq

    def append(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Write one entry and return it (with its ``seq``) once the OS has the whole line."""
        entry = {"seq": self._seq + 1, "op": op}
        entry.update(fields)
        self._write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        return entry

    def append_charge(self, head: bytes, nano: int, at: float, request_id: str | None) -> int:
        """Write the entry ``append("charge", ...)`` would, and return its seq: the one entry of every request.

        Formatted without building and encoding a dict (half the cost): ``head`` is
        ``charge_head(account, key_id)``, the same for every charge of a key, so the caller keeps it; ``nano``
        is an int; ``at`` and ``request_id`` are encoded by orjson as ``append`` would (``repr`` of a float
        costs twice as much).
        """
        seq = self._seq + 1
        self._write(b'{"seq":%d,"op":"charge",%b,"nano":%d,"at":%b,"request_id":%b}\n'
                    % (seq, head, nano, orjson.dumps(at), orjson.dumps(request_id)))
        return seq

    def _write(self, data: bytes) -> None:
        """Hand the line with the next seq to the OS and count it; on a write error nothing counts.

        The file is cut back to its previous length, so a half-written line can never end up in the
        middle of the journal, and the error propagates: the caller must not apply an unjournaled change.
        """
        try:
            written = os.write(self._fd, data)
            if written < len(data):  # a short write (a full disk, a signal): finish it or fail
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._fd, view):]
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(data)
        self._seq += 1
        if not self._wake.is_set():
            self._wake.set()

    def rotate(self) -> None:
        """Start a new file at the next seq and delete the older ones; call only after a snapshot."""
        self._open_next()

    def close(self) -> None:
        """Stop the thread, fsync what is left, close the file."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        with self._fd_lock:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1

    def _open_next(self) -> None:
        """Switch to ``journal-<next seq>.jsonl``; the older files are covered by the snapshot just written."""
        path = os.path.join(self.directory, f"journal-{self._seq + 1:016d}.jsonl")
        # O_TRUNC: a file of this name can only hold a torn fragment that recovery already dropped.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        with self._fd_lock:
            old, self._fd, self._size = self._fd, fd, 0
            if old >= 0:
                os.close(old)
        for stale in journal_files(self.directory):
            if stale != path:
                os.unlink(stale)
        fsync_directory(self.directory)

    def _run(self) -> None:
        """Fsync whenever something was written, at most once per interval."""
        while True:
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()  # before the fsync: a write after this point sets it again
            self._sync_once()
            self._stop.wait(self._interval)

    def _sync_once(self) -> None:
        """One fsync under the fd lock, so a rotation cannot close the file under it."""
        with self._fd_lock:
            if self._fd < 0:
                return
            started = time.perf_counter()
            try:
                os.fsync(self._fd)
            except OSError:
                log.exception("fsync of the ledger journal failed: charges are not safe from power loss")
                return
            elapsed = time.perf_counter() - started
        self.fsync_seconds.append(elapsed)
        if self.on_fsync is not None:
            try:
                self.on_fsync(elapsed)
            except Exception:
                log.exception("on_fsync hook failed")
