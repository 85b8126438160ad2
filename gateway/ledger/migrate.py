"""``python gateway.py --export-ledger FILE`` / ``--import-ledger FILE``: move a ledger between backends.

The file (JSON, see ``export.py``) holds accounts with their
balances, keys as hashes with their options (models, limit, expiry, kind,
revoked, spent) and the applied credit references; never a key in
plaintext, never in-flight reservations; usage history is not moved.
Both commands work on the backend the config names (``state.backend``):
to move from the embedded ledger to Redis, export with the old config and
import with the new one. Stop the gateways first: the embedded ledger's
directory lock refuses a running one, and an import refuses any account or
key the target already holds (so config bootstrap accounts must not have
been created there yet: import before the first start on Redis).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson

from gateway.config import Config
from gateway.ledger.embedded import export_embedded, import_embedded
from gateway.ledger.errors import LedgerLocked, LedgerUnavailable
from gateway.ledger.redis_backend import RedisBackend


def export_ledger(config: Config, path: str) -> int:
    try:
        if config.state.backend == "redis":
            document = asyncio.run(_with_redis(config, lambda backend: backend.export_state()))
        else:
            document = export_embedded(config.state.dir)
    except (LedgerLocked, LedgerUnavailable, OSError, ValueError) as exc:
        print(f"--export-ledger: {_describe(exc)}", file=sys.stderr)
        return 1
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    temp = f"{path}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # key hashes and balances: not world-readable
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    print(f"exported {len(document['accounts'])} accounts, {len(document['keys'])} keys and "
          f"{len(document['credit_refs'])} credit references from the {config.state.backend} ledger to {path}")
    return 0


def import_ledger(config: Config, path: str) -> int:
    try:
        with open(path, "rb") as handle:
            document = orjson.loads(handle.read())
        if config.state.backend == "redis":
            counts = asyncio.run(_with_redis(config, lambda backend: backend.import_state(document)))
        else:
            counts = import_embedded(config.state.dir, document)
    except (LedgerLocked, LedgerUnavailable, OSError, ValueError) as exc:
        print(f"--import-ledger: {_describe(exc)}", file=sys.stderr)
        return 1
    print(f"imported {counts['accounts']} accounts, {counts['keys']} keys and {counts['credit_refs']} credit "
          f"references from {path} into the {config.state.backend} ledger")
    return 0


async def _with_redis(config: Config, action: Any) -> Any:
    backend = RedisBackend(config.state.redis_url, config.state.redis_prefix)  # no bootstrap: a plain copy
    try:
        return await action(backend)
    finally:
        await backend.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, LedgerUnavailable):
        return f"Redis is unreachable: {exc.detail}"
    return str(exc)
