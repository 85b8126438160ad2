"""Fixtures for the ledger tests: a state dir, a fake clock, ledgers that close themselves."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gateway.config import Account
from gateway.ledger.ledger import Ledger
from tests.ledger.ledger_fixtures import DEMO_KEY, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def open_ledger(clock: FakeClock) -> Iterator[Callable[..., Ledger]]:
    """``open_ledger(dir, accounts=..., **kw)``; every ledger still open at teardown is closed."""
    opened: list[Ledger] = []

    def factory(directory: Path, accounts: tuple[Account, ...] = (Account("demo", Decimal(5), (DEMO_KEY,)),),
                **kwargs: Any) -> Ledger:
        ledger = Ledger.open(str(directory), accounts, clock, **kwargs)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        ledger.close()
