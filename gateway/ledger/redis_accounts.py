"""The Redis ledger's administration: accounts, keys, credits, usage, and export/import.

The request path (authenticate, reserve, settle, release) and the connection's
lifecycle are in ``redis_backend.py``, which builds on this class; the data layout
and the Lua scripts that change money are in ``redis_scripts.py``. Arguments are
checked by ``checks.py``, as the embedded ledger checks them.
"""

from __future__ import annotations

from typing import Any, Sequence

import orjson

from gateway.ledger.backend import amounts_view
from gateway.ledger.checks import check_account, check_credit, check_new_key
from gateway.ledger.errors import AccountExists, UnknownAccount
from gateway.ledger.export import check_document, export_document
from gateway.ledger.keys import API_KEY, KeyRecord, generate_key, hash_key, key_prefix, new_key_id
from gateway.ledger.limits import NO_LIMITS, KeyLimits
from gateway.ledger.money import nano_to_usd
from gateway.ledger.redis_store import RedisStore, key_hash_fields
from gateway.ledger.state import AccountState, LedgerState


class RedisAccounts(RedisStore):
    """Accounts, keys, credits and usage in Redis (every change an atomic script or MULTI/EXEC)."""

    async def credit(self, account_id: str, amount_nano: int, reference: str) -> bool:
        check_credit(amount_nano, reference)
        entry = orjson.dumps({"account": account_id, "nano": amount_nano, "at": self._clock()})
        result = int(await self._script("CREDIT", account_id, str(amount_nano), reference, entry))
        if result == -1:
            raise UnknownAccount(f"no account {account_id!r}")
        return result == 1

    async def create_account(self, account_id: str, balance_nano: int = 0) -> dict[str, Any]:
        check_account(account_id, balance_nano)
        if not int(await self._script("CREATE_ACCOUNT", account_id, str(balance_nano), repr(self._clock()))):
            raise AccountExists(f"account {account_id!r} already exists")
        return await self.account(account_id)

    async def account(self, account_id: str) -> dict[str, Any]:
        views = await self._views([account_id])
        if views[0] is None:
            raise UnknownAccount(f"no account {account_id!r}")
        return views[0]

    async def accounts(self) -> list[dict[str, Any]]:
        ids = await self._account_ids()
        return [view for view in await self._views(ids) if view is not None]

    async def balance(self, account_id: str) -> dict[str, Any]:
        amounts = await self._script("BALANCES", account_id)
        if not amounts or not amounts[0]:
            raise UnknownAccount(f"no account {account_id!r}")
        balance, reserved = int(amounts[0][0]), int(amounts[0][1])
        return amounts_view(account_id, balance, reserved)

    async def _account_ids(self) -> list[str]:
        return sorted(str(account_id) for account_id in
                      await self._call(lambda: self._redis.smembers(self._k("accounts"))))

    async def _views(self, account_ids: list[str]) -> list[dict[str, Any] | None]:
        if not account_ids:
            return []
        amounts = await self._script("BALANCES", *account_ids)
        key_ids, records = await self._key_records(account_ids)
        views: list[dict[str, Any] | None] = []
        for account_id, pair, ids in zip(account_ids, amounts, key_ids):
            if not pair:
                views.append(None)
                continue
            shown = amounts_view(account_id, int(pair[0]), int(pair[1]))
            del shown["account"]
            now = self._clock()
            views.append({"id": account_id, **shown, "keys": [records[k].public(now) for k in ids if k in records]})
        return views

    async def create_key(self, account_id: str, name: str, models: Sequence[str] | None = None,
                         limit_nano: int | None = None, expires_at: float | None = None,
                         kind: str = API_KEY, limits: KeyLimits = NO_LIMITS) -> dict[str, Any]:
        kind, allowed = check_new_key(name, kind, models, limit_nano, expires_at, limits)
        plaintext = generate_key(kind)
        record = KeyRecord(new_key_id(), account_id, hash_key(plaintext), name, key_prefix(plaintext), allowed,
                           limit_nano, None if expires_at is None else float(expires_at), self._clock(), kind=kind,
                           limit_period=limits.period, rpm=limits.rpm, tpm=limits.tpm,
                           max_concurrent=limits.max_concurrent)
        await self._add_key_record(record)
        return {"key_id": record.key_id, "key": plaintext, "account": account_id, **record.public(self._clock())}

    async def _add_key_record(self, record: KeyRecord) -> bool:
        """False when the hash is known already (a config key seen before)."""
        while True:
            fields = key_hash_fields(record)
            result = int(await self._script("ADD_KEY", record.key_id, record.account_id, record.key_hash,
                                            fields["state"], fields["limit"], fields["period"], fields["rpm"],
                                            fields["tpm"], fields["maxc"]))
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

    async def usage(self, account_id: str | None, limit: int = 100, since: float | None = None,
                    until: float | None = None) -> list[dict[str, Any]]:
        """Newest first from the time-scored set: one ZREVRANGEBYSCORE, ``since <= created_at < until``."""
        await self._check_account(account_id)
        if limit <= 0:
            return []
        name = self._k("usage_at") if account_id is None else self._k("usage_at", account_id)
        low, high = _score_range(since, until)
        rows = await self._call(lambda: self._redis.zrevrangebyscore(name, high, low, start=0, num=limit))
        return [orjson.loads(row) for row in rows]  # type: ignore[arg-type]  # decode_responses: str members

    async def usage_summary(self, account_id: str, width: int, since: float | None = None,
                            until: float | None = None) -> list[dict[str, Any]]:
        """Summed by a Lua script inside Redis; rows sorted here by (bucket start, model)."""
        await self._check_account(account_id)
        low, high = _score_range(since, until)
        rows = await self._script("USAGE_SUMMARY", account_id, width, low, high)
        result = [{"start": int(row[0]), "model": row[1], "requests": int(row[2]), "input_tokens": int(row[3]),
                   "output_tokens": int(row[4]), "cached_tokens": int(row[5]), "cache_write_tokens": int(row[6]),
                   "cost_usd": nano_to_usd(int(row[7]))} for row in rows]
        return sorted(result, key=lambda row: (row["start"], row["model"]))

    async def _check_account(self, account_id: str | None) -> None:
        if account_id is not None:
            if not await self._call(lambda: self._redis.exists(self._k("acct", account_id))):
                raise UnknownAccount(f"no account {account_id!r}")

    # -- export / import ----------------------------------------------------------------

    async def export_state(self) -> dict[str, Any]:
        """Accounts, balances, keys (hash and options) and credit references; holds and usage are not moved."""
        state = LedgerState()
        ids = await self._account_ids()
        for view_id, pair in zip(ids, await self._script("BALANCES", *ids) if ids else []):
            if pair:
                state.accounts[view_id] = AccountState(view_id, int(pair[0]))

        _, records = await self._key_records(ids)
        for record in records.values():
            state.add_key(record)
        state.credit_refs = {str(ref) for ref in await self._call(lambda: self._redis.hkeys(self._k("credits")))}
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
                    pipe.hset(self._k("key", key_id), mapping=key_hash_fields(record))
                    pipe.set(self._k("hash", record.key_hash), key_id)
                    pipe.rpush(self._k("acct", account.id) + ":keys", key_id)
            for ref in state.credit_refs:
                pipe.hset(self._k("credits"), ref, orjson.dumps({"imported": True, "at": now}))
            pipe.publish(self._k("events"), "flush")
            await pipe.execute()

        await self._call(write)
        return {"accounts": len(state.accounts), "keys": len(state.keys), "credit_refs": len(state.credit_refs)}


def _score_range(since: float | None, until: float | None) -> tuple[str, str]:
    """ZRANGEBYSCORE bounds for ``since <= created_at < until``."""
    return ("-inf" if since is None else repr(float(since)), "+inf" if until is None else "(" + repr(float(until)))
