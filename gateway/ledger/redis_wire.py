"""The ledger's script calls on one pipelined Redis connection: RESP out, hiredis in, no per-call Python client.

Why not redis-py for these: every request makes two script calls (reserve,
settle), and through ``redis.asyncio`` each call (or each pipeline of calls)
checked a connection out of the pool, ran its health check, encoded every
argument in Python, started an ``asyncio.timeout`` and awaited its own read:
about 16 % of a Redis-backed gateway's samples in py-spy, for work that is a
few bytes each way. Here a call is ``hiredis.pack_command`` (C) appended to
the connection's output, and a future appended to a queue. The output of one
loop turn goes out in one ``write``; Redis answers in order, so each parsed
reply (``hiredis.Reader``, C) resolves the oldest waiting future. Calls never
wait for each other: replies of one turn's pipeline may still be on the way
when the next turn's is written. redis-py keeps everything else (pub/sub,
bootstrap, admin reads), where a call's cost does not matter.

Failure is all or nothing per connection, as a socket's is: if Redis closes
it, the connection is refused, or no reply arrives for ``timeout_s`` while
calls wait, every waiting call fails with ``redis.exceptions.ConnectionError``
(or ``TimeoutError``), which ``RedisStore._call`` turns into
``LedgerUnavailable``; the next call opens a new connection. An error reply
(``-ERR ...``, ``-NOSCRIPT ...``) is that call's own result, returned as a
``ResponseError`` for the caller to judge.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any, Mapping, Sequence, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """One command as RESP: an array of bulk strings (str as UTF-8, numbers in decimal)."""
    return hiredis.pack_command(tuple(args))  # type: ignore[arg-type,no-any-return]  # stub: a 1-tuple


class _Wire(asyncio.Protocol):
    """One connection: written commands and the futures waiting for their replies, in the same order."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._last_progress = 0.0  # when a reply last arrived, or calls started waiting
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        try:
            reply = self._reader.gets()
            while reply is not False:
                future = waiting.popleft()
                if not future.done():  # else its caller was cancelled
                    future.set_result(reply)
                reply = self._reader.gets()
        except Exception as exc:  # garbage (hiredis.ProtocolError, bad UTF-8), or a reply nobody asked for
            self.fail(RedisConnectionError(f"unreadable reply from Redis: {exc!r}"))
            return
        self._last_progress = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis closed the connection ({exc or 'EOF'})"))

    # calls

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; the future gets its reply (a ResponseError for an error reply)."""
        future = self._loop.create_future()
        if self.closed:
            future.set_exception(RedisConnectionError("the connection to Redis is closed"))
            return future
        if not self._out:
            self._loop.call_soon(self._flush)  # everything sent in this loop turn goes in one write
        self._out.append(command)
        if not self._waiting:
            self._last_progress = time.monotonic()
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self._timeout_s, self._check_progress)
        self._waiting.append(future)
        return future

    def _flush(self) -> None:
        if self._out and not self.closed and self._transport is not None:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def _check_progress(self) -> None:
        """Calls wait and nothing came back for ``timeout_s``: Redis is stuck or gone; fail them all."""
        self._watchdog = None
        if self.closed or not self._waiting:
            return
        silent = time.monotonic() - self._last_progress
        if silent >= self._timeout_s:
            self.fail(RedisTimeoutError(f"no reply from Redis for {silent:.1f} s"))
        else:
            self._watchdog = self._loop.call_later(self._timeout_s - silent, self._check_progress)

    def fail(self, exc: Exception) -> None:
        """Close the connection; every call still waiting fails with ``exc``."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.abort()
        self._out.clear()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)


class RedisWire:
    """Pipelined calls on one connection to the Redis that a redis-py pool is configured for (opened when needed)."""

    def __init__(self, connection_kwargs: Mapping[str, Any], tls: ssl.SSLContext | None, timeout_s: float,
                 connect_timeout_s: float) -> None:
        """``connection_kwargs``: redis-py's, parsed from ``state.redis_url`` (host and port or unix path,
        username, password, db); ``tls``: the context for ``rediss://``."""
        self._kwargs = connection_kwargs
        self._tls = tls
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._wire: _Wire | None = None
        self._lock = asyncio.Lock()

    async def call(self, *args: Arg) -> Any:
        """One command's reply; an error reply is returned as ``ResponseError``, a failed connection raised."""
        wire = self._wire
        if wire is None or wire.closed:
            wire = await self._connected()
        return await wire.send(pack(args))

    async def _connected(self) -> _Wire:
        async with self._lock:  # concurrent callers share one connect
            if self._wire is None or self._wire.closed:
                self._wire = await self._open()
            return self._wire

    async def _open(self) -> _Wire:
        loop = asyncio.get_running_loop()
        kwargs = self._kwargs
        timeout_s = self._timeout_s
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if kwargs.get("path"):
                    _, wire = await loop.create_unix_connection(lambda: _Wire(timeout_s), kwargs["path"])
                else:
                    host = kwargs.get("host", "localhost")
                    _, wire = await loop.create_connection(
                        lambda: _Wire(timeout_s), host, int(kwargs.get("port", 6379)), ssl=self._tls,
                        server_hostname=host if self._tls is not None else None)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from None
        setup: list[tuple[Arg, ...]] = []
        if kwargs.get("password"):
            user = kwargs.get("username")
            setup.append(("AUTH", user, kwargs["password"]) if user else ("AUTH", kwargs["password"]))
        if kwargs.get("db"):
            setup.append(("SELECT", int(kwargs["db"])))
        for command in setup:
            reply = await wire.send(pack(command))
            if isinstance(reply, ResponseError):
                wire.fail(RedisConnectionError("setup refused"))
                raise RedisConnectionError(f"Redis refused {command[0]!r}: {reply}")
        return wire

    def close(self) -> None:
        if self._wire is not None:
            self._wire.fail(RedisConnectionError("the ledger is closing"))
            self._wire = None
