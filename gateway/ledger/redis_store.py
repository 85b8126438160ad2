"""The Redis ledger's connections: the client, the registered Lua scripts, and fail-closed calls.

The base of ``RedisBackend`` (``redis_backend.py``: lifecycle, authentication,
the request path) and of ``RedisAccounts`` (``redis_accounts.py``: accounts, keys,
credits, usage, export/import). Every Redis interaction goes through ``_call`` or
``_script``: an unreachable or refusing Redis becomes ``LedgerUnavailable`` (a 503,
never free service) and marks the ledger unavailable until the next success.
Script calls (every request's reserve and settle) go over ``redis_wire.RedisWire``,
one pipelined connection; the rest goes through redis-py.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Awaitable, Callable, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from gateway.ledger import redis_scripts as lua
from gateway.ledger.redis_wire import Arg, RedisWire
from gateway.ledger.errors import LedgerUnavailable
from gateway.ledger.keys import KeyRecord
from gateway.ledger.limits import window_end, window_starts

log = logging.getLogger("infermesh.ledger")

T = TypeVar("T")

SCRIPTS = ("RESERVE", "SETTLE", "RELEASE", "RENEW", "PURGE", "BALANCES", "LOOKUP", "CREATE_ACCOUNT", "ADD_KEY",
           "REVOKE", "CREDIT", "USAGE_SUMMARY", "MIGRATE_USAGE")
# Scripts whose second run answers as the first did (reserve and settle by request id, the rest reads or
# no-ops when repeated): sent once more when the connection failed under them, since it may have died
# unnoticed (Redis restarted, an idle timeout). CREATE_ACCOUNT, ADD_KEY and CREDIT are not: run twice they
# would answer "exists" / "already applied" for what the first run did.
RETRIED = frozenset({"RESERVE", "SETTLE", "RELEASE", "RENEW", "PURGE", "BALANCES", "LOOKUP", "REVOKE",
                     "USAGE_SUMMARY"})


class RedisStore:
    """One Redis client under one key prefix, and what every part of the Redis ledger shares."""

    def __init__(self, url: str, prefix: str, clock: Callable[[], float], socket_timeout_s: float) -> None:
        self.url = url
        self.prefix = prefix
        self._clock = clock
        self._redis = aioredis.from_url(url, decode_responses=True, socket_connect_timeout=socket_timeout_s,
                                        socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 1))
        self._scripts = {name: self._redis.register_script(getattr(lua, name)) for name in SCRIPTS}
        self._lua = {name: (hashlib.sha1(source.encode()).hexdigest(), source)  # EVALSHA's digest, EVAL's text
                     for name, source in ((name, str(getattr(lua, name))) for name in SCRIPTS)}
        pool = self._redis.connection_pool
        tls = (pool.connection_class(**pool.connection_kwargs).ssl_context.get()
               if issubclass(pool.connection_class, SSLConnection) else None)
        self._wire = RedisWire(pool.connection_kwargs, tls, socket_timeout_s, socket_timeout_s)
        self._available = False
        self._last_error: str | None = None
        # Key lookups cached in this process (digest -> (expiry, record or None)); see redis_backend.py.
        self._auth: dict[str, tuple[float, KeyRecord | None]] = {}

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis interaction; unreachable (or refusing) Redis -> LedgerUnavailable, fail closed."""
        try:
            result = await make()
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from None
        self._available = True
        return result

    async def _script(self, name: str, *args: Arg) -> Any:
        """Script ``name`` by its SHA on the wire (no keys: the scripts build theirs from the prefix argument)."""
        sha, source = self._lua[name]
        try:
            try:
                reply = await self._wire.call("EVALSHA", sha, 0, self.prefix, *args)
            except RedisConnectionError:
                if name not in RETRIED:
                    raise
                reply = await self._wire.call("EVALSHA", sha, 0, self.prefix, *args)  # on a new connection
            if isinstance(reply, ResponseError):
                if str(reply).startswith("NOSCRIPT"):  # Redis lost its script cache (restart, SCRIPT FLUSH)
                    reply = await self._wire.call("EVAL", source, 0, self.prefix, *args)  # loads it again
                if isinstance(reply, ResponseError):
                    raise reply
        except (RedisError, OSError) as exc:
            self._down(exc)
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from None
        self._available = True
        return reply

    async def _close_connections(self) -> None:
        self._wire.close()
        try:
            await self._redis.aclose()
        except Exception:
            pass

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _down(self, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}"
        if self._available or self._last_error is None:
            log.error("ledger: Redis at %s is unreachable: %s", safe_url(self.url), detail)
        self._available = False
        self._last_error = detail

    async def _key_records(self, account_ids: list[str]) -> tuple[list[list[str]], dict[str, KeyRecord]]:
        """Each account's key ids (in creation order), and every one of those keys' records."""

        async def key_lists() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for account_id in account_ids:
                pipe.lrange(self._k("acct", account_id) + ":keys", 0, -1)
            return await pipe.execute()

        key_ids: list[list[str]] = await self._call(key_lists)
        wanted = [key_id for ids in key_ids for key_id in ids]

        async def key_hashes() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for key_id in wanted:
                pipe.hgetall(self._k("key", key_id))
            return await pipe.execute()

        hashes = await self._call(key_hashes) if wanted else []
        return key_ids, {key_id: key_record(fields) for key_id, fields in zip(wanted, hashes) if fields}


