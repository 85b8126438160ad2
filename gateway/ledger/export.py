"""The portable ledger document that ``--export-ledger`` writes and ``--import-ledger`` reads.

One format for both backends, so a ledger moves between them: accounts with their
balances, keys as hashes with their options (never plaintext), and the applied credit
references. In-flight holds and usage history are not part of it.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.ledger.state import LedgerState

EXPORT_FORMAT = "infermesh-ledger"
EXPORT_VERSION = 1


def export_document(state: LedgerState) -> dict[str, Any]:
    """The portable form of a ledger state, sorted so two exports of one state compare equal."""
    snapshot = state.to_snapshot()
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": time.time(),
            "accounts": sorted(snapshot["accounts"], key=lambda a: a["id"]),
            "keys": sorted(snapshot["keys"], key=lambda k: (k["account"], k["created_at"], k["key_id"])),
            "credit_refs": sorted(snapshot["credit_refs"])}


def check_document(data: Any) -> LedgerState:
    """Validate an export (ValueError says what is wrong) and return it as a ledger state."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT or data.get("version") != EXPORT_VERSION:
        raise ValueError(f"not an Infer Mesh ledger export (format {EXPORT_FORMAT!r} version {EXPORT_VERSION})")
    try:
        state = LedgerState.from_snapshot({"seq": 0, "accounts": data["accounts"], "keys": data["keys"],
                                           "credit_refs": data.get("credit_refs", [])})
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed ledger export: {type(exc).__name__}: {exc}") from None
    return state
