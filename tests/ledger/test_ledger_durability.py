"""Journal, snapshots and recovery: nothing that returned is lost, nothing corrupt is trusted."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from gateway.ledger.errors import LedgerCorrupt, LedgerLocked
from gateway.ledger.journal import journal_files
from gateway.ledger.ledger import AuthStatus, Ledger
from gateway.ledger.money import nano_to_usd
from tests.ledger.ledger_fixtures import DEMO_KEY, crash_copy, usage_record

OpenLedger = Callable[..., Ledger]
REPO = Path(__file__).resolve().parents[2]


def charge(ledger: Ledger, nano: int, request_id: str = "req", key: str = DEMO_KEY) -> None:
    info = ledger.authenticate(key)[1]
    assert info is not None
    ledger.settle(ledger.reserve(info, nano), nano, usage_record(request_id))


def journal_entries(directory: Path) -> list[dict[str, Any]]:
    """Every complete line of the journal files (a torn fragment after the last newline is skipped)."""
    return [orjson.loads(line) for path in journal_files(str(directory))
            for line in Path(path).read_bytes().split(b"\n")[:-1]]


def busy_ledger(state_dir: Path, open_ledger: OpenLedger) -> tuple[Ledger, str]:
    """A ledger with history on both sides of a snapshot; returns it and a created key's plaintext."""
    ledger = open_ledger(state_dir)
    charge(ledger, 1_000)
    ledger.credit("demo", 2_000_000_000, "ref-before")
    ledger.snapshot()
    ledger.create_account("acme", 1_000)
    created = ledger.create_key("acme", "ci", models=["gpt-4o"], limit_nano=10**6, expires_at=1.8e9)
    charge(ledger, 250, key=created["key"])
    ledger.credit("demo", 5, "ref-after")
    ledger.revoke_key(ledger.authenticate(DEMO_KEY)[1].key_id)  # type: ignore[union-attr]
    return ledger, created["key"]


