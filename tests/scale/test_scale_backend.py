"""The Redis ledger backend against a real redis-server: atomic money, expiry, idempotence, outage, export/import.

The embedded backend runs the same checks where they apply, so both sides of
``LedgerBackend`` are held to one behaviour.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Account
from gateway.errors import ledger_error
from gateway.ledger.embedded import EmbeddedBackend, export_embedded, import_embedded
from gateway.ledger.errors import (
    KeyRevoked,
    InsufficientBalance,
    KeyLimitExceeded,
    LedgerUnavailable,
    UnknownAccount,
)
from gateway.ledger.keys import AuthStatus
from gateway.ledger.backend import Reservation
from gateway.ledger.money import usd_to_nano
from gateway.ledger.redis_backend import RedisBackend
from tests.support.logs import expect_log
from tests.scale.conftest import KEY, RedisServer, needs_redis, wait_for

pytestmark = needs_redis

ACCOUNTS = (Account("scale", Decimal("1"), (KEY,)),)


def record(request_id: str = "req") -> dict[str, Any]:
    return {"request_id": request_id, "model": "gpt-4o-mini", "node": "mock-a", "input_tokens": 1,
            "output_tokens": 5, "cached_tokens": 0, "estimated": False, "status": 200, "created_at": 1.0}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def opened(redis_server: RedisServer, **kwargs: Any) -> RedisBackend:
    backend = RedisBackend(redis_server.url, "t:", kwargs.pop("accounts", ACCOUNTS), **kwargs)
    await backend.start()
    assert backend.available
    return backend


def test_bootstrap_auth_reserve_settle_release(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = await opened(redis_server)
        try:
            status, key = await backend.authenticate(KEY)
            assert status is AuthStatus.OK and key is not None and key.account_id == "scale"
            assert (await backend.authenticate("sk-nope-000000000000"))[0] is AuthStatus.UNKNOWN
            held = await backend.reserve(key, 300_000_000, "r1")
            assert held.amount_nano == 300_000_000
            assert (await backend.balance("scale"))["reserved_usd"] == "0.300000"
            await backend.settle(held, 5000, record("r1"))
            assert await backend.balance("scale") == {"account": "scale", "balance_usd": "0.999995",
                                                     "reserved_usd": "0.000000", "available_usd": "0.999995"}
            other = await backend.reserve(key, 10, "r2")
            await backend.release(other)
            await backend.release(other)  # idempotent
            assert (await backend.balance("scale"))["reserved_usd"] == "0.000000"
            usage = await backend.usage("scale")
            assert [(u["request_id"], u["cost_usd"], u["account"], u["key_id"]) for u in usage] == [
                ("r1", "0.000005", "scale", key.key_id)]
            view = await backend.account("scale")
            assert view["balance_usd"] == "0.999995" and view["keys"][0]["spent_usd"] == "0.000005"
            with pytest.raises(UnknownAccount):
                await backend.balance("nobody")
        finally:
            await backend.close()
        again = await opened(redis_server)  # a second start does not bootstrap twice
        try:
            assert len((await again.account("scale"))["keys"]) == 1
            assert (await again.balance("scale"))["balance_usd"] == "0.999995"
        finally:
            await again.close()

    run(main())


def test_retried_settle_is_charged_once(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = await opened(redis_server)
        try:
            _, key = await backend.authenticate(KEY)
            held = await backend.reserve(key, 1000, "req-1")
            await backend.settle(held, 700, record("req-1"))
            await backend.settle(held, 700, record("req-1"))  # e.g. a retry after a lost reply
            await backend.settle(Reservation("scale", key.key_id, 1000, "req-1"), 700, record("req-1"))  # type: ignore[arg-type]
            assert (await backend.balance("scale"))["balance_usd"] == "0.9999993"
            assert len(await backend.usage("scale")) == 1
            with pytest.raises(ValueError):  # a settled request id cannot hold money again
                await backend.reserve(key, 1000, "req-1")
        finally:
            await backend.close()

    run(main())


def test_two_backends_never_overdraw(redis_server: RedisServer) -> None:
    """The issue's race: 150 concurrent spends from two gateways against a balance worth 100."""
    async def main() -> None:
        accounts = (Account("scale", Decimal("0.0005"), (KEY,)),)  # 100 x 5000 nano
        one, two = await opened(redis_server, accounts=accounts), await opened(redis_server, accounts=accounts)
        try:
            _, key = await one.authenticate(KEY)

            async def spend(backend: RedisBackend, n: int) -> bool:
                try:
                    held = await backend.reserve(key, 5000, f"spend-{n}")
                except InsufficientBalance:
                    return False
                await asyncio.sleep(0.01)
                await backend.settle(held, 5000, record(f"spend-{n}"))
                return True

            results = await asyncio.gather(*(spend(one if n % 2 else two, n) for n in range(150)))
            assert sum(results) == 100
            balance = await one.balance("scale")
            assert balance["balance_usd"] == "0.000000" and balance["reserved_usd"] == "0.000000"
        finally:
            await one.close()
            await two.close()

    run(main())


