"""Key kinds: ``api`` keys (sk-) call models, ``management`` keys (mk-) manage an account (docs/console.md).

The kind is part of the durable key record (journal and snapshot); records
written before kinds existed read back as ``api``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest

from gateway.ledger.errors import LedgerCorrupt
from gateway.ledger.journal import journal_files
from gateway.ledger.keys import KeyInfo, KeyRecord, generate_key, key_prefix
from gateway.ledger.ledger import AuthStatus, Ledger
from gateway.ledger.snapshot import snapshot_path
from tests.ledger.ledger_fixtures import DEMO_KEY, crash_copy

OpenLedger = Callable[..., Ledger]


def info(ledger: Ledger, plaintext: str) -> KeyInfo:
    status, key = ledger.authenticate(plaintext)
    assert status is AuthStatus.OK and key is not None
    return key


def test_keys_are_api_keys_by_default(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_key("demo", "default")
    assert created["kind"] == "api" and created["key"].startswith("sk-") and created["prefix"].startswith("sk-")
    key = info(ledger, created["key"])
    assert key.kind == "api" and not key.is_management
    assert info(ledger, DEMO_KEY).kind == "api"  # config bootstrap keys are API keys
    assert all(k["kind"] == "api" for k in ledger.account("demo")["keys"])


def test_management_keys_have_their_own_prefix_and_kind(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_key("demo", "console", kind="management")
    assert created["key"].startswith("mk-") and len(created["key"]) == 3 + 43
    assert created["prefix"] == created["key"][:10] and created["kind"] == "management"
    assert "hash" not in created
    key = info(ledger, created["key"])
    assert key.kind == "management" and key.is_management and key.account_id == "demo"
    listed = {k["key_id"]: k for k in ledger.account("demo")["keys"]}
    assert listed[created["key_id"]]["kind"] == "management"


def test_management_key_with_an_expiry_expires(state_dir: Path, open_ledger: OpenLedger, clock: Any) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_key("demo", "console", expires_at=clock.now + 60, kind="management")
    assert ledger.authenticate(created["key"])[0] is AuthStatus.OK
    clock.now += 61
    status, key = ledger.authenticate(created["key"])
    assert status is AuthStatus.EXPIRED and key is not None and key.kind == "management"


def test_a_revoked_management_key_is_refused(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_key("demo", "console", kind="management")
    assert ledger.revoke_key(created["key_id"]) is True
    status, key = ledger.authenticate(created["key"])
    assert status is AuthStatus.REVOKED and key is not None and key.is_management


@pytest.mark.parametrize("options, message", [
    ({"kind": "admin"}, "key kind must be one of api, management"),
    ({"kind": None}, "key kind must be one of"),
    ({"kind": "management", "models": ["gpt-4o"]}, "management key cannot call models"),
    ({"kind": "management", "limit_nano": 1000}, "management key cannot call models"),
])
def test_bad_kinds_and_options_are_refused(state_dir: Path, open_ledger: OpenLedger, options: dict[str, Any],
                                           message: str) -> None:
    ledger = open_ledger(state_dir)
    before = ledger.last_seq
    with pytest.raises(ValueError, match=message):
        ledger.create_key("demo", "bad", **options)
    assert ledger.last_seq == before  # nothing journaled


def test_kind_is_journaled_and_survives_a_crash(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    manager = ledger.create_key("demo", "console", kind="management")
    api = ledger.create_key("demo", "ci")
    entries = [orjson.loads(line) for path in journal_files(str(state_dir))
               for line in Path(path).read_bytes().split(b"\n")[:-1]]
    kinds = {e["key"]["key_id"]: e["key"]["kind"] for e in entries if e["op"] == "key"}
    assert kinds[manager["key_id"]] == "management" and kinds[api["key_id"]] == "api"
    recovered = open_ledger(crash_copy(state_dir, tmp_path))  # snapshot at open + this journal
    assert info(recovered, manager["key"]).kind == "management"
    assert info(recovered, api["key"]).kind == "api"
    assert recovered.accounts() == ledger.accounts()


def test_kind_is_in_snapshots(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    manager = ledger.create_key("demo", "console", kind="management")
    ledger.close()
    snapshot = json.loads(Path(snapshot_path(str(state_dir))).read_text())
    assert {k["key_id"]: k["kind"] for k in snapshot["keys"]}[manager["key_id"]] == "management"
    reopened = open_ledger(state_dir)
    assert info(reopened, manager["key"]).kind == "management"


def test_records_without_a_kind_read_back_as_api_keys(state_dir: Path, tmp_path: Path,
                                                      open_ledger: OpenLedger) -> None:
    """A state directory written before key kinds existed: no ``kind`` in the snapshot or the journal."""
    ledger = open_ledger(state_dir)
    in_snapshot = ledger.create_key("demo", "old-1")
    ledger.snapshot()
    in_journal = ledger.create_key("demo", "old-2")
    old = crash_copy(state_dir, tmp_path, "old")
    path = Path(snapshot_path(str(old)))
    snapshot = json.loads(path.read_text())
    for key in snapshot["keys"]:
        del key["kind"]
    path.write_text(json.dumps(snapshot))
    for journal in journal_files(str(old)):
        lines = []
        for line in Path(journal).read_bytes().split(b"\n")[:-1]:
            entry = orjson.loads(line)
            if entry["op"] == "key":
                del entry["key"]["kind"]
            lines.append(orjson.dumps(entry))
        Path(journal).write_bytes(b"\n".join(lines) + b"\n")
    recovered = open_ledger(old)
    for created in (in_snapshot, in_journal):
        assert info(recovered, created["key"]).kind == "api"
    assert info(recovered, DEMO_KEY).kind == "api"


def test_an_unknown_kind_on_disk_is_corruption(state_dir: Path, tmp_path: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    ledger.create_key("demo", "console", kind="management")
    ledger.close()
    path = Path(snapshot_path(str(state_dir)))
    snapshot = json.loads(path.read_text())
    snapshot["keys"][-1]["kind"] = "root"
    path.write_text(json.dumps(snapshot))
    with pytest.raises(LedgerCorrupt, match="snapshot"):
        Ledger.open(str(state_dir), ())


def test_key_record_round_trip_and_generation() -> None:
    assert generate_key().startswith("sk-") and generate_key("management").startswith("mk-")
    assert generate_key("management") != generate_key("management")
    plaintext = generate_key("management")
    record = KeyRecord("key_1", "demo", "h", "console", key_prefix(plaintext), None, None, None, 1.0,
                       kind="management")
    state = record.to_state()
    assert state["kind"] == "management"
    again = KeyRecord.from_state(state)
    assert again == record and again.info().kind == "management"
    legacy = dict(state)
    del legacy["kind"]
    assert KeyRecord.from_state(legacy).kind == "api"
    # KeyInfo built positionally the old way (without kind) is an API key.
    assert KeyInfo("k", "a", "n", "p", None, None, None, 0.0, False, 0, None).kind == "api"
