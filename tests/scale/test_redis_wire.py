"""The ledger's own Redis connection (``gateway/ledger/redis_wire.py``) against a real redis-server.

RESP encoding, replies matched to their callers in order across one
pipelined connection, error replies kept to their own call, the URL's
password, database and unix socket honoured, and a Redis that stops answering
or drops the connection turned into a failed call (then a fresh connection),
never a call that waits forever.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.config import Account
from gateway.ledger.errors import LedgerUnavailable
from gateway.ledger.redis_backend import RedisBackend
from gateway.ledger.redis_wire import RedisWire, pack
from tests.scale.conftest import KEY, RedisServer, needs_redis
from tests.support.logs import expect_log

pytestmark = needs_redis


def wire_for(url: str, timeout_s: float = 2.0) -> RedisWire:
    """A wire configured as RedisStore configures it: from redis-py's parse of the URL."""
    pool = aioredis.from_url(url).connection_pool
    return RedisWire(pool.connection_kwargs, None, timeout_s, timeout_s)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP port that accepts connections and, unless the test says otherwise, never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_pack_writes_resp_arrays_of_bulk_strings() -> None:
    assert pack(("EVALSHA", "ab", 0, "é", b"\r\n", -12)) == (
        b"*6\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n$2\r\n\xc3\xa9\r\n$2\r\n\r\n\r\n$3\r\n-12\r\n")
    assert pack(("PING",)) == b"*1\r\n$4\r\nPING\r\n"


def test_replies_reach_their_callers_in_order_on_one_connection(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    before = int(admin.info("stats")["total_connections_received"])

    async def main() -> list[Any]:
        wire = wire_for(redis_server.url)
        try:
            await wire.call("SET", "text", "not a number")
            calls = [wire.call("INCR", "counter") if n != 50 else wire.call("INCR", "text") for n in range(200)]
            results = await asyncio.gather(*calls)
            results.append(await wire.call("GET", "counter"))  # a later loop turn: the same connection
            return results
        finally:
            wire.close()

    results = asyncio.run(main())
    assert isinstance(results[50], ResponseError)  # only that call's reply is the error
    numbers = results[:50] + results[51:200]
    assert numbers == list(range(1, 200))
    assert results[200] == "199"
    assert int(admin.info("stats")["total_connections_received"]) - before == 1


def test_password_and_database_of_the_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="s3cret-pw")
    try:
        async def main() -> None:
            wire = wire_for(f"redis://:s3cret-pw@127.0.0.1:{server.port}/3")
            try:
                assert await wire.call("SET", "where", "db3") == "OK"
            finally:
                wire.close()
            refused = wire_for(f"redis://:wrong@127.0.0.1:{server.port}/0")
            with pytest.raises(RedisConnectionError, match="AUTH"):
                await refused.call("PING")

        asyncio.run(main())
        admin = server.client()
        assert admin.execute_command("SELECT", 3) and admin.get("where") == "db3"
        assert server.client().get("where") is None  # not in db 0
    finally:
        server.close()


def test_backend_on_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    server = RedisServer(tmp_path / "redis", unix_socket=path)
    try:
        async def main() -> str:
            backend = RedisBackend(f"unix://{path}", "u:", (Account("scale", Decimal("1"), (KEY,)),))
            await backend.start()
            try:
                _, key = await backend.authenticate(KEY)
                assert key is not None
                held = await backend.reserve(key, 1000, "over-unix")
                await backend.settle(held, 250, {"request_id": "over-unix", "model": "m", "created_at": 1.0})
                return str((await backend.balance("scale"))["balance_usd"])
            finally:
                await backend.close()

        assert asyncio.run(main()) == "0.99999975"  # 250 nano-dollars charged
        assert server.client().exists("u:settled:over-unix") == 1
    finally:
        server.close()


