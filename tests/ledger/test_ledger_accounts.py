"""ledger.py in one process: admission, settlement, credits, keys, usage, bootstrap."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest

from gateway.config import Account, Model, Price
from gateway.ledger.errors import InsufficientBalance, KeyLimitExceeded, UnknownAccount
from gateway.ledger.keys import KeyInfo
from gateway.ledger.ledger import AuthStatus, Ledger
from gateway.ledger.pricing import PriceTable
from gateway.protocols.canonical import Usage
from tests.ledger.ledger_fixtures import DEMO_KEY, FakeClock, query_usage, usage_record

OpenLedger = Callable[..., Ledger]


def demo_key(ledger: Ledger) -> KeyInfo:
    status, info = ledger.authenticate(DEMO_KEY)
    assert status is AuthStatus.OK and info is not None
    return info


def test_settles_of_one_token_at_two_cents_per_million_sum_exactly(state_dir: Path, open_ledger: OpenLedger) -> None:
    # 1e6 settles take ~10 s (and write ~150 MB), so 1e5 settles here; the 1e6 sum is in test_ledger_money.
    ledger = open_ledger(state_dir, (Account("demo", Decimal(1), (DEMO_KEY,)),))
    table = PriceTable.from_models({"emb": Model("emb", "embedding", (), Price(Decimal("0.02")), (), None)})
    key, one_token = demo_key(ledger), Usage(1, 0, 0)
    for _ in range(100_000):
        reservation = ledger.reserve(key, table.estimate_nano("emb", 1, 0))
        ledger.settle(reservation, table.cost_nano("emb", one_token), usage_record())
    assert ledger.balance("demo")["balance_usd"] == "0.998000"  # 1 - 100,000 x 20 nano = 1 - 0.002
    assert ledger.account("demo")["keys"][0]["spent_usd"] == "0.002000"


def test_reservations_admit_at_most_one_request_beyond_the_balance(state_dir: Path, open_ledger: OpenLedger) -> None:
    cost = 1_000_000  # one request costs $0.001; the account holds ten and a half
    ledger = open_ledger(state_dir, (Account("demo", Decimal("0.0105"), (DEMO_KEY,)),))
    key = demo_key(ledger)
    admitted = []
    for _ in range(200):
        try:
            admitted.append(ledger.reserve(key, cost))
        except InsufficientBalance:
            pass
    assert len(admitted) == 11
    assert admitted[-1].amount_nano == 500_000  # capped at what was left
    assert ledger.balance("demo")["available_usd"] == "0.000000"
    for reservation in admitted:
        ledger.settle(reservation, cost, usage_record())
    balance = ledger.balance("demo")
    assert balance["balance_usd"] == "-0.000500" and balance["reserved_usd"] == "0.000000"
    assert Decimal(balance["balance_usd"]) >= -Decimal(cost) / 10**9
    with pytest.raises(InsufficientBalance, match="demo"):
        ledger.reserve(key, 1)


def test_release_returns_the_hold_without_charging(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    reservation = ledger.reserve(demo_key(ledger), 2_000_000_000)
    assert ledger.balance("demo")["reserved_usd"] == "2.000000"
    ledger.release(reservation)
    ledger.release(reservation)  # idempotent
    assert ledger.balance("demo") == {"account": "demo", "balance_usd": "5.000000", "reserved_usd": "0.000000",
                                      "available_usd": "5.000000"}
    assert query_usage(ledger, "demo") == []


def test_settle_twice_or_after_release_raises(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    reservation = ledger.reserve(demo_key(ledger), 100)
    ledger.settle(reservation, 100, usage_record())
    with pytest.raises(ValueError, match="already settled"):
        ledger.settle(reservation, 100, usage_record())
    assert ledger.balance("demo")["balance_usd"] == "4.9999999"


def test_credit_applies_once_per_reference(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    assert ledger.credit("demo", 1_000_000_000, "stripe:pi_1") is True
    assert ledger.credit("demo", 1_000_000_000, "stripe:pi_1") is False
    assert ledger.balance("demo")["balance_usd"] == "6.000000"
    ledger.close()
    reopened = open_ledger(state_dir)
    assert reopened.credit("demo", 1_000_000_000, "stripe:pi_1") is False
    assert reopened.credit("demo", 1_000_000_000, "stripe:pi_2") is True
    assert reopened.balance("demo")["balance_usd"] == "7.000000"


def test_credit_validates_its_arguments(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    with pytest.raises(UnknownAccount, match="nobody"):
        ledger.credit("nobody", 1, "ref")
    with pytest.raises(ValueError):
        ledger.credit("demo", 0, "ref")
    with pytest.raises(ValueError):
        ledger.credit("demo", 1, "")


def test_create_account_and_views(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_account("acme", 2_500_000_000)
    assert created == {"id": "acme", "balance_usd": "2.500000", "reserved_usd": "0.000000",
                       "available_usd": "2.500000", "keys": []}
    with pytest.raises(ValueError, match="exists"):
        ledger.create_account("acme")
    with pytest.raises(ValueError):
        ledger.create_account("bad\nid")
    assert [a["id"] for a in ledger.accounts()] == ["acme", "demo"]
    with pytest.raises(UnknownAccount):
        ledger.balance("nobody")


def test_unknown_revoked_and_expired_keys_are_told_apart(state_dir: Path, open_ledger: OpenLedger,
                                                         clock: FakeClock) -> None:
    ledger = open_ledger(state_dir)
    assert ledger.authenticate("sk-not-a-key-at-all") == (AuthStatus.UNKNOWN, None)
    expiring = ledger.create_key("demo", "short-lived", expires_at=clock.now + 60)
    assert ledger.authenticate(expiring["key"])[0] is AuthStatus.OK
    clock.now += 60
    status, info = ledger.authenticate(expiring["key"])
    assert status is AuthStatus.EXPIRED and info is not None and info.key_id == expiring["key_id"]
    revoked = ledger.create_key("demo", "doomed")
    assert ledger.revoke_key(revoked["key_id"]) is True
    assert ledger.revoke_key(revoked["key_id"]) is True  # idempotent
    assert ledger.revoke_key("key_000000000000") is False
    assert ledger.authenticate(revoked["key"])[0] is AuthStatus.REVOKED
    ledger.close()
    assert open_ledger(state_dir).authenticate(revoked["key"])[0] is AuthStatus.REVOKED


def test_created_key_shape_and_plaintext_shown_once(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_key("demo", "ci", models=["GPT-4.1", "claude-sonnet-4-6"], limit_nano=10**9)
    assert created["key"].startswith("sk-") and len(created["key"]) >= 3 + 43
    assert created["key_id"].startswith("key_") and len(created["key_id"]) == 16
    assert created["prefix"] == created["key"][:10]
    assert created["models"] == ["claude-sonnet-4-6", "gpt-4-1"] and created["limit_usd"] == "1.000000"
    listed = ledger.account("demo")["keys"]
    assert all("key" not in k and "hash" not in k for k in listed)
    assert {k["key_id"] for k in listed} == {created["key_id"], ledger.authenticate(DEMO_KEY)[1].key_id}


def test_key_models_restriction_is_carried_in_key_info(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_key("demo", "emb-only", models=["Text-Embedding-3.small"])
    info = ledger.authenticate(created["key"])[1]
    assert info is not None and info.models == frozenset({"text-embedding-3-small"})
    assert info.allows("text-embedding-3-small") and not info.allows("gpt-4o")
    assert demo_key(ledger).models is None and demo_key(ledger).allows("anything")
    with pytest.raises(ValueError):
        ledger.create_key("demo", "bad", models="gpt-4o")  # a string is not a list


def test_key_spend_limit_caps_reservations_and_refuses_when_spent(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    created = ledger.create_key("demo", "capped", limit_nano=3_000)
    key = ledger.authenticate(created["key"])[1]
    assert key is not None
    first = ledger.reserve(key, 2_000)
    second = ledger.reserve(key, 2_000)
    assert second.amount_nano == 1_000  # only what is left of the limit
    with pytest.raises(KeyLimitExceeded, match="limit of 0.000003"):
        ledger.reserve(key, 1)
    ledger.settle(first, 2_000, usage_record())
    ledger.settle(second, 1_500, usage_record())
    with pytest.raises(KeyLimitExceeded):
        ledger.reserve(key, 1)
    assert ledger.authenticate(created["key"])[1].spent_nano == 3_500  # type: ignore[union-attr]
    assert ledger.reserve(demo_key(ledger), 1).amount_nano == 1  # the account itself is fine


def test_settle_records_usage_and_key_activity(state_dir: Path, open_ledger: OpenLedger, clock: FakeClock) -> None:
    ledger = open_ledger(state_dir)
    key = demo_key(ledger)
    ledger.settle(ledger.reserve(key, 10), 1_234, usage_record("r1", clock.now))
    [record] = query_usage(ledger, "demo")
    assert record["account"] == "demo" and record["key_id"] == key.key_id
    assert record["cost_usd"] == "0.000001234" and record["request_id"] == "r1"
    assert demo_key(ledger).last_used_at == clock.now and demo_key(ledger).spent_nano == 1_234


def test_usage_queries_limit_since_newest_first_per_account(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    ledger.create_account("acme", 10**9)
    acme = ledger.authenticate(ledger.create_key("acme", "k")["key"])[1]
    demo = demo_key(ledger)
    for i in range(10):
        ledger.settle(ledger.reserve(demo, 1), 1, usage_record(f"demo-{i}", 1_700_000_000.0 + i))
        ledger.settle(ledger.reserve(acme, 1), 1, usage_record(f"acme-{i}", 1_700_000_000.0 + i))  # type: ignore[arg-type]
    assert [r["request_id"] for r in query_usage(ledger, "demo", limit=3)] == ["demo-9", "demo-8", "demo-7"]
    assert [r["request_id"] for r in query_usage(ledger, "demo", since=1_700_000_007)] == ["demo-9", "demo-8", "demo-7"]
    assert [r["request_id"] for r in query_usage(ledger, "acme", limit=2, since=1_700_000_000)] == ["acme-9", "acme-8"]
    assert [r["request_id"] for r in query_usage(ledger, None, limit=3)] == ["acme-9", "demo-9", "acme-8"]
    assert len(query_usage(ledger, None, limit=1000)) == 20
    with pytest.raises(UnknownAccount):
        query_usage(ledger, "nobody")
    ledger.close()
    assert [r["request_id"] for r in query_usage(open_ledger(state_dir), "demo", limit=1)] == ["demo-9"]


def test_config_bootstrap_creates_once_and_keeps_ledger_balances(state_dir: Path, open_ledger: OpenLedger) -> None:
    ledger = open_ledger(state_dir)
    assert ledger.account("demo")["keys"][0]["name"] == "config"
    ledger.settle(ledger.reserve(demo_key(ledger), 10), 1_000_000_000, usage_record())
    ledger.close()
    new_key = "sk-another-config-key-0001"
    reopened = open_ledger(state_dir, (Account("demo", Decimal(100), (DEMO_KEY, new_key)),
                                       Account("beta", Decimal("0.5"), ())))
    assert reopened.balance("demo")["balance_usd"] == "4.000000"  # not reset to the config's 100
    assert reopened.balance("beta")["balance_usd"] == "0.500000"
    assert len(reopened.account("demo")["keys"]) == 2
    assert reopened.authenticate(new_key)[0] is AuthStatus.OK
