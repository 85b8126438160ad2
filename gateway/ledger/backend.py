"""The ledger as the app sees it: one async interface, two implementations.

* ``EmbeddedBackend``: the single-process ledger (``ledger.py``: memory, journal,
  snapshots in ``state.dir``) behind thin async wrappers. Every call runs to
  completion without yielding to the IOLoop, exactly as the synchronous calls
  did, so the embedded gateway behaves as before (a settle is journaled before
  the response is written).
* ``RedisBackend`` (``redis_backend.py``): accounts, keys, balances,
  reservations, credits and usage in one Redis shared by every gateway process
  and machine; reserve and settle are single Lua scripts.

``build_backend`` picks one from ``state.backend``. Export and import use one
JSON document for both (``export_state`` / ``import_state``), so a ledger moves
between them with ``python gateway.py --export-ledger FILE`` / ``--import-ledger FILE``.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Any, Protocol, Sequence

from gateway.config import Account, Config
from gateway.ledger.errors import LedgerLocked
from gateway.ledger.keys import AuthStatus, KeyInfo
from gateway.ledger.ledger import Ledger, Reservation
from gateway.ledger.snapshot import write_snapshot
from gateway.ledger.state import LedgerState, recover

EXPORT_FORMAT = "infermesh-ledger"
EXPORT_VERSION = 1


class LedgerBackend(Protocol):
    """Every ledger operation the app uses. Amounts are integer nano-dollars; views are JSON-ready dicts."""

    kind: str  # "embedded" | "redis"

    @property
    def available(self) -> bool:
        """False while the ledger cannot be reached (Redis down): ``/readyz`` answers 503."""

    async def start(self) -> None:
        """Connect and bootstrap config accounts; a Redis that is down is retried in the background."""

    async def authenticate(self, api_key: str) -> tuple[AuthStatus, KeyInfo | None]: ...

    async def reserve(self, key: KeyInfo, amount_nano: int, request_id: str | None = None) -> Reservation:
        """InsufficientBalance / KeyLimitExceeded (402), LedgerUnavailable (503)."""

    async def settle(self, reservation: Reservation, cost_nano: int, record: dict[str, Any], *,
                     deferrable: bool = False) -> None:
        """Charge once per reservation. ``deferrable``: the output is already delivered (a stream), so when
        the ledger is unreachable the charge is queued and retried instead of raising LedgerUnavailable."""

    async def release(self, reservation: Reservation) -> None:
        """Give the hold back; never raises for an unreachable ledger (the hold expires anyway)."""

    async def credit(self, account_id: str, amount_nano: int, reference: str) -> bool: ...
    async def create_account(self, account_id: str, balance_nano: int = 0) -> dict[str, Any]: ...
    async def account(self, account_id: str) -> dict[str, Any]: ...
    async def accounts(self) -> list[dict[str, Any]]: ...
    async def balance(self, account_id: str) -> dict[str, Any]: ...
    async def create_key(self, account_id: str, name: str, models: Sequence[str] | None = None,
                         limit_nano: int | None = None, expires_at: float | None = None,
                         **options: Any) -> dict[str, Any]: ...
    async def revoke_key(self, key_id: str) -> bool: ...
    async def usage(self, account_id: str | None, limit: int = 100,
                    since: float | None = None) -> list[dict[str, Any]]: ...
    async def export_state(self) -> dict[str, Any]: ...
    async def import_state(self, data: dict[str, Any]) -> dict[str, int]: ...
    async def close(self) -> None: ...


class EmbeddedBackend:
    """The embedded ``Ledger`` behind the async interface; zero behaviour change."""

    kind = "embedded"
    available = True

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @classmethod
    def open(cls, state_dir: str, accounts: Sequence[Account], fsync_interval_s: float = 0.1) -> EmbeddedBackend:
        return cls(Ledger.open(state_dir, accounts, fsync_interval_s=fsync_interval_s))

    async def start(self) -> None:
        return None

    async def authenticate(self, api_key: str) -> tuple[AuthStatus, KeyInfo | None]:
        return self.ledger.authenticate(api_key)

    async def reserve(self, key: KeyInfo, amount_nano: int, request_id: str | None = None) -> Reservation:
        return self.ledger.reserve(key, amount_nano)

    async def settle(self, reservation: Reservation, cost_nano: int, record: dict[str, Any], *,
                     deferrable: bool = False) -> None:
        self.ledger.settle(reservation, cost_nano, record)

    async def release(self, reservation: Reservation) -> None:
        self.ledger.release(reservation)

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
                         **options: Any) -> dict[str, Any]:
        return self.ledger.create_key(account_id, name, models, limit_nano, expires_at, **options)

    async def revoke_key(self, key_id: str) -> bool:
        return self.ledger.revoke_key(key_id)

    async def usage(self, account_id: str | None, limit: int = 100,
                    since: float | None = None) -> list[dict[str, Any]]:
        return self.ledger.usage(account_id, limit, since)

    async def export_state(self) -> dict[str, Any]:
        return export_document(self.ledger._state)

    async def import_state(self, data: dict[str, Any]) -> dict[str, int]:
        raise ValueError("import into the embedded ledger with import_embedded() while no gateway runs on it")

    async def close(self) -> None:
        self.ledger.close()

    # -- embedded only: the server's snapshot timer and fsync metric -------------

    def snapshot(self) -> None:
        self.ledger.snapshot()

    @property
    def last_seq(self) -> int:
        return self.ledger.last_seq


def build_backend(config: Config) -> Any:
    """The backend ``state.backend`` names (Redis is imported only when used)."""
    if config.state.backend == "redis":
        from gateway.ledger.redis_backend import RedisBackend
        return RedisBackend(config.state.redis_url, config.state.redis_prefix, config.accounts,
                            reservation_ttl_s=config.state.reservation_ttl_s)
    return EmbeddedBackend.open(config.state.dir, config.accounts, config.state.fsync_interval_s)


# -- export / import -------------------------------------------------------------------


def export_document(state: LedgerState) -> dict[str, Any]:
    """The portable form: accounts and balances, keys (hash and options, never plaintext), credit references."""
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


def export_embedded(state_dir: str) -> dict[str, Any]:
    """Read a stopped embedded ledger (snapshot + journal) without changing it."""
    fd = _lock_dir(state_dir)
    try:
        return export_document(recover(state_dir))
    finally:
        os.close(fd)


def import_embedded(state_dir: str, data: dict[str, Any]) -> dict[str, int]:
    """Write an export as the snapshot of an embedded ledger that holds no account yet."""
    state = check_document(data)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = _lock_dir(state_dir)
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


def _lock_dir(state_dir: str) -> int:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LedgerLocked(f"ledger state directory {state_dir} is in use by a running gateway; stop it first") \
            from None
    return fd