def test_recovery_is_snapshot_plus_journal_tail(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    ledger, key = busy_ledger(state_dir, open_ledger)
    recovered = open_ledger(crash_copy(state_dir, tmp_path))
    assert recovered.accounts() == ledger.accounts()
    assert recovered.last_seq == ledger.last_seq
    assert recovered.authenticate(key) == ledger.authenticate(key)
    assert recovered.authenticate(DEMO_KEY)[0] is AuthStatus.REVOKED
    assert recovered.credit("demo", 1, "ref-before") is False and recovered.credit("demo", 1, "ref-after") is False


def test_every_change_is_in_the_journal_before_the_call_returns(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    charge(ledger, 42, "req-42")  # no close, no snapshot, no wait for the fsync thread
    last = journal_entries(state_dir)[-1]
    assert last["op"] == "charge" and last["nano"] == 42 and last["request_id"] == "req-42"
    assert last["seq"] == ledger.last_seq


def test_reservations_do_not_survive_a_restart(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    ledger.reserve(ledger.authenticate(DEMO_KEY)[1], 10**9)  # type: ignore[arg-type]
    recovered = open_ledger(crash_copy(state_dir, tmp_path))
    assert recovered.balance("demo")["reserved_usd"] == "0.000000"


def test_torn_last_journal_line_is_dropped_with_a_warning(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    ledger, _ = busy_ledger(state_dir, open_ledger)
    crashed = crash_copy(state_dir, tmp_path)
    [journal] = journal_files(str(crashed))
    with open(journal, "ab") as handle:
        handle.write(b'{"seq": %d, "op": "charge", "account": "de' % (ledger.last_seq + 1))
    with caplog.at_level(logging.WARNING, logger="infermesh.ledger"):
        recovered = open_ledger(crashed)
    assert [r.name for r in caplog.records] == ["infermesh.ledger"] and "torn" in caplog.records[0].getMessage()
    assert recovered.accounts() == ledger.accounts() and recovered.last_seq == ledger.last_seq
    charge(recovered, 1)  # and the next seq is reused cleanly in a fresh journal file
    assert recovered.last_seq == ledger.last_seq + 1


def test_leftover_temp_snapshot_is_ignored(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    ledger, _ = busy_ledger(state_dir, open_ledger)
    crashed = crash_copy(state_dir, tmp_path)
    (crashed / "snapshot.json.tmp").write_bytes(b'{"version": 1, "seq": 999, "accou')
    assert open_ledger(crashed).accounts() == ledger.accounts()


def test_corrupt_snapshot_raises_naming_the_file(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    busy_ledger(state_dir, open_ledger)
    crashed = crash_copy(state_dir, tmp_path)
    snapshot = crashed / "snapshot.json"
    snapshot.write_bytes(snapshot.read_bytes()[:-20])
    with pytest.raises(LedgerCorrupt, match=str(snapshot)):
        Ledger.open(str(crashed), ())


def test_malformed_snapshot_structure_raises_naming_the_file(state_dir: Path, tmp_path: Path,
                                                             open_ledger: OpenLedger) -> None:
    busy_ledger(state_dir, open_ledger)
    crashed = crash_copy(state_dir, tmp_path)
    snapshot = crashed / "snapshot.json"
    snapshot.write_text('{"version": 1, "seq": 3, "accounts": [{"id": "demo"}], "keys": [], "credit_refs": []}')
    with pytest.raises(LedgerCorrupt, match=str(snapshot)):
        Ledger.open(str(crashed), ())


def test_corrupt_journal_line_in_the_middle_raises(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    busy_ledger(state_dir, open_ledger)
    crashed = crash_copy(state_dir, tmp_path)
    [journal] = journal_files(str(crashed))
    lines = Path(journal).read_bytes().splitlines(keepends=True)
    lines[1] = b"{garbage}\n"
    Path(journal).write_bytes(b"".join(lines))
    with pytest.raises(LedgerCorrupt, match=rf"{journal} is corrupt at line 2"):
        Ledger.open(str(crashed), ())


def test_gap_in_journal_sequence_raises(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    busy_ledger(state_dir, open_ledger)
    crashed = crash_copy(state_dir, tmp_path)
    [journal] = journal_files(str(crashed))
    lines = Path(journal).read_bytes().splitlines(keepends=True)
    del lines[1]
    Path(journal).write_bytes(b"".join(lines))
    with pytest.raises(LedgerCorrupt, match="entries are missing"):
        Ledger.open(str(crashed), ())


def test_snapshot_rotates_the_journal(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    charge(ledger, 1)
    [before] = journal_files(str(state_dir))
    ledger.snapshot()
    [after] = journal_files(str(state_dir))
    assert before != after and not os.path.exists(before)
    assert Path(after).name == f"journal-{ledger.last_seq + 1:016d}.jsonl" and Path(after).read_bytes() == b""
    assert orjson.loads((state_dir / "snapshot.json").read_bytes())["seq"] == ledger.last_seq
    charge(ledger, 2)
    assert [e["seq"] for e in journal_entries(state_dir)] == [ledger.last_seq]


def test_a_background_snapshot_holds_the_state_of_its_call_and_keeps_later_lines(state_dir: Path, tmp_path: Path,
                                                                                 open_ledger: OpenLedger) -> None:
    ledger, key = busy_ledger(state_dir, open_ledger)
    taken_at = ledger.last_seq
    written = ledger.snapshot_in_background()
    charge(ledger, 7, "after-the-call")  # the IOLoop goes on while the snapshot thread writes
    written.result(timeout=10)
    assert orjson.loads((state_dir / "snapshot.json").read_bytes())["seq"] == taken_at
    [journal] = journal_files(str(state_dir))  # the files the snapshot covers are gone, the new one stays
    assert Path(journal).name == f"journal-{taken_at + 1:016d}.jsonl"
    assert [(e["seq"], e["request_id"]) for e in journal_entries(state_dir)] == [(taken_at + 1, "after-the-call")]
    recovered = open_ledger(crash_copy(state_dir, tmp_path))
    assert recovered.accounts() == ledger.accounts() and recovered.last_seq == ledger.last_seq
    assert recovered.authenticate(key) == ledger.authenticate(key)


def test_snapshot_disk_work_is_off_the_calling_thread_and_keeps_journal_order(state_dir: Path,
                                                                              open_ledger: OpenLedger,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """No fsync on the caller's (IOLoop's) thread; the replaced journal file and the directory are fsynced
    before the new file ever is, so a power loss cannot keep newer lines and lose older ones."""
    ledger = open_ledger(state_dir)
    charge_synced = threading.Event()
    ledger.on_fsync = lambda seconds: charge_synced.set()
    charge(ledger, 1)
    assert charge_synced.wait(10)  # nothing left for the fsync thread before the snapshot
    [old] = journal_files(str(state_dir))
    new = os.path.join(str(state_dir), f"journal-{ledger.last_seq + 1:016d}.jsonl")
    synced: list[tuple[str, str]] = []
    new_file_synced = threading.Event()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
        synced.append((path, threading.current_thread().name))
        real_fsync(fd)
        if path == new:
            new_file_synced.set()

    monkeypatch.setattr(os, "fsync", recording_fsync)
    ledger.snapshot_in_background().result(timeout=10)
    charge(ledger, 2)
    assert new_file_synced.wait(10)
    assert not [entry for entry in synced if entry[1] == threading.current_thread().name], synced
    assert (str(state_dir / "snapshot.json.tmp"), "infermesh-snapshot_0") in synced
    journal_order = [path for path, thread in synced if thread == "infermesh-journal-fsync"]
    assert journal_order[:3] == [old, str(state_dir), new], synced  # the old file, the directory, the new file


def test_close_waits_for_a_background_snapshot_then_writes_the_final_one(state_dir: Path, tmp_path: Path,
                                                                         open_ledger: OpenLedger) -> None:
    ledger, _ = busy_ledger(state_dir, open_ledger)
    ledger.snapshot_in_background()
    charge(ledger, 9, "last")
    ledger.close()
    assert orjson.loads((state_dir / "snapshot.json").read_bytes())["seq"] == ledger.last_seq
    [journal] = journal_files(str(state_dir))
    assert Path(journal).read_bytes() == b""
    assert open_ledger(state_dir).accounts() == ledger.accounts()


def test_plaintext_keys_never_reach_the_disk(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger, created = busy_ledger(state_dir, open_ledger)
    another = ledger.create_key("demo", "later")["key"]
    charge(ledger, 3, key=created)
    ledger.close()
    for path in state_dir.iterdir():
        data = path.read_bytes()
        for key in (DEMO_KEY, created, another):
            assert key.encode() not in data, f"{key[:6]}... found in {path.name}"


def test_fsync_thread_reports_each_fsync(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    synced = threading.Event()
    ledger.on_fsync = lambda seconds: synced.set()
    charge(ledger, 1)
    assert synced.wait(5.0)
    assert ledger.fsync_seconds and all(s >= 0 for s in ledger.fsync_seconds)


def test_a_second_ledger_on_the_same_directory_is_refused(state_dir: Path, open_ledger: OpenLedger) -> None:
    open_ledger(state_dir)
    with pytest.raises(LedgerLocked, match=str(state_dir)):
        Ledger.open(str(state_dir), ())


CHILD = """
import sys
from decimal import Decimal
from gateway.config import Account
from gateway.ledger.ledger import Ledger
ledger = Ledger.open(sys.argv[1], [Account("demo", Decimal(5), ("%s",))])
key = ledger.authenticate("%s")[1]
print("ready", flush=True)
i = 0
while True:
    i += 1
    ledger.settle(ledger.reserve(key, 1000), 1000, {"request_id": f"r{i}", "created_at": 0.0})
    print(ledger.last_seq, flush=True)
""" % (DEMO_KEY, DEMO_KEY)


def test_kill_9_loses_no_settle_that_returned(state_dir: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD, str(state_dir)], cwd=REPO, stdout=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(REPO)}) as child:
        assert child.stdout is not None
        assert child.stdout.readline().startswith(b"ready")
        returned = [int(child.stdout.readline()) for _ in range(500)]  # the child keeps settling meanwhile
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        returned += [int(line) for line in child.stdout.read().split()]
    assert child.returncode == -signal.SIGKILL
    charges = {e["seq"] for e in journal_entries(state_dir) if e["op"] == "charge"}
    assert set(returned) <= charges
    ledger = Ledger.open(str(state_dir), ())
    try:
        assert ledger.last_seq >= returned[-1]
        assert ledger.balance("demo")["balance_usd"] == nano_to_usd(5 * 10**9 - len(charges) * 1000)
    finally:
        ledger.close()


@pytest.mark.parametrize("request_id", ["req-1", 'q"uo\\te/sl\u00e9sh\u2028', None])
def test_a_settle_journals_the_line_the_generic_encoder_would(state_dir: Path, tmp_path: Path, clock: Any,
                                                               open_ledger: OpenLedger, request_id: str | None) -> None:
    """The charge line is formatted by hand (append_charge); it must be byte for byte what orjson writes for the
    same entry, so that every reader of the journal (recovery, bench/usage_crash.py) sees one format."""
    clock.now = 1_765_000_000.123457
    ledger = open_ledger(state_dir)
    charge(ledger, 1_234, request_id)  # type: ignore[arg-type]
    info = ledger.authenticate(DEMO_KEY)[1]
    assert info is not None
    line = Path(journal_files(str(state_dir))[-1]).read_bytes().split(b"\n")[-2]
    expected = {"seq": ledger.last_seq, "op": "charge", "account": "demo", "key_id": info.key_id, "nano": 1_234,
                "at": clock.now, "request_id": request_id}
    assert line == orjson.dumps(expected)
    recovered = open_ledger(crash_copy(state_dir, tmp_path))
    assert recovered.accounts() == ledger.accounts() and recovered.last_seq == ledger.last_seq
