"""Atomic snapshots of the whole ledger state.

A snapshot is written to a temp file in the same directory, fsynced, renamed
over ``snapshot.json`` and the directory fsynced: a reader (or a restart
after power loss) sees either the old snapshot or the new one, never half of
one. A leftover temp file means a crash mid-write; it is ignored (the old
snapshot plus the journal still hold everything) and overwritten next time.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from gateway.ledger.errors import LedgerCorrupt
from gateway.ledger.journal import fsync_directory

SNAPSHOT_NAME = "snapshot.json"
FORMAT_VERSION = 1


def snapshot_path(directory: str) -> str:
    """Where the current snapshot lives."""
    return os.path.join(directory, SNAPSHOT_NAME)


def write_snapshot(directory: str, state: dict[str, Any]) -> None:
    """Replace the snapshot atomically and durably with ``state`` (a JSON-able dict)."""
    final = snapshot_path(directory)
    temp = final + ".tmp"
    data = orjson.dumps({"version": FORMAT_VERSION, **state})
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    fsync_directory(directory)


def read_snapshot(directory: str) -> dict[str, Any] | None:
    """The last snapshot's state, or None when there is none yet (a new ledger).

    An unreadable or unparsable snapshot raises LedgerCorrupt naming the
    file: starting empty would erase every balance without a word.
    """
    path = snapshot_path(directory)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LedgerCorrupt(f"ledger snapshot {path} cannot be read: {exc.strerror}") from None
    try:
        data = orjson.loads(raw)
    except ValueError as exc:
        raise LedgerCorrupt(f"ledger snapshot {path} is corrupt: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise LedgerCorrupt(f"ledger snapshot {path} is corrupt: not a version {FORMAT_VERSION} snapshot")
    return data