def test_key_limit_and_revocation_in_reserve(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = await opened(redis_server)
        try:
            created = await backend.create_key("scale", "limited", limit_nano=1000)
            status, key = await backend.authenticate(created["key"])
            assert status is AuthStatus.OK
            held = await backend.reserve(key, 5000, "a")
            assert held.amount_nano == 1000
            with pytest.raises(KeyLimitExceeded):
                await backend.reserve(key, 5000, "b")
            await backend.settle(held, 1000, record("a"))
            assert await backend.revoke_key(key.key_id)
            assert await backend.revoke_key(key.key_id)
            assert not await backend.revoke_key("key_nope")
            assert (await backend.authenticate(created["key"]))[0] is AuthStatus.REVOKED
            _, main_key = await backend.authenticate(KEY)
            await backend.revoke_key(main_key.key_id)
            with pytest.raises(KeyRevoked):  # a stale KeyInfo still cannot spend
                await backend.reserve(main_key, 10, "c")
            mk = await backend.create_key("scale", "console", kind="management")
            assert mk["key"].startswith("mk-") and mk["kind"] == "management"
            assert (await backend.authenticate(mk["key"]))[1].is_management
        finally:
            await backend.close()

    run(main())


def test_credit_once_per_reference_and_accounts(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = await opened(redis_server)
        try:
            assert await backend.credit("scale", 1_000_000_000, "inv-1")
            assert not await backend.credit("scale", 1_000_000_000, "inv-1")
            assert (await backend.balance("scale"))["balance_usd"] == "2.000000"
            with pytest.raises(UnknownAccount):
                await backend.credit("nobody", 1, "inv-2")
            created = await backend.create_account("acme", 5)
            assert created["id"] == "acme" and created["balance_usd"] == "0.000000005"
            with pytest.raises(ValueError):
                await backend.create_account("acme")
            assert [a["id"] for a in await backend.accounts()] == ["acme", "scale"]
        finally:
            await backend.close()

    run(main())


def test_crashed_holder_reservation_expires(redis_server: RedisServer) -> None:
    async def main() -> None:
        crashed = await opened(redis_server, reservation_ttl_s=2)
        live = await opened(redis_server, reservation_ttl_s=2)
        try:
            _, key = await crashed.authenticate(KEY)
            await crashed.reserve(key, 400_000_000, "dies")
            kept = await live.reserve(key, 100_000_000, "lives")
            crashed._closed = True  # the gateway dies: its loops stop (no renewal), nothing is released
            await asyncio.wait(crashed._tasks, timeout=2)
            died = asyncio.get_running_loop().time()
            assert (await live.balance("scale"))["reserved_usd"] == "0.500000"
            while (await live.balance("scale"))["reserved_usd"] == "0.500000":
                assert asyncio.get_running_loop().time() - died < 4, "the dead gateway's hold never expired"
                await asyncio.sleep(0.05)
            # the dead gateway's hold is gone; the live one's is renewed and still held
            assert (await live.balance("scale"))["reserved_usd"] == "0.100000"
            await asyncio.sleep(2.5)  # longer than the TTL: renewal keeps it
            assert (await live.balance("scale"))["reserved_usd"] == "0.100000"
            await live.settle(kept, 1, record("lives"))
            assert (await live.balance("scale"))["reserved_usd"] == "0.000000"
        finally:
            await live.close()
            await crashed._close_connections()

    run(main())


def test_redis_down_fails_closed_and_recovers(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = await opened(redis_server)
        try:
            _, key = await backend.authenticate(KEY)
            redis_server.save()
            redis_server.stop()
            with pytest.raises(LedgerUnavailable) as down:
                await backend.reserve(key, 10, "x")
            assert ledger_error(down.value).kind.status == 503
            with pytest.raises(LedgerUnavailable):
                await backend.authenticate("sk-not-cached-000000000")
            assert await asyncio.to_thread(wait_for, lambda: not backend.available, 5)
            redis_server.start()
            assert await asyncio.to_thread(wait_for, lambda: backend.available, 5)
            held = await backend.reserve(key, 10, "y")
            await backend.settle(held, 10, record("y"))
        finally:
            await backend.close()

    with expect_log("infermesh.ledger", "is unreachable"):  # Redis is stopped on purpose
        run(main())


def test_deferred_settle_lands_when_redis_returns(redis_server: RedisServer) -> None:
    async def main() -> None:
        backend = await opened(redis_server)
        try:
            _, key = await backend.authenticate(KEY)
            held = await backend.reserve(key, 1000, "streamed")
            redis_server.save()
            redis_server.stop()
            with pytest.raises(LedgerUnavailable):
                await backend.settle(held, 1000, record("streamed"))
            await backend.settle(held, 1000, record("streamed"), deferrable=True)  # queued, not raised
            redis_server.start()
            assert await asyncio.to_thread(wait_for, lambda: backend.available and not backend._pending, 5)
            assert (await backend.balance("scale"))["balance_usd"] == "0.999999"
        finally:
            await backend.close()

    with expect_log("infermesh.ledger", "is unreachable|queued until Redis is back"):  # Redis is stopped on purpose
        run(main())


def test_export_import_round_trip(redis_server: RedisServer, tmp_path: Path) -> None:
    """embedded -> Redis -> embedded: identical balances, keys (hash, options, kind) and credit references."""
    source = tmp_path / "embedded"
    embedded = EmbeddedBackend.open(str(source), ACCOUNTS)

    async def fill() -> None:
        _, key = await embedded.authenticate(KEY)
        held = await embedded.reserve(key, 1000)
        await embedded.settle(held, 123, record())
        await embedded.create_account("acme", usd_to_nano("7.25"))
        await embedded.credit("acme", 5, "inv-9")
        await embedded.create_key("acme", "limited", ["gpt-4o-mini"], 1000, 2_000_000_000)
        revoked = await embedded.create_key("acme", "old")
        await embedded.revoke_key(revoked["key_id"])
        await embedded.create_key("acme", "console", kind="management")
        await embedded.close()

    run(fill())
    exported = export_embedded(str(source))

    async def through_redis() -> dict[str, Any]:
        backend = RedisBackend(redis_server.url, "t:")
        await backend.start()
        try:
            counts = await backend.import_state(json.loads(json.dumps(exported)))
            assert counts == {"accounts": 2, "keys": 4, "credit_refs": 1}
            with pytest.raises(ValueError):
                await backend.import_state(exported)  # never on top of existing accounts
            assert not await backend.credit("acme", 5, "inv-9")  # applied references came along
            assert (await backend.authenticate(KEY))[0] is AuthStatus.OK
            return await backend.export_state()
        finally:
            await backend.close()

    back = run(through_redis())
    target = tmp_path / "embedded-again"
    import_embedded(str(target), back)
    again = export_embedded(str(target))
    for document in (exported, back, again):
        document.pop("exported_at")
    assert back == exported
    assert again == exported
    assert {a["id"]: a["balance_nano"] for a in again["accounts"]} == {"acme": 7_250_000_005,
                                                                        "scale": 999_999_877}
    with pytest.raises(ValueError):
        import_embedded(str(target), back)


def test_calls_of_one_loop_turn_share_a_connection_and_survive_a_flushed_script_cache(
        redis_server: RedisServer) -> None:
    """Concurrent reserves and settles go to Redis pipelined on one connection (redis_wire.py), each with its own answer."""
    async def main() -> None:
        backend = await opened(redis_server, accounts=(Account("scale", Decimal("0.0004"), (KEY,)),))  # 80 x 5000
        admin = redis_server.client()
        try:
            _, key = await backend.authenticate(KEY)
            before = int(admin.info("stats")["total_connections_received"])
            admin.script_flush()  # as after a Redis restart: the first pipeline meets NOSCRIPT

            async def spend(n: int) -> bool:
                try:
                    held = await backend.reserve(key, 5000, f"batch-{n}")
                except InsufficientBalance:
                    return False
                await backend.settle(held, 5000, record(f"batch-{n}"))
                return True

            results = await asyncio.gather(*(spend(n) for n in range(100)))
            opened_now = int(admin.info("stats")["total_connections_received"]) - before
            assert sum(results) == 80  # mixed answers in the same batches, each to its own caller
            assert (await backend.balance("scale"))["balance_usd"] == "0.000000"
            assert len(await backend.usage("scale")) == 80
            assert opened_now <= 2, f"{opened_now} new connections for 100 concurrent requests"
        finally:
            await backend.close()

    run(main())


def test_usage_by_time_window_summary_and_retention_alike_in_both_backends(redis_server: RedisServer,
                                                                           tmp_path: Path) -> None:
    """The same records give the same answers from SQLite and from Redis; Redis drops expired ones at settle."""
    base = 1_999_958_400.0  # a UTC day boundary

    async def exercise(backend: Any) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        _, key = await backend.authenticate(KEY)
        for i in range(6):
            held = await backend.reserve(key, 1000, f"w{i}")
            await backend.settle(held, 100_000_001 + i, {**record(f"w{i}"), "created_at": base + i * 1800,
                                                         "cache_write_tokens": 2})
        window = [r["request_id"] for r in await backend.usage("scale", 100, base + 1800, base + 3 * 1800)]
        newest = [r["request_id"] for r in await backend.usage(None, 2)]
        return window, newest, await backend.usage_summary("scale", 3600, base, base + 86400)

    async def main() -> None:
        embedded = EmbeddedBackend.open(str(tmp_path / "state"), ACCOUNTS)
        redis_backend = await opened(redis_server, usage_retention_days=1)
        try:
            results = [await exercise(embedded), await exercise(redis_backend)]
            with pytest.raises(UnknownAccount):
                await redis_backend.usage_summary("nobody", 3600)
            # a record two days newer: with one day of retention, the old ones leave Redis
            _, key = await redis_backend.authenticate(KEY)
            held = await redis_backend.reserve(key, 10, "late")
            await redis_backend.settle(held, 1, {**record("late"), "created_at": base + 2 * 86400})
            assert [r["request_id"] for r in await redis_backend.usage("scale", 100)] == ["late"]
        finally:
            await embedded.close()
            await redis_backend.close()
        assert results[0] == results[1]
        window, newest, summary = results[0]
        assert window == ["w2", "w1"] and newest == ["w5", "w4"]
        assert [(row["start"] - base, row["requests"], row["cache_write_tokens"], row["cost_usd"])
                for row in summary] == [(0, 2, 4, "0.200000003"), (3600, 2, 4, "0.200000007"),
                                        (7200, 2, 4, "0.200000011")]

    run(main())


def test_usage_lists_of_an_older_version_move_to_the_time_index(redis_server: RedisServer) -> None:
    async def main() -> None:
        first = await opened(redis_server)
        await first.close()
        client = redis_server.client()
        old = [json.dumps({**record(f"old{i}"), "account": "scale", "created_at": 1000.0 + i}) for i in range(3)]
        for raw in old:
            client.lpush("t:usage:scale", raw)
            client.lpush("t:usage", raw)
        backend = await opened(redis_server)
        try:
            assert [r["request_id"] for r in await backend.usage("scale", 10)] == ["old2", "old1", "old0"]
            assert [r["request_id"] for r in await backend.usage(None, 10, since=1001.0)] == ["old2", "old1"]
            assert not client.exists("t:usage") and not client.exists("t:usage:scale")
        finally:
            await backend.close()

    run(main())