def test_a_silent_redis_fails_the_waiting_calls_after_the_timeout(listener: socket.socket) -> None:
    """A server that accepts and never answers (a hung Redis): the calls fail, they do not wait forever."""
    port = listener.getsockname()[1]

    async def main() -> None:
        wire = wire_for(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
        try:
            calls = [asyncio.ensure_future(wire.call("PING")) for _ in range(3)]
            done, pending = await asyncio.wait(calls, timeout=5)
            assert not pending
            for call in done:
                assert isinstance(call.exception(), RedisTimeoutError)
        finally:
            wire.close()

    asyncio.run(main())


def test_a_dropped_connection_fails_its_calls_and_the_next_call_reconnects(redis_server: RedisServer) -> None:
    async def main() -> None:
        wire = wire_for(redis_server.url)
        try:
            client_id = await wire.call("CLIENT", "ID")
            blocked = asyncio.ensure_future(wire.call("BLPOP", "never-filled", 0))  # waits inside Redis
            await asyncio.sleep(0.1)
            redis_server.client().client_kill_filter(_id=client_id)
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(blocked, 5)
            assert await wire.call("PING") == "PONG"
            assert await wire.call("CLIENT", "ID") != client_id
        finally:
            wire.close()

    asyncio.run(main())


def test_backend_turns_a_hung_redis_into_ledger_unavailable(listener: socket.socket) -> None:
    """Through RedisBackend: a script call to a Redis that never answers is a 503 within the socket timeout."""
    port = listener.getsockname()[1]

    async def main() -> None:
        backend = RedisBackend(f"redis://127.0.0.1:{port}/0", "h:", socket_timeout_s=0.3)
        try:
            with pytest.raises(LedgerUnavailable):
                await asyncio.wait_for(backend._script("PURGE", 10), 5)
            assert not backend.available
        finally:
            await backend._close_connections()

    with expect_log("infermesh.ledger", "is unreachable: TimeoutError"):
        asyncio.run(main())


def test_an_unreadable_reply_fails_the_call_instead_of_hanging(listener: socket.socket) -> None:
    """A server that answers with something that is not RESP: the call fails at once, the connection is dropped."""
    port = listener.getsockname()[1]

    def answer_garbage() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"?this is not RESP\r\n")
            conn.recv(1024)  # until the client hangs up

    server = threading.Thread(target=answer_garbage, daemon=True)
    server.start()

    async def main() -> None:
        wire = wire_for(f"redis://127.0.0.1:{port}/0", timeout_s=5)
        try:
            with pytest.raises(RedisConnectionError, match="unreadable reply"):
                await asyncio.wait_for(wire.call("PING"), 2)
        finally:
            wire.close()

    asyncio.run(main())
    server.join(5)
    assert not server.is_alive()  # the client closed the connection


def test_a_connection_that_died_unnoticed_costs_no_request(redis_server: RedisServer) -> None:
    """Redis closes the ledger's idle connection (a restart, its idle ``timeout``) and the next reserve is
    written before the gateway has seen the close: it is sent again on a new connection, not answered 503.
    A credit is not sent twice (run twice it would answer "already applied"): it fails closed instead."""
    async def main() -> None:
        backend = RedisBackend(redis_server.url, "d:", (Account("scale", Decimal("1"), (KEY,)),))
        await backend.start()
        admin = redis_server.client()
        try:
            _, key = await backend.authenticate(KEY)
            assert key is not None
            client_id = await backend._wire.call("CLIENT", "ID")
            admin.client_kill_filter(_id=client_id)  # blocking: the loop has not seen the close yet
            held = await backend.reserve(key, 1000, "after-kill")
            await backend.settle(held, 1000, {"request_id": "after-kill", "model": "m", "created_at": 1.0})
            assert admin.exists("d:settled:after-kill") == 1
            client_id = await backend._wire.call("CLIENT", "ID")
            admin.client_kill_filter(_id=client_id)
            with pytest.raises(LedgerUnavailable):
                await backend.credit("scale", 5, "inv-1")
            assert await backend.credit("scale", 5, "inv-1")  # next time, on a new connection: applied once
        finally:
            await backend.close()

    with expect_log("infermesh.ledger", "is unreachable: ConnectionError"):
        asyncio.run(main())
