"""The ledger's in-memory state and the one function that changes it: ``apply``.

Every durable change is a journal entry, and the live ledger changes its
state by applying the very entry it just journaled. Recovery replays the
same entries through the same ``apply``, so a restarted ledger cannot
disagree with the one that wrote the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.ledger.errors import LedgerCorrupt
from gateway.ledger.journal import read_journal
from gateway.ledger.keys import KeyRecord
from gateway.ledger.snapshot import read_snapshot, snapshot_path


@dataclass(slots=True)
class AccountState:
    """Balance is durable; ``reserved_nano`` (in-flight requests) dies with the process."""

    id: str
    balance_nano: int
    reserved_nano: int = 0
    key_ids: list[str] = field(default_factory=list)


class LedgerState:
    """Accounts, keys (by id and by hash), applied credit references, last applied seq."""

    def __init__(self) -> None:
        self.seq = 0
        self.accounts: dict[str, AccountState] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.by_hash: dict[str, KeyRecord] = {}
        self.credit_refs: set[str] = set()

    def apply(self, entry: dict[str, Any]) -> None:
        """Apply one journal entry; KeyError/TypeError/ValueError mean it does not fit this state."""
        op = entry["op"]
        if op == "charge":
            self.charge(entry["account"], entry["key_id"], entry["nano"], entry["at"])
        elif op == "credit":
            self.accounts[entry["account"]].balance_nano += entry["nano"]
            self.credit_refs.add(entry["ref"])
        elif op == "account":
            if entry["account"] in self.accounts:
                raise ValueError(f"account {entry['account']!r} created twice")
            self.accounts[entry["account"]] = AccountState(entry["account"], int(entry["nano"]))
        elif op == "key":
            self.add_key(KeyRecord.from_state(entry["key"]))
        elif op == "touch":
            self.keys[entry["key_id"]].last_used_at = entry["at"]
        elif op == "revoke":
            self.keys[entry["key_id"]].revoked = True
        else:
            raise ValueError(f"unknown operation {op!r}")
        self.seq = entry["seq"]

    def charge(self, account_id: str, key_id: str, nano: int, at: float) -> None:
        """A ``charge`` entry's change; the live ledger calls it directly for the charge it just journaled."""
        self.accounts[account_id].balance_nano -= nano
        self.keys[key_id].charge(nano, at)

    def add_key(self, record: KeyRecord) -> None:
        """Index a key under its account, id and hash (replay, snapshots, imports)."""
        self.accounts[record.account_id].key_ids.append(record.key_id)
        self.keys[record.key_id] = record
        self.by_hash[record.key_hash] = record

    def to_snapshot(self) -> dict[str, Any]:
        """Everything durable, as of ``seq``."""
        return {
            "seq": self.seq,
            "accounts": [{"id": a.id, "balance_nano": a.balance_nano} for a in self.accounts.values()],
            "keys": [k.to_state() for k in self.keys.values()],
            "credit_refs": sorted(self.credit_refs),
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> LedgerState:
        """Inverse of ``to_snapshot``; KeyError/TypeError/ValueError on a malformed one."""
        state = cls()
        state.seq = int(data["seq"])
        for account in data["accounts"]:
            state.accounts[str(account["id"])] = AccountState(str(account["id"]), int(account["balance_nano"]))
        for key in data["keys"]:
            state.add_key(KeyRecord.from_state(key))
        state.credit_refs = {str(ref) for ref in data["credit_refs"]}
        return state


def recover(directory: str) -> LedgerState:
    """The last snapshot plus every journal entry after it; LedgerCorrupt names a bad file."""
    data = read_snapshot(directory)
    try:
        state = LedgerState() if data is None else LedgerState.from_snapshot(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerCorrupt(f"ledger snapshot {snapshot_path(directory)} is corrupt: "
                            f"{type(exc).__name__}: {exc}") from None
    for path, entry in read_journal(directory, state.seq):
        try:
            state.apply(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerCorrupt(f"ledger journal {path}: entry seq {entry.get('seq')} cannot be applied: "
                                f"{type(exc).__name__}: {exc}") from None
    return state
