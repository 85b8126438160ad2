"""Spend windows and rate limits at their edges, on both ledger backends, with the ledger's own clock.

Every test runs against the embedded ledger and against a real ``redis-server``
(skipped only where the binary is absent). Time moves only through the clock the
ledger was built with: at the limit, one nano-dollar or millisecond past it, and
after the reset.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from gateway.config import Account
from gateway.errors import ledger_error
from gateway.ledger.embedded import EmbeddedBackend
from gateway.ledger.errors import KeyLimitExceeded, RateLimited
from gateway.ledger.keys import AuthStatus, KeyInfo
from gateway.ledger.ledger import Ledger
from gateway.ledger.limits import NO_LIMITS, KeyLimits, window_end, window_start
from tests.ledger.ledger_fixtures import FakeClock, usage_record
from tests.scale.conftest import REDIS_SERVER, RedisServer

BOOT_KEY = "sk-limits-test-000000000000000000"
DOLLAR = 1_000_000_000


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=timezone.utc).timestamp()  # type: ignore[misc]


@pytest.fixture(params=["embedded", "redis"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """``await make_backend(clock)``: a started backend of the parametrized kind with $100, closed afterwards."""
    opened: list[Any] = []
    servers: list[RedisServer] = []
    accounts = (Account("team", Decimal(100), (BOOT_KEY,)),)

    async def make(clock: FakeClock) -> Any:
        if request.param == "embedded":
            backend: Any = EmbeddedBackend(Ledger.open(str(tmp_path / f"state{len(opened)}"), accounts, clock))
        else:
            if REDIS_SERVER is None:
                pytest.skip("redis-server is not installed")
            if not servers:
                servers.append(RedisServer(tmp_path / "redis"))
            from gateway.ledger.redis_backend import RedisBackend
            backend = RedisBackend(servers[0].url, "lim:", accounts, clock=clock)
        await backend.start()
        opened.append(backend)
        return backend

    make.kind = request.param  # type: ignore[attr-defined]
    make.opened = opened  # type: ignore[attr-defined]
    yield make
    for server in servers:
        server.close()


def run(make_backend: Any, test: Callable[..., Any]) -> None:
    async def main() -> None:
        try:
            await test()
        finally:
            for backend in make_backend.opened:
                await backend.close()
    asyncio.run(main())


async def new_key(backend: Any, limit_usd: str | None = None, **limits: Any) -> KeyInfo:
    limit = None if limit_usd is None else int(Decimal(limit_usd) * DOLLAR)
    created = await backend.create_key("team", "dev", None, limit, None, limits=KeyLimits(**limits))
    status, key = await backend.authenticate(created["key"])
    assert status is AuthStatus.OK and key is not None
    return key


async def spend(backend: Any, key: KeyInfo, nano: int, request_id: str, tokens: int = 0, **record: Any) -> None:
    held = await backend.reserve(key, nano, request_id, tokens=tokens)
    await backend.settle(held, nano, usage_record(request_id, **record))


def test_windows_follow_the_utc_calendar() -> None:
    sunday_night = utc(2026, 12, 6, 23, 59, 59)
    assert window_start("day", sunday_night) == utc(2026, 12, 6)
    assert window_start("week", sunday_night) == utc(2026, 11, 30)  # ISO weeks start on Monday
    assert window_end("week", sunday_night) == utc(2026, 12, 7)
    assert window_end("month", utc(2026, 12, 31, 12)) == utc(2027, 1, 1)
    assert window_end("month", utc(2028, 2, 10)) == utc(2028, 3, 1)
    assert window_end("day", utc(2026, 12, 7)) == utc(2026, 12, 8)  # midnight itself opens a new day


def test_daily_limit_at_the_edge_and_after_midnight(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 23, 0))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend, "1.00", period="day")
        await spend(backend, key, DOLLAR - 1, "a")  # one nano-dollar left: still admitted
        held = await backend.reserve(key, 5 * DOLLAR, "b")
        assert held.amount_nano == 1  # the hold is capped at what the window has left
        await backend.settle(held, 1, usage_record("b"))  # exactly at the limit now
        clock.now = utc(2026, 12, 7, 23, 59, 59, 999000)
        with pytest.raises(KeyLimitExceeded) as refused:
            await backend.reserve(key, 1, "c")
        assert "daily spend limit of 1.000000 USD" in str(refused.value)
        assert "resets at 2026-12-08T00:00:00Z" in str(refused.value)
        view = (await backend.account("team"))["keys"][-1]
        assert view["window_spent_usd"] == "1.000000" and view["window_resets_at"] == utc(2026, 12, 8)
        clock.now = utc(2026, 12, 8)  # midnight UTC: a new window, by itself
        view = (await backend.account("team"))["keys"][-1]
        assert view["window_spent_usd"] == "0.000000" and view["spent_usd"] == "1.000000"
        await spend(backend, key, DOLLAR // 2, "d")
        view = (await backend.account("team"))["keys"][-1]
        assert view["window_spent_usd"] == "0.500000" and view["spent_usd"] == "1.500000"

    run(make_backend, test)


def test_monthly_limit_resets_on_the_first(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 31, 23, 59, 59))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend, "2", period="month")
        await spend(backend, key, 2 * DOLLAR, "a")
        with pytest.raises(KeyLimitExceeded, match="monthly .* resets at 2027-01-01T00:00:00Z"):
            await backend.reserve(key, 1, "b")
        clock.now = utc(2027, 1, 1)
        await spend(backend, key, DOLLAR, "c")

    run(make_backend, test)


def test_a_limit_without_a_period_is_for_the_keys_lifetime(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 12))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend, "1")
        await spend(backend, key, DOLLAR, "a")
        clock.now += 400 * 86400
        with pytest.raises(KeyLimitExceeded, match="lifetime"):
            await backend.reserve(key, 1, "b")

    run(make_backend, test)


def test_rpm_counts_a_rolling_minute(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 12))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend, rpm=2)
        first = clock.now
        await spend(backend, key, 10, "a")
        clock.now += 30
        await spend(backend, key, 10, "b")
        clock.now = first + 59.999
        with pytest.raises(RateLimited) as refused:
            await backend.reserve(key, 10, "c")
        error = ledger_error(refused.value)  # the answer it maps to
        assert error.kind.status == 429 and error.code == "rate_limit_exceeded" and error.retry_after_s == 1
        assert error.headers["x-ratelimit-limit-requests"] == "2"
        assert error.headers["x-ratelimit-remaining-requests"] == "0"
        assert error.headers["x-ratelimit-reset-requests"] == "1ms"
        assert "x-ratelimit-limit-tokens" not in error.headers
        clock.now = first + 60  # the first request has left the minute
        await spend(backend, key, 10, "d")
        with pytest.raises(RateLimited) as again:
            await backend.reserve(key, 10, "e")
        assert again.value.retry_after_s == 30 and again.value.headers["x-ratelimit-reset-requests"] == "30s"

    run(make_backend, test)


def test_tpm_admits_on_the_estimate_and_counts_at_settlement(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 12))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend, tpm=1000)
        first = await backend.reserve(key, 10, "a", tokens=600)
        second = await backend.reserve(key, 10, "b", tokens=600)  # 600 < 1000 when it asked
        with pytest.raises(RateLimited) as refused:  # 1200 estimated in flight
            await backend.reserve(key, 10, "c", tokens=1)
        headers = refused.value.headers
        assert headers["x-ratelimit-limit-tokens"] == "1000" and headers["x-ratelimit-remaining-tokens"] == "0"
        assert "x-ratelimit-reset-tokens" in headers and "x-ratelimit-limit-requests" not in headers
        await backend.settle(first, 10, usage_record("a", input_tokens=50, output_tokens=50))  # 100 real
        await backend.release(second)  # nothing used
        settled_at = clock.now
        clock.now += 10
        third = await backend.reserve(key, 10, "d", tokens=899)  # 100 used: admitted
        fourth = await backend.reserve(key, 10, "e", tokens=1)  # 999 used: one token left, admitted
        with pytest.raises(RateLimited) as full:  # exactly 1000: refused
            await backend.reserve(key, 10, "f", tokens=1)
        assert full.value.headers["x-ratelimit-remaining-tokens"] == "0"
        assert full.value.headers["x-ratelimit-reset-tokens"] == "50s"  # when the settled 100 age out
        await backend.settle(third, 10, usage_record("d", input_tokens=900, output_tokens=0))
        await backend.release(fourth)
        clock.now = settled_at + 60  # the first request's 100 tokens age out; 900 remain
        await backend.release(await backend.reserve(key, 10, "g", tokens=5000))  # released: counts nothing
        held = await backend.reserve(key, 10, "h", tokens=100)  # 900 settled + 100 in flight = 1000
        with pytest.raises(RateLimited):
            await backend.reserve(key, 10, "i", tokens=1)
        await backend.release(held)

    run(make_backend, test)


def test_max_concurrent_counts_requests_in_flight(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 12))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend, max_concurrent=2)
        one = await backend.reserve(key, 10, "a")
        two = await backend.reserve(key, 10, "b")
        with pytest.raises(RateLimited) as refused:
            await backend.reserve(key, 10, "c")
        assert refused.value.headers["x-ratelimit-limit-requests"] == "2"
        assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
        assert "max_concurrent" in str(refused.value)
        await backend.settle(one, 10, usage_record("a"))
        three = await backend.reserve(key, 10, "d")
        await backend.release(two)
        await backend.release(three)
        held = [await backend.reserve(key, 10, f"e{i}") for i in range(2)]
        for hold in held:
            await backend.release(hold)

    run(make_backend, test)


def test_keys_without_limits_are_never_throttled(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 12))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend)
        holds = [await backend.reserve(key, 10, f"r{i}", tokens=100_000) for i in range(50)]
        for hold in holds:
            assert hold.tokens is None
            await backend.settle(hold, 10, usage_record(str(hold.id)))

    run(make_backend, test)


def test_window_spend_survives_a_restart(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 9))

    async def test() -> None:
        backend = await make_backend(clock)
        key = await new_key(backend, "1", period="week")
        await spend(backend, key, DOLLAR, "a")
        if make_backend.kind == "embedded":
            ledger = backend.ledger
            directory = ledger.directory
            await backend.close()
            make_backend.opened.remove(backend)
            backend = EmbeddedBackend(Ledger.open(directory, (), clock))
            make_backend.opened.append(backend)
        else:
            backend = await make_backend(clock)  # another gateway on the same Redis
        status, key = await backend.authenticate(BOOT_KEY)
        keys = (await backend.account("team"))["keys"]
        limited = next(k for k in keys if k["limit_period"] == "week")
        assert limited["window_spent_usd"] == "1.000000"
        status, info = await backend.authenticate(BOOT_KEY)
        assert status is AuthStatus.OK

    run(make_backend, test)


def test_options_are_checked_alike(make_backend: Any) -> None:
    clock = FakeClock()

    async def test() -> None:
        backend = await make_backend(clock)
        with pytest.raises(ValueError, match="limit_period needs limit_usd"):
            await backend.create_key("team", "x", limits=KeyLimits(period="day"))
        with pytest.raises(ValueError, match="limit_period must be one of"):
            await backend.create_key("team", "x", None, DOLLAR, limits=KeyLimits(period="year"))
        with pytest.raises(ValueError, match="rpm must be an integer"):
            await backend.create_key("team", "x", limits=KeyLimits(rpm=0))
        with pytest.raises(ValueError, match="management key"):
            await backend.create_key("team", "x", kind="management", limits=KeyLimits(rpm=5))
        assert (await backend.create_key("team", "x", limits=NO_LIMITS))["rpm"] is None

    run(make_backend, test)


def test_a_management_key_records_when_it_was_used(make_backend: Any) -> None:
    clock = FakeClock(utc(2026, 12, 7, 12))

    async def test() -> None:
        backend = await make_backend(clock)
        created = await backend.create_key("team", "console", kind="management")
        _, key = await backend.authenticate(created["key"])
        await backend.touch(key)
        shown = next(k for k in (await backend.account("team"))["keys"] if k["key_id"] == created["key_id"])
        assert shown["last_used_at"] == clock.now
        first = clock.now
        clock.now += 30  # within a minute: not written again
        _, key = await backend.authenticate(created["key"])
        await backend.touch(key)
        shown = next(k for k in (await backend.account("team"))["keys"] if k["key_id"] == created["key_id"])
        assert shown["last_used_at"] == first

    run(make_backend, test)
