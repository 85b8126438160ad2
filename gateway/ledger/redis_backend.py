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

All calls go through ``redis.asyncio`` on the gateway's IOLoop: nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import redis.asyncio as aioredis
import ujson
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.config import Account
from gateway.errors import ErrorKind, GatewayError
from gateway.ledger import redis_scripts as lua
from gateway.ledger.backend import check_document, export_document
from gateway.ledger.errors import (
    InsufficientBalance,
    KeyLimitExceeded,
    LedgerUnavailable,
    UnknownAccount,
)
from gateway.ledger.keys import (
    API_KEY,
    MANAGEMENT_KEY,
    AuthStatus,
    KeyInfo,
    KeyRecord,
    check_key_options,
    check_kind,
    generate_key,
    hash_key,
    key_prefix,
    new_key_id,
)
from gateway.ledger.ledger import Reservation, _check_text
from gateway.ledger.money import nano_to_usd, usd_to_nano
from gateway.ledger.state import AccountState, LedgerState

log = logging.getLogger("infermesh.ledger")

T = TypeVar("T")

AUTH_CACHE_S = 30.0  # a known key's record, while the invalidation channel is live
NEGATIVE_CACHE_S = 2.0  # an unknown key (a "key" event clears it sooner)
AUTH_CACHE_MAX = 100_000
SETTLED_TTL_S = 7 * 24 * 3600  # how long a settle is remembered for idempotence
USAGE_PER_ACCOUNT = 10_000
USAGE_OVERALL = 100_000
HEALTH_INTERVAL_S = 1.0
PUBSUB_PING_S = 3.0
PUBSUB_DEAD_S = 10.0
MAX_PENDING_SETTLES = 100_000


