"""The embedded ledger (``ledger.py``: memory, journal, snapshots in ``state.dir``) as a ``LedgerBackend``.

Every call on the request path runs to completion without yielding to the
IOLoop, exactly as the synchronous calls do, so a settle is journaled before
the response is written. The one call that yields is ``snapshot``: it awaits
the snapshot thread until the state it took is durable.
Also here: export and import of a *stopped* embedded ledger (its directory lock
refuses a running one), for ``--export-ledger`` / ``--import-ledger``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Sequence

from gateway.config import Account
from gateway.ledger.backend import Reservation
from gateway.ledger.export import check_document, export_document
from gateway.ledger.keys import API_KEY, AuthStatus, KeyInfo
from gateway.ledger.limits import NO_LIMITS, KeyLimits
from gateway.ledger.ledger import Ledger, lock_state_dir
from gateway.ledger.snapshot import write_snapshot
from gateway.ledger.state import recover


class EmbeddedBackend:
    """The embedded ``Ledger`` behind the async interface; zero behaviour change."""

    kind = "embedded"
    available = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @classmethod
    def open(cls, state_dir: str, accounts: Sequence[Account], fsync_interval_s: float = 0.1,
             usage_retention_days: int = 400, usage_batch_s: float = 0.2) -> EmbeddedBackend:
        return cls(Ledger.open(state_dir, accounts, fsync_interval_s=fsync_interval_s,
                               usage_retention_days=usage_retention_days, usage_batch_s=usage_batch_s))

    @property
    def last_seq(self) -> int | None:
        return self.ledger.last_seq

    async def start(self) -> None:
        return None

    async def snapshot(self) -> bool:
        await asyncio.wrap_future(self.ledger.snapshot_in_background())
        return True

    def observe_fsync(self, hook: Callable[[float], None]) -> None:
        self.ledger.on_fsync = hook

    async def authenticate(self, api_key: str) -> tuple[AuthStatus, KeyInfo | None]:
        return self.ledger.authenticate(api_key)

    async def reserve(self, key: KeyInfo, amount_nano: int, request_id: str | None = None,
                      tokens: int = 0) -> Reservation:
        return self.ledger.reserve(key, amount_nano, tokens)

    async def settle(self, reservation: Reservation, cost_nano: int, record: dict[str, Any], *,
                     deferrable: bool = False) -> None:
        self.ledger.settle(reservation, cost_nano, record)

    async def release(self, reservation: Reservation) -> None:
        self.ledger.release(reservation)

    async def touch(self, key: KeyInfo) -> None:
        self.ledger.touch(key.key_id)

    async def credit(self, account_id: str, amount_nano: int, reference: str) -> bool:
        return self.ledger.credit(account_id, amount_nano, reference)

    async def create_account(self, account_id: str, balance_nano: int = 0) -> dict[str, Any]:
        return self.ledger.create_account(account_id, balance_nano)

    async def account(self, account_id: str) -> dict[str, Any]:
        return self.ledger.account(account_id)

    async def accounts(self) -> list[dict[str, Any]]:
        return self.ledger.accounts()

    async def balance(self, account_id: str) -> dict[str, Any]:
        return self.ledger.balance(account_id)

    async def create_key(self, account_id: str, name: str, models: Sequence[str] | None = None,
                         limit_nano: int | None = None, expires_at: float | None = None,
                         kind: str = API_KEY, limits: KeyLimits = NO_LIMITS) -> dict[str, Any]:
        return self.ledger.create_key(account_id, name, models, limit_nano, expires_at, kind, limits)

    async def revoke_key(self, key_id: str) -> bool:
        return self.ledger.revoke_key(key_id)

    async def usage(self, account_id: str | None, limit: int = 100, since: float | None = None,
                    until: float | None = None) -> list[dict[str, Any]]:
        if account_id is not None:
            self.ledger.check_account(account_id)
        return await self.ledger.usage_store.query(account_id, limit, since, until)

    async def usage_summary(self, account_id: str, width: int, since: float | None = None,
                            until: float | None = None) -> list[dict[str, Any]]:
        self.ledger.check_account(account_id)
        return await self.ledger.usage_store.summary(account_id, width, since, until)

    async def export_state(self) -> dict[str, Any]:
        return export_document(self.ledger.state)

    async def import_state(self, data: dict[str, Any]) -> dict[str, int]:
        raise ValueError("import into the embedded ledger with import_embedded() while no gateway runs on it")

    async def close(self) -> None:
        self.ledger.close()


def export_embedded(state_dir: str) -> dict[str, Any]:
    """Read a stopped embedded ledger (snapshot + journal) without changing it."""
    fd = lock_state_dir(state_dir)
    try:
        return export_document(recover(state_dir))
    finally:
        os.close(fd)


def import_embedded(state_dir: str, data: dict[str, Any]) -> dict[str, int]:
    """Write an export as the snapshot of an embedded ledger that holds no account yet."""
    state = check_document(data)
    fd = lock_state_dir(state_dir)
    try:
        current = recover(state_dir)
        if current.accounts:
            raise ValueError(f"the embedded ledger in {state_dir} already holds {len(current.accounts)} "
                             f"account(s); import only into an empty one")
        state.seq = current.seq
        write_snapshot(state_dir, state.to_snapshot())
    finally:
        os.close(fd)
    return {"accounts": len(state.accounts), "keys": len(state.keys), "credit_refs": len(state.credit_refs)}
