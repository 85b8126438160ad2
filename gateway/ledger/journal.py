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
a ``seq`` that increases by one. When a snapshot's state is taken the journal
starts a new file at the next seq (``start_file``); the older files, all
covered by that snapshot, are deleted once it is durable (``drop_files``),
which may be on another thread.
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
        self._retired: list[int] = []  # files start_file replaced, for the fsync thread to fsync and close
        self._fd_lock = threading.Lock()  # guards the swap of _fd and _retired, never held across an fsync
        self._wake = threading.Event()  # set = unsynced data
        self._stop = threading.Event()
        self.drop_files(self.start_file())  # the caller has just written a snapshot at last_seq
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

    def start_file(self) -> list[str]:
        """Write what follows to ``journal-<next seq>.jsonl``; return the older files, for ``drop_files``.

        Called on the writer's thread in the same step that takes a snapshot's state, so the older
        files hold exactly what that snapshot covers. They stay until the snapshot is durable: a power
        loss before then recovers from the previous snapshot and every file. The fsync thread fsyncs
        the replaced file, then the directory, before it first fsyncs the new file, so no power loss
        keeps the new file's lines while losing the old file's last ones (a gap recovery refuses).
        """
        path = os.path.join(self.directory, f"journal-{self._seq + 1:016d}.jsonl")
        # O_TRUNC: a file of this name can only hold a torn fragment that recovery already dropped.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        with self._fd_lock:
            if self._fd >= 0:
                self._retired.append(self._fd)
            self._fd, self._size = fd, 0
        self._wake.set()
        return [older for older in journal_files(self.directory) if older != path]

    def drop_files(self, paths: list[str]) -> None:
        """Delete journal files a durable snapshot covers (any thread), and make the deletion durable."""
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        fsync_directory(self.directory)

    def close(self) -> None:
        """Stop the thread, fsync what is left, close the file."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        try:
            self._sync_once()
        finally:
            os.close(self._fd)
            self._fd = -1

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
        """Fsync the files ``start_file`` replaced (then close them) and the directory, then the current file.

        The lock is held only to read the fds: the writer's thread never waits for a disk. Only this
        thread (or ``close``, after joining it) closes a replaced file, so no fd is closed under an fsync.
        """
        with self._fd_lock:
            retired, self._retired = self._retired, []
            fd = self._fd
        started = time.perf_counter()
        try:
            for old in retired:
                os.fsync(old)
            if retired:
                fsync_directory(self.directory)  # the new file's entry
            os.fsync(fd)
        except OSError:
            log.exception("fsync of the ledger journal failed: charges are not safe from power loss")
            return
        finally:
            for old in retired:
                os.close(old)
        elapsed = time.perf_counter() - started
        self.fsync_seconds.append(elapsed)
        if self.on_fsync is not None:
            try:
                self.on_fsync(elapsed)
            except Exception:
                log.exception("on_fsync hook failed")
