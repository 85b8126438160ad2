"""The shared ledger: one Redis behind every gateway process and machine.

Money (see ``redis_scripts.py``): reserve and settle are each one Lua script,
so two gateways cannot both spend the last dollar. A reservation carries an
expiry that its gateway renews while the request runs; a gateway that dies
stops renewing and its holds are given back within ``state.reservation_ttl_s``.
A settle is keyed by the reservation id (the request id), so a settle retried
after a lost reply is charged once. A settle that returned is the durability
point: how much survives a Redis crash is Redis's persistence setting
(``appendfsync always`` or ``everysec``; see docs/scale-out.md).

Authentication: key lookups are cached in this process and invalidated over
Redis pub/sub (``revoke``, ``key``, ``account`` events), so the hot path makes
no Redis round trip for auth and a revocation reaches every gateway in
milliseconds. The cache is used only while the subscription is live (it is
cleared on every resubscribe, since events may have been missed); without it
every lookup goes to Redis. Reserve re-checks ``revoked`` inside its script,
so even a stale cache never lets a revoked key spend.

Redis unreachable: every operation that needs it raises ``LedgerUnavailable``
(a 503 in the client's protocol shape: fail closed, nothing free), ``available``
turns False (``/readyz`` 503), and a background loop pings every second and
picks up again as soon as Redis answers: no restart.

All calls run on the gateway's IOLoop (``redis_wire`` for the scripts, ``redis.asyncio`` for the rest): nothing
here blocks it.
The connection and fail-closed calls are in ``redis_store.py``; accounts, keys,
credits, usage and export/import in ``redis_accounts.py``, which this class extends.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable, Sequence

import orjson
from redis.exceptions import RedisError

from gateway.config import Account
from gateway.ledger.backend import TOUCH_INTERVAL_S, Reservation, record_tokens, usage_record
from gateway.ledger.checks import check_cost
from gateway.ledger.errors import (
    InsufficientBalance,
    KeyLimitExceeded,
    KeyRevoked,
    LedgerUnavailable,
    UnknownAccount,
)
from gateway.ledger.keys import AuthStatus, KeyInfo, KeyRecord, hash_key, key_prefix, new_key_id
from gateway.ledger.money import usd_to_nano
from gateway.ledger.redis_accounts import RedisAccounts
from gateway.ledger.limits import refusal, window_end
from gateway.ledger.redis_store import key_record, log, pairs, safe_url, window_args

AUTH_CACHE_S = 30.0  # a known key's record, while the invalidation channel is live
NEGATIVE_CACHE_S = 2.0  # an unknown key (a "key" event clears it sooner)
AUTH_CACHE_MAX = 100_000
SETTLED_TTL_S = 7 * 24 * 3600  # how long a settle is remembered for idempotence
HEALTH_INTERVAL_S = 1.0
PUBSUB_PING_S = 3.0
PUBSUB_DEAD_S = 10.0
MAX_PENDING_SETTLES = 100_000


class RedisBackend(RedisAccounts):
    """The ``LedgerBackend`` on Redis (see the module doc); one per gateway process."""

    kind = "redis"

    def __init__(self, url: str, prefix: str = "infermesh:", accounts: Sequence[Account] = (), *,
                 reservation_ttl_s: float = 60.0, clock: Callable[[], float] = time.time,
                 socket_timeout_s: float = 2.0, usage_retention_days: int = 400) -> None:
        super().__init__(url, prefix, clock, socket_timeout_s)
        self._retention_s = usage_retention_days * 86400
        self._bootstrap_accounts = tuple(accounts)
        self._bootstrapped = not accounts
        self._usage_migrated = False
        self._ttl_ms = int(reservation_ttl_s * 1000)
        self._subscribed = False
        self._live: dict[str, Reservation] = {}  # this process's holds, renewed until settled or released
        self._touched: dict[str, float] = {}  # management key id -> when this process last recorded its use
        self._pending: list[tuple[Reservation, int, dict[str, Any]]] = []  # settles waiting for Redis
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._rid_seed = os.urandom(4).hex()
        self._rid_count = 0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available and self._bootstrapped

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    @property
    def last_seq(self) -> int | None:
        return None  # no journal: Redis persists on its own

    async def snapshot(self) -> bool:
        return False  # Redis persists on its own (its RDB/AOF settings, docs/scale-out.md)

    def observe_fsync(self, hook: Callable[[float], None]) -> None:
        return None

    async def start(self) -> None:
        """One attempt now; the health loop keeps trying (bootstrap included) while Redis is down."""
        await self._check()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._health_loop()), loop.create_task(self._listen_loop()),
                       loop.create_task(self._renew_loop())]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # The loops see _closed within a second. Cancelling a task that is inside a redis-py read can be
        # swallowed there (the read then waits on without its timeout), so cancel only what is left after that.
        if self._tasks:
            _, left = await asyncio.wait(self._tasks, timeout=2.5)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left, timeout=0.5)
        if self._pending:
            await self._flush_pending()
        if self._pending:
            log.error("ledger: %d settles could not reach Redis before exit and are lost: %s", len(self._pending),
                      [(r.id, r.account_id, cost) for r, cost, _ in self._pending[:100]])
        for reservation in list(self._live.values()):  # a stopping gateway gives its holds back now
            try:
                await self._script("RELEASE", reservation.id)
            except LedgerUnavailable:
                break
        await self._close_connections()

    async def _check(self) -> bool:
        """Ping (a purge of expired holds doubles as the ping), bootstrap once, flush queued settles."""
        try:
            await self._scripts["PURGE"](args=[self.prefix, 1000])
            if not self._bootstrapped:
                await self._bootstrap()
            if not self._usage_migrated:
                moved = await self._scripts["MIGRATE_USAGE"](args=[self.prefix])
                if moved:
                    log.info("ledger: moved %d usage records from lists to time-indexed sets", moved)
                self._usage_migrated = True
        except (RedisError, OSError) as exc:
            self._down(exc)
            return False
        if not self._available:
            log.warning("ledger: Redis at %s is reachable", safe_url(self.url))
        self._available = True
        self._last_error = None
        if self._pending:
            await self._flush_pending()
        return True

    async def _health_loop(self) -> None:
        while not self._closed:
            await self._pause(HEALTH_INTERVAL_S)
            if self._closed:
                return
            try:
                await self._check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ledger: health check failed")

    async def _pause(self, seconds: float) -> None:
        """Sleep, in short steps so that ``close`` is seen within a tenth of a second."""
        deadline = time.monotonic() + seconds
        while not self._closed and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, max(deadline - time.monotonic(), 0)))

    async def _bootstrap(self) -> None:
        """Config accounts and keys, added only when Redis does not know them (as the embedded ledger does)."""
        now = self._clock()
        for account in self._bootstrap_accounts:
            await self._scripts["CREATE_ACCOUNT"](args=[self.prefix, account.id,
                                                        str(usd_to_nano(account.balance_usd)), repr(now)])
            for key in account.keys:
                record = KeyRecord(new_key_id(), account.id, hash_key(key), "config", key_prefix(key), None, None,
                                   None, now)
                await self._add_key_record(record)
        self._bootstrapped = True

    # -- plumbing ---------------------------------------------------------------------

    def _new_rid(self) -> str:
        self._rid_count += 1
        return f"{self._rid_seed}-{self._rid_count}-{os.urandom(6).hex()}"

    # -- authentication ---------------------------------------------------------------

    async def authenticate(self, api_key: str) -> tuple[AuthStatus, KeyInfo | None]:
        digest = hash_key(api_key)
        record: KeyRecord | None
        cached = self._auth.get(digest) if self._subscribed else None
        if cached is not None and cached[0] > time.monotonic():
            record = cached[1]
        else:
            fields = await self._script("LOOKUP", digest)
            record = key_record(pairs(fields)) if fields else None
            if self._subscribed:
                if len(self._auth) >= AUTH_CACHE_MAX:
                    self._auth.clear()
                ttl = AUTH_CACHE_S if record is not None else NEGATIVE_CACHE_S
                self._auth[digest] = (time.monotonic() + ttl, record)
        if record is None:
            return AuthStatus.UNKNOWN, None
        return record.status(self._clock())

    async def _listen_loop(self) -> None:
        """Invalidate cached keys on ``revoke``/``key``/``account`` events; resubscribe after any loss."""
        channel = self._k("events")
        while not self._closed:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                self._auth.clear()  # events may have been missed while unsubscribed
                self._subscribed = True
                last_seen = last_ping = time.monotonic()
                while not self._closed:
                    message = await pubsub.get_message(timeout=0.5)
                    now = time.monotonic()
                    if message is not None:
                        last_seen = now
                        if message.get("type") == "message":
                            self._on_event(str(message.get("data")))
                    if now - last_ping >= PUBSUB_PING_S:
                        last_ping = now
                        await pubsub.ping()
                    if now - last_seen > PUBSUB_DEAD_S:
                        raise ConnectionError("no answer on the pub/sub connection")
            except asyncio.CancelledError:
                self._subscribed = False
                raise
            except Exception as exc:
                if self._subscribed:
                    log.warning("ledger: lost the key invalidation channel (%s: %s); auth goes to Redis until "
                                "it is back", type(exc).__name__, exc)
            finally:
                self._subscribed = False
                self._auth.clear()
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await self._pause(HEALTH_INTERVAL_S)

    def _on_event(self, data: str) -> None:
        kind, _, subject = data.partition(" ")
        if kind in ("revoke", "key"):
            self._auth.pop(subject, None)
        elif kind == "account":
            for digest, (_, record) in list(self._auth.items()):
                if record is not None and record.account_id == subject:
                    self._auth.pop(digest, None)
        else:
            self._auth.clear()

    # -- the request path -------------------------------------------------------------

    async def reserve(self, key: KeyInfo, amount_nano: int, request_id: str | None = None,
                      tokens: int = 0) -> Reservation:
        rid = request_id or self._new_rid()
        now = self._clock()
        tokens = max(int(tokens), 0)
        result = await self._script("RESERVE", rid, key.account_id, key.key_id, str(max(int(amount_nano), 0)),
                                    self._ttl_ms, str(int(now * 1000)), str(tokens), *window_args(now))
        code = int(result[0])
        if code == 1:
            rated = key.rpm is not None or key.tpm is not None or key.max_concurrent is not None
            reservation = Reservation(key.account_id, key.key_id, int(result[1]), rid, tokens if rated else None)
            self._live[rid] = reservation
            return reservation
        if code == -1:
            raise InsufficientBalance.of(key.account_id, int(result[1]), int(result[2]))
        if code == -2:
            period = key.limit_period
            raise KeyLimitExceeded.of(key.key_id, int(result[1]), period,
                                      None if period is None else window_end(period, now))
        if code == -6:  # rate limited: reason, requests, tokens, in flight, ms until each frees up
            raise refusal(str(result[1]), key.rpm, key.tpm, key.max_concurrent, requests_used=int(result[2]),
                          tokens_used=int(result[3]), inflight=int(result[4]),
                          requests_reset_s=int(result[5]) / 1000, tokens_reset_s=int(result[6]) / 1000)
        if code == -3:
            raise UnknownAccount(f"no account {key.account_id!r}")
        if code == -4:
            self._auth.clear()
            raise KeyRevoked(f"key {key.key_id} has been revoked")
        raise ValueError(f"reservation {rid} was already settled")

    async def settle(self, reservation: Reservation, cost_nano: int, record: dict[str, Any], *,
                     deferrable: bool = False) -> None:
        """One script: release the hold, charge, remember the usage; charged once per reservation id."""
        try:
            check_cost(cost_nano)
        except ValueError:
            await self.release(reservation)
            raise
        usage = usage_record(reservation, cost_nano, record)
        try:
            await self._settle(reservation, cost_nano, usage)
        except LedgerUnavailable:
            if not deferrable:  # not delivered, not charged: stop renewing, the hold expires in Redis
                self._live.pop(str(reservation.id), None)
                raise
            if len(self._pending) < MAX_PENDING_SETTLES:
                self._pending.append((reservation, cost_nano, usage))
            log.error("ledger: settle of %s (%s nano on %s) queued until Redis is back", reservation.id, cost_nano,
                      reservation.account_id)

    async def _settle(self, reservation: Reservation, cost_nano: int, usage: dict[str, Any]) -> bool:
        now = self._clock()
        applied = await self._script("SETTLE", reservation.id, reservation.account_id, reservation.key_id,
                                     str(cost_nano), repr(now), orjson.dumps(usage), SETTLED_TTL_S,
                                     repr(float(usage.get("created_at") or now)), self._retention_s,
                                     str(record_tokens(usage)), str(int(now * 1000)), *window_args(now))
        self._live.pop(str(reservation.id), None)
        return bool(applied)

    async def touch(self, key: KeyInfo) -> None:
        """``last_used_at`` of a management key, at most once per TOUCH_INTERVAL_S from this process.

        The KeyInfo may come from the auth cache and predate this process's last touch, so the time of that
        touch is remembered here too."""
        now = self._clock()
        last = max(key.last_used_at or 0.0, self._touched.get(key.key_id, 0.0))
        if now - last >= TOUCH_INTERVAL_S:
            if len(self._touched) >= AUTH_CACHE_MAX:
                self._touched.clear()
            self._touched[key.key_id] = now
            await self._call(lambda: self._redis.hset(self._k("key", key.key_id), "last_used_at", repr(now)))

    async def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for index, (reservation, cost, usage) in enumerate(pending):
            try:
                await self._settle(reservation, cost, usage)
            except LedgerUnavailable:
                self._pending = pending[index:] + self._pending
                return
            log.warning("ledger: queued settle of %s applied", reservation.id)

    async def release(self, reservation: Reservation) -> None:
        self._live.pop(str(reservation.id), None)
        try:
            await self._script("RELEASE", reservation.id)
        except LedgerUnavailable:
            pass  # the hold expires on its own within reservation_ttl_s

    async def _renew_loop(self) -> None:
        interval = max(self._ttl_ms / 3000.0, 0.2)
        while not self._closed:
            await self._pause(interval)
            rids = list(self._live)
            for start in range(0, len(rids), 1000):
                try:
                    await self._script("RENEW", self._ttl_ms, *rids[start:start + 1000])
                except LedgerUnavailable:
                    break
