"""The ledger: accounts, keys and integer balances; reserve -> settle | release.

Everything here runs on the IOLoop thread and never waits for the disk:
a change is one journal line handed to the OS (see journal.py), then applied
to the in-memory state by the same ``LedgerState.apply`` that recovery uses
(a charge, the one change per request, by ``LedgerState.charge``, which apply
calls too). The other threads are the journal's fsync thread, the snapshot
thread and the usage store's writer and reader (usage_db.py).

Snapshots are taken by whoever owns the schedule (the server, every
``state.snapshot_interval_s``, written on a snapshot thread), by ``close``,
and once at ``open`` so that every process starts a fresh journal file after
a clean snapshot.
"""

from __future__ import annotations

import fcntl
import hmac
import itertools
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

from gateway.config import Account
from gateway.ledger.errors import (
    AccountExists,
    InsufficientBalance,
    KeyLimitExceeded,
    LedgerCorrupt,
    LedgerLocked,
    UnknownAccount,
)
from gateway.ledger.backend import TOUCH_INTERVAL_S, Reservation, amounts_view, record_tokens
from gateway.ledger.checks import check_account, check_cost, check_credit, check_new_key
from gateway.ledger.journal import Journal, charge_head
from gateway.ledger.keys import (
    API_KEY,
    AuthStatus,
    KeyInfo,
    KeyRecord,
    generate_key,
    hash_key,
    key_prefix,
    new_key_id,
)
from gateway.ledger.limits import NO_LIMITS, KeyLimits, KeyRates, window_end
from gateway.ledger.money import usd_to_nano
from gateway.ledger.snapshot import write_snapshot
from gateway.ledger.state import AccountState, LedgerState, recover
from gateway.ledger.usage_db import UsageStore, usage_row

__all__ = ["AuthStatus", "InsufficientBalance", "KeyInfo", "KeyLimitExceeded", "Ledger", "LedgerCorrupt",
           "LedgerLocked", "Reservation", "UnknownAccount"]


class Ledger:
    """Balances, keys and usage of every account, durable across ``kill -9``. Use ``Ledger.open``."""

    def __init__(self, directory: str, state: LedgerState, journal: Journal, usage: UsageStore,
                 clock: Callable[[], float], lock_fd: int) -> None:
        """Private: ``Ledger.open`` builds the parts, recovering the state first."""
        self.directory = directory
        self._state = state
        self._journal = journal
        self._usage = usage
        self._clock = clock
        self._lock_fd = lock_fd
        self._reservations: dict[int | str, Reservation] = {}
        self._rates: dict[str, KeyRates] = {}  # keys with rate limits and recent or in-flight requests
        self._charge_heads: dict[str, bytes] = {}  # key id -> charge_head(account, key), made at its first charge
        self._reservation_ids = itertools.count(1)
        self._snapshot_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infermesh-snapshot")
        self._snapshot_pending: Future[None] | None = None
        self._closed = False

    @classmethod
    def open(cls, state_dir: str, accounts: Sequence[Account], clock: Callable[[], float] = time.time, *,
             fsync_interval_s: float = 0.02, usage_retention_days: int = 400,
             usage_batch_s: float = 0.2) -> Ledger:
        """Create the directory if needed, recover (snapshot + journal), then add config accounts and keys.

        Config accounts are only a bootstrap: one already in the ledger keeps
        its ledger balance, and a config key already known (by hash) is left
        as it is, revoked or not.
        """
        balances = [(account, usd_to_nano(account.balance_usd)) for account in accounts]
        lock_fd = lock_state_dir(state_dir)
        try:
            state = recover(state_dir)
            write_snapshot(state_dir, state.to_snapshot())
            journal = Journal(state_dir, state.seq, fsync_interval_s)
        except BaseException:
            os.close(lock_fd)
            raise
        try:
            usage = UsageStore(state_dir, usage_retention_days, usage_batch_s, clock)
        except BaseException:
            journal.close()
            os.close(lock_fd)
            raise
        ledger = cls(state_dir, state, journal, usage, clock, lock_fd)
        try:
            for account, balance in balances:
                if account.id not in state.accounts:
                    ledger.create_account(account.id, balance)
                for key in account.keys:
                    if hash_key(key) not in state.by_hash:
                        ledger._add_key(account.id, key, "config", None, None, None)
        except BaseException:
            ledger.close()
            raise
        return ledger

    @property
    def state(self) -> LedgerState:
        """The live state (read-only by convention: changes go through the journal); for exports."""
        return self._state

    # -- observability -------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Sequence number of the last journaled change (for ops and crash tests)."""
        return self._journal.last_seq

    @property
    def on_fsync(self) -> Callable[[float], None] | None:
        """Hook called on the fsync thread with each journal fsync's duration in seconds."""
        return self._journal.on_fsync

    @on_fsync.setter
    def on_fsync(self, hook: Callable[[float], None] | None) -> None:
        self._journal.on_fsync = hook

    @property
    def fsync_seconds(self) -> deque[float]:
        """The most recent journal fsync durations (seconds), oldest first."""
        return self._journal.fsync_seconds

    # -- the request path ----------------------------------------------------------

    def authenticate(self, api_key: str) -> tuple[AuthStatus, KeyInfo | None]:
        """Find a key by its hash, confirm in constant time, and say why it is refused if it is.

        Revoked and expired keys come back with their KeyInfo so the caller can
        log which key it was; an unknown key comes back with None.
        """
        digest = hash_key(api_key)
        record = self._state.by_hash.get(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            return AuthStatus.UNKNOWN, None
        return record.status(self._clock())

    def reserve(self, key: KeyInfo, amount_nano: int, tokens: int = 0) -> Reservation:
        """Hold ``min(estimate, available, key's remaining limit)`` while the request runs.

        Admission only needs *something* available, so a request that would
        cost more than what is left still runs and may take the balance
        slightly negative at settle: bounded by one request, never by many,
        because in-flight reservations count against what is available. The
        key's spend window is judged the same way; then its rate limits
        (limits.py), where ``tokens`` is the request's estimate for ``tpm``.
        """
        account = self._state.accounts[key.account_id]
        available = account.balance_nano - account.reserved_nano
        if available <= 0:
            raise InsufficientBalance.of(account.id, account.balance_nano, account.reserved_nano)
        # comparisons, not min/max: this runs once per request, and a builtin call costs ten comparisons
        amount = available if amount_nano > available else (amount_nano if amount_nano > 0 else 0)
        record = self._state.keys[key.key_id]
        counted = None
        if (record.limit_nano is not None or record.rpm is not None or record.tpm is not None
                or record.max_concurrent is not None):
            amount, counted = self._apply_key_limits(record, amount, tokens)
        account.reserved_nano += amount
        record.reserved_nano += amount
        reservation = Reservation(account.id, record.key_id, amount, next(self._reservation_ids), counted)
        self._reservations[reservation.id] = reservation
        return reservation

    def _apply_key_limits(self, record: KeyRecord, amount: int, tokens: int) -> tuple[int, int | None]:
        """The key's spend window caps ``amount``; its rate limits count the request (``tokens`` for ``tpm``).

        Returns the amount to hold and the tokens counted (None for a key without rate limits).
        """
        now = self._clock()
        if record.limit_nano is not None:
            remaining = record.limit_nano - record.window_spent(now) - record.reserved_nano
            if remaining <= 0:
                period = record.limit_period
                raise KeyLimitExceeded.of(record.key_id, record.limit_nano, period,
                                          None if period is None else window_end(period, now))
            amount = min(amount, remaining)
        counted = None
        if record.rpm is not None or record.tpm is not None or record.max_concurrent is not None:
            rates = self._rates.get(record.key_id)
            if rates is None:
                rates = self._rates[record.key_id] = KeyRates()
            counted = max(int(tokens), 0)
            rates.admit(now, counted, record.rpm, record.tpm, record.max_concurrent)
        return amount, counted

    def settle(self, reservation: Reservation, cost_nano: int, record: dict[str, Any]) -> None:
        """Journal the charge, release the hold, charge the actual cost, record the usage.

        The charge is in the OS's hands before this returns. ``record`` gets
        ``account``, ``key_id`` and ``cost_usd`` filled in (on a copy). Settling
        twice, or after ``release``, raises ValueError instead of charging twice.
        If the cost is negative or the journal write fails, the error propagates, nothing is charged,
        and the hold is released all the same: the request is over either way.
        """
        if reservation.id not in self._reservations:
            raise ValueError(f"reservation {reservation.id} was already settled or released")
        account_id, key_id = reservation.account_id, reservation.key_id
        try:
            check_cost(cost_nano)
            head = self._charge_heads.get(key_id)
            if head is None:
                head = self._charge_heads[key_id] = charge_head(account_id, key_id)
            at = self._clock()
            # Journal first, then apply (as _commit does, without the entry dict: the same change apply makes).
            seq = self._journal.append_charge(head, cost_nano, at, record.get("request_id"))
            self._state.charge(account_id, key_id, cost_nano, at)
            self._state.seq = seq
        finally:
            self._drop(reservation, None if reservation.tokens is None else record_tokens(record))
        self._usage.append(usage_row(account_id, key_id, cost_nano, record))

    def release(self, reservation: Reservation) -> None:
        """Give back a hold without charging (a failed attempt with no output); no-op if already done."""
        self._drop(reservation, None)

    def _drop(self, reservation: Reservation, used_tokens: int | None) -> None:
        """End a hold: money back to available, and the key's in-flight slot and token estimate freed."""
        if self._reservations.pop(reservation.id, None) is None:
            return
        self._state.accounts[reservation.account_id].reserved_nano -= reservation.amount_nano
        self._state.keys[reservation.key_id].reserved_nano -= reservation.amount_nano
        if reservation.tokens is not None:
            rates = self._rates[reservation.key_id]
            rates.finish(self._clock(), reservation.tokens, used_tokens)
            if rates.idle:
                del self._rates[reservation.key_id]

    def touch(self, key_id: str) -> None:
        """A management key was used: journal ``last_used_at``, at most once per TOUCH_INTERVAL_S."""
        record = self._state.keys[key_id]
        now = self._clock()
        if record.last_used_at is None or now - record.last_used_at >= TOUCH_INTERVAL_S:
            self._commit("touch", {"key_id": key_id, "at": now})

    # -- administration ------------------------------------------------------------

    def credit(self, account_id: str, amount_nano: int, reference: str) -> bool:
        """Add money once per ``reference`` (global, kept forever); False if it was applied before."""
        self._account(account_id)
        check_credit(amount_nano, reference)
        if reference in self._state.credit_refs:
            return False
        self._commit("credit", {"account": account_id, "nano": amount_nano, "ref": reference, "at": self._clock()})
        return True

    def create_account(self, account_id: str, balance_nano: int = 0) -> dict[str, Any]:
        """Open an account; ValueError if the id is taken or invalid."""
        check_account(account_id, balance_nano)
        if account_id in self._state.accounts:
            raise AccountExists(f"account {account_id!r} already exists")
        self._commit("account", {"account": account_id, "nano": balance_nano, "at": self._clock()})
        return self.account(account_id)

    def account(self, account_id: str) -> dict[str, Any]:
        """Balance and keys of one account, for the admin API."""
        account = self._account(account_id)
        amounts = amounts_view(account.id, account.balance_nano, account.reserved_nano)
        del amounts["account"]
        now = self._clock()
        return {"id": account.id, **amounts,
                "keys": [self._state.keys[key_id].public(now) for key_id in account.key_ids]}

    def accounts(self) -> list[dict[str, Any]]:
        """Every account, by id."""
        return [self.account(account_id) for account_id in sorted(self._state.accounts)]

    def balance(self, account_id: str) -> dict[str, Any]:
        """What ``GET /v1/balance`` shows."""
        account = self._account(account_id)
        return amounts_view(account.id, account.balance_nano, account.reserved_nano)

    def create_key(self, account_id: str, name: str, models: Sequence[str] | None = None,
                   limit_nano: int | None = None, expires_at: float | None = None,
                   kind: str = API_KEY, limits: KeyLimits = NO_LIMITS) -> dict[str, Any]:
        """Make a key; the result is the only place its plaintext ever appears.

        ``models`` are public model ids, normalized here (aliases must be
        resolved by the caller, who has the catalogue). ``kind`` is ``api``
        (an ``sk-`` key that calls models) or ``management`` (an ``mk-`` key
        for the console, which never calls models: so it takes no model list
        and no spend limit). ``limits``: its spend window and rate limits (limits.py).
        """
        self._account(account_id)
        kind, allowed = check_new_key(name, kind, models, limit_nano, expires_at, limits)
        plaintext = generate_key(kind)
        record = self._add_key(account_id, plaintext, name, allowed, limit_nano,
                               None if expires_at is None else float(expires_at), kind, limits)
        return {"key_id": record.key_id, "key": plaintext, "account": account_id, **record.public(self._clock())}

    def revoke_key(self, key_id: str) -> bool:
        """Revoke at once (the next authenticate refuses it); False only if there is no such key.

        Revoking an already revoked key is a no-op that returns True, so the
        admin API's DELETE is idempotent.
        """
        record = self._state.keys.get(key_id)
        if record is None:
            return False
        if not record.revoked:
            self._commit("revoke", {"key_id": key_id, "at": self._clock()})
        return True

    @property
    def usage_store(self) -> UsageStore:
        """The usage records (SQLite); queried with ``await``, off the IOLoop thread."""
        return self._usage

    def check_account(self, account_id: str) -> None:
        """UnknownAccount unless the account exists."""
        self._account(account_id)

    # -- durability ----------------------------------------------------------------

    def snapshot(self) -> None:
        """Take the state, write it atomically and drop the journal files it covers, all on this thread.

        For ``close`` and tests; the periodic snapshot of a serving gateway is ``snapshot_in_background``.
        """
        self._write_snapshot(*self._take_snapshot())

    def snapshot_in_background(self) -> Future[None]:
        """Take the state now; serialize, write, fsync and drop covered journal files on the snapshot thread.

        The IOLoop thread pays only for copying the state into plain dicts: the disk work (three fsyncs,
        1-10 ms here under load, far more on a slow disk, and more with every key) would stall every
        request in flight. While one snapshot is still being written, its future is returned instead of
        starting another.
        """
        if self._snapshot_pending is None or self._snapshot_pending.done():
            self._snapshot_pending = self._snapshot_thread.submit(self._write_snapshot, *self._take_snapshot())
        return self._snapshot_pending

    def _take_snapshot(self) -> tuple[dict[str, Any], list[str]]:
        """The state as plain data and the journal files it covers, in one step of the writer's thread."""
        return self._state.to_snapshot(), self._journal.start_file()

    def _write_snapshot(self, document: dict[str, Any], covered: list[str]) -> None:
        """Make the snapshot durable, then delete what it covers (if the write fails, every file stays)."""
        write_snapshot(self.directory, document)
        self._journal.drop_files(covered)

    def close(self) -> None:
        """Final snapshot (after any still being written), stop the threads, close files, release the lock."""
        if self._closed:
            return
        self._closed = True
        try:
            self._snapshot_thread.shutdown(wait=True)  # a failed background snapshot was reported to its caller
            self.snapshot()
        finally:
            try:
                self._journal.close()
            finally:
                self._usage.close()
                os.close(self._lock_fd)

    # -- internals -----------------------------------------------------------------

    def _commit(self, op: str, fields: dict[str, Any]) -> None:
        """Journal first, then apply: memory never holds a change the disk does not."""
        self._state.apply(self._journal.append(op, fields))

    def _add_key(self, account_id: str, plaintext: str, name: str, models: frozenset[str] | None,
                 limit_nano: int | None, expires_at: float | None, kind: str = API_KEY,
                 limits: KeyLimits = NO_LIMITS) -> KeyRecord:
        key_id = new_key_id()
        while key_id in self._state.keys:
            key_id = new_key_id()
        record = KeyRecord(key_id, account_id, hash_key(plaintext), name, key_prefix(plaintext), models,
                           limit_nano, expires_at, self._clock(), kind=kind, limit_period=limits.period,
                           rpm=limits.rpm, tpm=limits.tpm, max_concurrent=limits.max_concurrent)
        self._commit("key", {"key": record.to_state()})
        return self._state.keys[key_id]

    def _account(self, account_id: str) -> AccountState:
        """The account, or UnknownAccount (a KeyError the HTTP layer maps to 404)."""
        account = self._state.accounts.get(account_id)
        if account is None:
            raise UnknownAccount(f"no account {account_id!r}")
        return account


def lock_state_dir(directory: str) -> int:
    """Create the directory if needed and lock it exclusively (the fd holds the lock until closed).

    One writer per directory: two would interleave journals. Export and import take it too, so they
    refuse a directory a running gateway holds.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LedgerLocked(f"ledger state directory {directory} is in use by another process "
                           f"(a running gateway?); stop it first") from None
    return fd
