"""Helpers shared by the ledger tests (a uniquely named module: ``conftest`` is not importable reliably)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from gateway.ledger.ledger import Ledger
from tests.support.keys import DEMO_KEY


class FakeClock:
    """A clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def crash_copy(state_dir: Path, tmp_path: Path, name: str = "crashed") -> Path:
    """What a crash leaves on disk: the files as the OS has them right now (no close, no final snapshot)."""
    target = tmp_path / name
    shutil.copytree(state_dir, target)
    return target


def usage_record(request_id: str = "req", created_at: float = 1_700_000_000.0, **extra: Any) -> dict[str, Any]:
    """A usage record as the pipeline passes it to settle (account, key_id, cost_usd are filled in)."""
    record = {"created_at": created_at, "request_id": request_id, "model": "gpt-4o", "node": "mock-1",
              "input_tokens": 10, "output_tokens": 5, "cached_tokens": 0, "estimated": False, "status": 200,
              "latency_ms": 12.5, "ttft_ms": 3.0, "endpoint": "/v1/chat/completions", "stream": False}
    record.update(extra)
    return record


def query_usage(ledger: Ledger, account_id: str | None, limit: int = 100, since: float | None = None,
                until: float | None = None) -> list[dict[str, Any]]:
    """What ``EmbeddedBackend.usage`` answers, from synchronous test code."""
    if account_id is not None:
        ledger.check_account(account_id)
    return asyncio.run(ledger.usage_store.query(account_id, limit, since, until))