def pairs(flat: list[Any]) -> dict[str, str]:
    """A Lua script's flat [field, value, ...] reply as a dict."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def key_record(fields: dict[str, str]) -> KeyRecord:
    """A key's hash -> KeyRecord (its static part is KeyRecord.to_state's JSON, so new fields such as kind ride along)."""
    state = orjson.loads(fields["state"])
    state["revoked"] = fields.get("revoked") == "1"
    state["spent_nano"] = int(fields.get("spent") or 0)
    last_used = fields.get("last_used_at")
    state["last_used_at"] = float(last_used) if last_used else None
    window = fields.get("wstart")
    state["window_start"] = float(window) if window else None
    state["window_spent_nano"] = int(fields.get("wspent") or 0)
    record = KeyRecord.from_state(state)
    record.reserved_nano = int(fields.get("reserved") or 0)
    return record


def key_hash_fields(record: KeyRecord) -> dict[Any, Any]:
    """A key as its Redis hash (layout in redis_scripts.py): what ADD_KEY writes and an import restores."""
    def text(value: int | None) -> str:
        return "" if value is None else str(value)

    return {"state": orjson.dumps(record.to_state()), "account": record.account_id, "hash": record.key_hash,
            "limit": text(record.limit_nano), "revoked": "1" if record.revoked else "0",
            "spent": str(record.spent_nano), "reserved": "0",
            "last_used_at": "" if record.last_used_at is None else repr(record.last_used_at),
            "period": record.limit_period or "", "rpm": text(record.rpm), "tpm": text(record.tpm),
            "maxc": text(record.max_concurrent),
            "wstart": "" if record.window_start is None else str(int(record.window_start)),
            "wspent": str(record.window_spent_nano), "inflight": "0", "itok": "0"}


_windows: tuple[float, float, list[str]] = (0.0, 0.0, [])  # [start, end) of the UTC day they hold, the args


def window_args(at: float) -> list[str]:
    """The day, week and month window starts at ``at``, as the scripts compare them (whole unix seconds).

    Computed once per UTC day (every reserve and settle passes them; the calendar math is not free)."""
    global _windows
    start, end, args = _windows
    if not start <= at < end:
        starts = window_starts(at)
        args = [str(int(value)) for value in starts.values()]
        _windows = (starts["day"], window_end("day", at), args)
    return args


def safe_url(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest
