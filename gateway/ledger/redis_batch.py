"""Ledger script calls made in the same IOLoop turn go to Redis as one pipeline.

Under load, many requests reserve and settle at about the same moment. Sent
one by one through ``redis.asyncio`` each call takes a connection from the
pool (with its health check), writes, awaits and parses its own reply: about
half of a Redis-backed request's CPU in profiles. Here the first call of a
turn opens a batch and yields once; every script call issued meanwhile joins
it, and the batch is sent as one pipeline (one connection, one write, the
replies read in one go). A lone call (one request at a time) is sent as
before, so a quiet gateway pays only the one yield.

Each call keeps its own result or error: a script's error fails only its
caller, a lost connection fails the whole batch (each caller then answers
``LedgerUnavailable`` through ``RedisStore._call``, as before). The pipeline
is not a transaction: each script is atomic on its own, which is what the
ledger's correctness rests on, and the calls of different requests are
independent. Scripts go by SHA (``EVALSHA``); if Redis lost its script cache
(a restart, ``SCRIPT FLUSH``) the refused calls are retried through
redis-py's script objects, which load the script first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

Call = tuple[str, list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, redis: Any, scripts: dict[str, AsyncScript]) -> None:
        self._redis = redis
        self._scripts = scripts
        self._open: list[Call] | None = None

    async def run(self, name: str, args: list[Any]) -> Any:
        """Run script ``name`` with ``args`` (no keys: the scripts build theirs from the prefix argument)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._open is not None:
            self._open.append((name, args, future))
            return await future
        batch = self._open = [(name, args, future)]
        try:
            await asyncio.sleep(0)  # one loop turn: the other requests of this turn join the batch
        except asyncio.CancelledError:
            self._open = None
            asyncio.ensure_future(self._execute(batch))  # the others still get their answers
            raise
        self._open = None
        try:
            await self._execute(batch)
        except BaseException:  # cancelled mid-pipeline: the others must not wait forever
            for _, _, waiting in batch:
                if not waiting.done():
                    waiting.set_exception(RedisConnectionError("the batch was interrupted"))
            future.exception()  # this caller's own: retrieved here, it re-raises below
            raise
        return future.result()

    async def _execute(self, batch: list[Call]) -> None:
        if len(batch) == 1:
            name, args, future = batch[0]
            results: list[Any] = [await self._one(name, args)]
        else:
            pipe = self._redis.pipeline(transaction=False)
            for name, args, _ in batch:
                pipe.evalsha(self._scripts[name].sha, 0, *args)
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # the connection failed: every call of the batch failed with it
                results = [exc] * len(batch)
            for index, result in enumerate(results):
                if isinstance(result, NoScriptError):
                    name, args, _ = batch[index]
                    results[index] = await self._one(name, args)
        for (_, _, future), result in zip(batch, results):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _one(self, name: str, args: list[Any]) -> Any:
        """One call through redis-py's script object (it loads the script if Redis does not know it)."""
        try:
            return await self._scripts[name](args=args)
        except Exception as exc:
            return exc