class RedisBackend:
    kind = "redis"

    def __init__(self, url: str, prefix: str = "infermesh:", accounts: Sequence[Account] = (), *,
                 reservation_ttl_s: float = 60.0, clock: Callable[[], float] = time.time,
                 socket_timeout_s: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self._bootstrap_accounts = tuple(accounts)
        self._bootstrapped = not accounts
        self._ttl_ms = int(reservation_ttl_s * 1000)
        self._clock = clock
        self._redis = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=socket_timeout_s,
                                        socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 1))
        self._scripts = {name: self._redis.register_script(getattr(lua, name))
                         for name in ("RESERVE", "SETTLE", "RELEASE", "RENEW", "PURGE", "BALANCES", "LOOKUP",
                                      "CREATE_ACCOUNT", "ADD_KEY", "REVOKE", "CREDIT")}
        self._available = False
        self._subscribed = False
        self._auth: dict[str, tuple[float, KeyRecord | None]] = {}
        self._live: dict[str, Reservation] = {}  # this process's holds, renewed until settled or released
        self._pending: list[tuple[Reservation, int, dict[str, Any]]] = []  # settles waiting for Redis
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._last_error: str | None = None
        self._rid_seed = os.urandom(4).hex()
        self._rid_count = 0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available and self._bootstrapped

    @property
    def subscribed(self) -> bool:
        return self._subscribed

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
        try:
            await self._redis.aclose()
        except Exception:
            pass

    async def _check(self) -> bool:
        """Ping (a purge of expired holds doubles as the ping), bootstrap once, flush queued settles."""
        try:
            await self._scripts["PURGE"](args=[self.prefix, 1000])
            if not self._bootstrapped:
                await self._bootstrap()
        except (RedisError, OSError) as exc:
            self._down(exc)
            return False
        if not self._available:
            log.warning("ledger: Redis at %s is reachable", _safe_url(self.url))
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

    def _down(self, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}"
        if self._available or self._last_error is None:
            log.error("ledger: Redis at %s is unreachable: %s", _safe_url(self.url), detail)
        self._available = False
        self._last_error = detail

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

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis interaction; unreachable (or refusing) Redis -> LedgerUnavailable, fail closed."""
        try:
            result = await make()
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from None
        self._available = True
        return result

    async def _script(self, name: str, *args: Any) -> Any:
        return await self._call(lambda: self._scripts[name](args=[self.prefix, *args]))

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

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
            record = _record(_pairs(fields)) if fields else None
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

    async def reserve(self, key: KeyInfo, amount_nano: int, request_id: str | None = None) -> Reservation:
        rid = request_id or self._new_rid()
        result = await self._script("RESERVE", rid, key.account_id, key.key_id, str(max(int(amount_nano), 0)),
                                    self._ttl_ms)
        code = int(result[0])
        if code == 1:
            reservation = Reservation(key.account_id, key.key_id, int(result[1]), rid)  # type: ignore[arg-type]
            self._live[rid] = reservation
            return reservation
        if code == -1:
            raise InsufficientBalance(f"account {key.account_id!r} has no available balance "
                                      f"(balance {nano_to_usd(int(result[1]))} USD, "
                                      f"reserved {nano_to_usd(int(result[2]))} USD)")
        if code == -2:
            raise KeyLimitExceeded(f"key {key.key_id} has reached its spend limit of "
                                   f"{nano_to_usd(int(result[1]))} USD")
        if code == -3:
            raise UnknownAccount(f"no account {key.account_id!r}")
        if code == -4:
            self._auth.clear()
            raise GatewayError(ErrorKind.AUTHENTICATION, "this API key has been revoked", code="invalid_api_key")
        raise ValueError(f"reservation {rid} was already settled")

    async def settle(self, reservation: Reservation, cost_nano: int, record: dict[str, Any], *,
                     deferrable: bool = False) -> None:
        """One script: release the hold, charge, remember the usage; charged once per reservation id."""
        if not isinstance(cost_nano, int) or cost_nano < 0:
            await self.release(reservation)
            raise ValueError(f"cost must not be negative, not {cost_nano}")
        usage = dict(record)
        usage["account"] = reservation.account_id
        usage["key_id"] = reservation.key_id
        usage["cost_usd"] = nano_to_usd(cost_nano)
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
        applied = await self._script("SETTLE", reservation.id, reservation.account_id, reservation.key_id,
                                     str(cost_nano), repr(self._clock()), ujson.dumps(usage), SETTLED_TTL_S,
                                     USAGE_PER_ACCOUNT, USAGE_OVERALL)
        self._live.pop(str(reservation.id), None)
        return bool(applied)

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

    # -- administration ---------------------------------------------------------------

    async def credit(self, account_id: str, amount_nano: int, reference: str) -> bool:
        if not isinstance(amount_nano, int) or isinstance(amount_nano, bool) or amount_nano <= 0:
            raise ValueError(f"credit amount must be a positive number of nano-dollars, not {amount_nano!r}")
        _check_text(reference, "reference", 256)
        entry = ujson.dumps({"account": account_id, "nano": amount_nano, "at": self._clock()})
        result = int(await self._script("CREDIT", account_id, str(amount_nano), reference, entry))
        if result == -1:
            raise UnknownAccount(f"no account {account_id!r}")
        return result == 1

    async def create_account(self, account_id: str, balance_nano: int = 0) -> dict[str, Any]:
        _check_text(account_id, "account id", 128)
        if not isinstance(balance_nano, int) or isinstance(balance_nano, bool) or balance_nano < 0:
            raise ValueError(f"balance must be a non-negative number of nano-dollars, not {balance_nano!r}")
        if not int(await self._script("CREATE_ACCOUNT", account_id, str(balance_nano), repr(self._clock()))):
            raise ValueError(f"account {account_id!r} already exists")
        return await self.account(account_id)

    async def account(self, account_id: str) -> dict[str, Any]:
        views = await self._views([account_id])
        if views[0] is None:
            raise UnknownAccount(f"no account {account_id!r}")
        return views[0]

    async def accounts(self) -> list[dict[str, Any]]:
        ids = sorted(await self._call(lambda: self._redis.smembers(self._k("accounts"))))
        return [view for view in await self._views(ids) if view is not None]

    async def balance(self, account_id: str) -> dict[str, Any]:
        amounts = await self._script("BALANCES", account_id)
        if not amounts or not amounts[0]:
            raise UnknownAccount(f"no account {account_id!r}")
        balance, reserved = int(amounts[0][0]), int(amounts[0][1])
        return _amounts(account_id, balance, reserved)

    async def _views(self, account_ids: list[str]) -> list[dict[str, Any] | None]:
        if not account_ids:
            return []
        amounts = await self._script("BALANCES", *account_ids)

        async def key_lists() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for account_id in account_ids:
                pipe.lrange(self._k("acct", account_id) + ":keys", 0, -1)
            return await pipe.execute()

        key_ids = await self._call(key_lists)
        wanted = [key_id for ids in key_ids for key_id in ids]

        async def key_hashes() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for key_id in wanted:
                pipe.hgetall(self._k("key", key_id))
            return await pipe.execute()

        records = {key_id: _record(fields) for key_id, fields in zip(wanted, await self._call(key_hashes)) if fields}
        views: list[dict[str, Any] | None] = []
        for account_id, pair, ids in zip(account_ids, amounts, key_ids):
            if not pair:
                views.append(None)
                continue
            shown = _amounts(account_id, int(pair[0]), int(pair[1]))
            del shown["account"]
            views.append({"id": account_id, **shown, "keys": [records[k].public() for k in ids if k in records]})
        return views

    async def create_key(self, account_id: str, name: str, models: Sequence[str] | None = None,
                         limit_nano: int | None = None, expires_at: float | None = None,
                         **options: Any) -> dict[str, Any]:
        _check_text(name, "key name", 128)
        kind = check_kind(options.pop("kind", API_KEY))
        if options:
            raise TypeError(f"unknown key options: {', '.join(sorted(options))}")
        if kind == MANAGEMENT_KEY and (models is not None or limit_nano is not None):
            raise ValueError("a management key cannot call models, so it takes no 'models' and no 'limit_usd'")
        allowed = check_key_options(models, limit_nano, expires_at)
        plaintext = generate_key(kind)
        record = KeyRecord(new_key_id(), account_id, hash_key(plaintext), name, key_prefix(plaintext), allowed,
                           limit_nano, None if expires_at is None else float(expires_at), self._clock(), kind=kind)
        await self._add_key_record(record)
        return {"key_id": record.key_id, "key": plaintext, "account": account_id, **record.public()}

    async def _add_key_record(self, record: KeyRecord) -> bool:
        """False when the hash is known already (a config key seen before)."""
        while True:
            state = record.to_state()
            result = int(await self._script("ADD_KEY", record.key_id, record.account_id, record.key_hash,
                                            ujson.dumps(state), "" if record.limit_nano is None
                                            else str(record.limit_nano)))
            if result == -1:
                raise UnknownAccount(f"no account {record.account_id!r}")
            if result == -2:
                record.key_id = new_key_id()
                continue
            return result == 1

    async def revoke_key(self, key_id: str) -> bool:
        revoked = bool(int(await self._script("REVOKE", key_id)))
        if revoked:
            self._auth.clear()  # this process at once; the others on the event
        return revoked

    async def usage(self, account_id: str | None, limit: int = 100,
                    since: float | None = None) -> list[dict[str, Any]]:
        if account_id is not None:
            if not await self._call(lambda: self._redis.exists(self._k("acct", account_id))):
                raise UnknownAccount(f"no account {account_id!r}")
        if limit <= 0:
            return []
        name = self._k("usage") if account_id is None else self._k("usage", account_id)
        result: list[dict[str, Any]] = []
        start, chunk = 0, limit if since is None else max(limit, 500)
        while len(result) < limit:
            rows = await self._call(lambda: self._redis.lrange(name, start, start + chunk - 1))
            for row in rows:
                record = ujson.loads(row)
                if since is not None and record.get("created_at", 0) < since:
                    continue
                result.append(record)
                if len(result) >= limit:
                    break
            if len(rows) < chunk:
                break
            start += chunk
        return result

    # -- export / import ----------------------------------------------------------------

    async def export_state(self) -> dict[str, Any]:
        """Accounts, balances, keys (hash and options) and credit references; holds and usage are not moved."""
        state = LedgerState()
        ids = sorted(await self._call(lambda: self._redis.smembers(self._k("accounts"))))
        for view_id, pair in zip(ids, await self._script("BALANCES", *ids) if ids else []):
            if pair:
                state.accounts[view_id] = AccountState(view_id, int(pair[0]))

        async def keys() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for account_id in ids:
                pipe.lrange(self._k("acct", account_id) + ":keys", 0, -1)
            lists = await pipe.execute()
            pipe = self._redis.pipeline(transaction=False)
            for key_id in [k for ids_ in lists for k in ids_]:
                pipe.hgetall(self._k("key", key_id))
            return await pipe.execute()

        for fields in await self._call(keys):
            if fields:
                record = _record(fields)
                state._add_key(record)
        state.credit_refs = set(await self._call(lambda: self._redis.hkeys(self._k("credits"))))
        return export_document(state)

    async def import_state(self, data: dict[str, Any]) -> dict[str, int]:
        """Write an export into Redis in one MULTI/EXEC; refused if any account, key or hash already exists."""
        state = check_document(data)

        async def clashes() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for account_id in state.accounts:
                pipe.exists(self._k("acct", account_id))
            for record in state.keys.values():
                pipe.exists(self._k("key", record.key_id), self._k("hash", record.key_hash))
            return await pipe.execute()

        found = await self._call(clashes)
        if any(found):
            names = list(state.accounts) + [record.key_id for record in state.keys.values()]
            taken = [name for name, hit in zip(names, found) if hit]
            raise ValueError(f"Redis already holds {len(taken)} of the imported accounts/keys "
                             f"(e.g. {', '.join(taken[:5])}); import only into an empty prefix")
        now = repr(self._clock())

        async def write() -> None:
            pipe = self._redis.pipeline(transaction=True)
            for account in state.accounts.values():
                pipe.hset(self._k("acct", account.id), mapping={"balance": str(account.balance_nano),
                                                                "reserved": "0", "created_at": now})
                pipe.sadd(self._k("accounts"), account.id)
            for account in state.accounts.values():
                for key_id in account.key_ids:
                    record = state.keys[key_id]
                    pipe.hset(self._k("key", key_id), mapping={
                        "state": ujson.dumps(record.to_state()), "account": record.account_id,
                        "hash": record.key_hash, "limit": "" if record.limit_nano is None else str(record.limit_nano),
                        "revoked": "1" if record.revoked else "0", "spent": str(record.spent_nano), "reserved": "0",
                        "last_used_at": "" if record.last_used_at is None else repr(record.last_used_at)})
                    pipe.set(self._k("hash", record.key_hash), key_id)
                    pipe.rpush(self._k("acct", account.id) + ":keys", key_id)
            for ref in state.credit_refs:
                pipe.hset(self._k("credits"), ref, ujson.dumps({"imported": True, "at": now}))
            pipe.publish(self._k("events"), "flush")
            await pipe.execute()

        await self._call(write)
        return {"accounts": len(state.accounts), "keys": len(state.keys), "credit_refs": len(state.credit_refs)}


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _record(fields: dict[str, str]) -> KeyRecord:
    """A key's hash -> KeyRecord (its static part is KeyRecord.to_state's JSON, so new fields such as kind ride along)."""
    state = ujson.loads(fields["state"])
    state["revoked"] = fields.get("revoked") == "1"
    state["spent_nano"] = int(fields.get("spent") or 0)
    last_used = fields.get("last_used_at")
    state["last_used_at"] = float(last_used) if last_used else None
    record = KeyRecord.from_state(state)
    record.reserved_nano = int(fields.get("reserved") or 0)
    return record


def _amounts(account_id: str, balance: int, reserved: int) -> dict[str, Any]:
    return {"account": account_id, "balance_usd": nano_to_usd(balance), "reserved_usd": nano_to_usd(reserved),
            "available_usd": nano_to_usd(balance - reserved)}


def _safe_url(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest
