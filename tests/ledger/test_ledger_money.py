"""money.py and pricing.py: exact integer nano-dollars."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.config import Model, Price
from gateway.ledger.money import nano_to_usd, usd_to_nano
from gateway.ledger.pricing import PriceTable
from gateway.protocols.canonical import Usage


def model(input_: str, output: str = "0", cached: str | None = None) -> Model:
    return Model("m", "chat", (), Price(Decimal(input_), Decimal(output), None if cached is None else Decimal(cached)),
                 (), None)


def test_usd_to_nano_is_exact_for_decimal_str_and_int() -> None:
    assert usd_to_nano(Decimal("0.02")) == 20_000_000
    assert usd_to_nano("4.999987") == 4_999_987_000
    assert usd_to_nano(5) == 5_000_000_000
    assert usd_to_nano("0.000000001") == 1
    assert usd_to_nano("123456789012345678.123456789") == 123456789012345678123456789


def test_usd_to_nano_rejects_fractional_nano_floats_and_garbage() -> None:
    with pytest.raises(ValueError, match="finer than a nano"):
        usd_to_nano("0.0000000001")
    with pytest.raises(TypeError):
        usd_to_nano(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        usd_to_nano("ten dollars")
    with pytest.raises(ValueError):
        usd_to_nano("Infinity")


def test_nano_to_usd_keeps_six_to_nine_decimals() -> None:
    assert nano_to_usd(4_999_987_000) == "4.999987"
    assert nano_to_usd(20_000_000) == "0.020000"
    assert nano_to_usd(0) == "0.000000"
    assert nano_to_usd(1) == "0.000000001"
    assert nano_to_usd(-1_500) == "-0.0000015"
    assert nano_to_usd(5_000_000_000) == "5.000000"


def test_nano_to_usd_round_trips() -> None:
    for nano in (0, 1, 7, 20_000_000, 4_999_987_000, -123_456_789_012):
        assert usd_to_nano(nano_to_usd(nano)) == nano


def test_cost_formula_with_cached_tokens() -> None:
    table = PriceTable.from_models({"claude": model("3.00", "15.00", "0.30")})
    # (1000 - 400) x 3000 + 400 x 300 + 200 x 15000 nano
    assert table.cost_nano("claude", Usage(1000, 200, 400)) == 600 * 3000 + 400 * 300 + 200 * 15000


def test_cached_tokens_fall_back_to_the_input_price() -> None:
    table = PriceTable.from_models({"gpt": model("2.50", "10.00")})
    assert table.cost_nano("gpt", Usage(1000, 0, 400)) == table.cost_nano("gpt", Usage(1000, 0, 0)) == 2_500_000


def test_cost_clamps_nonsense_counts() -> None:
    table = PriceTable.from_models({"gpt": model("2.50", "10.00", "1.25")})
    assert table.cost_nano("gpt", Usage(100, -5, 500)) == 100 * 1250  # cached capped at input
    assert table.cost_nano("gpt", Usage(-3, 0, 0)) == 0


def test_a_million_one_token_costs_sum_to_exactly_two_cents() -> None:
    table = PriceTable.from_models({"emb": model("0.02")})
    one_token = Usage(1, 0, 0)
    total = sum(table.cost_nano("emb", one_token) for _ in range(1_000_000))
    assert total == 20_000_000
    assert nano_to_usd(total) == "0.020000" and Decimal(nano_to_usd(total)) == Decimal("0.02")


def test_fine_prices_round_half_up_once_per_request() -> None:
    table = PriceTable.from_models({"tiny": model("0.0005", "0.0015")})  # 0.5 and 1.5 nano per token
    assert table.cost_nano("tiny", Usage(1, 0, 0)) == 1  # 0.5 -> 1
    assert table.cost_nano("tiny", Usage(3, 1, 0)) == 3  # 1.5 + 1.5 = 3.0, not round(1.5)+round(1.5)=4
    assert table.cost_nano("tiny", Usage(0, 1, 0)) == 2  # 1.5 -> 2


def test_estimate_is_prompt_at_input_plus_max_output_at_output() -> None:
    table = PriceTable.from_models({"gpt": model("2.50", "10.00", "1.25"), "tiny": model("0.0005")})
    assert table.estimate_nano("gpt", 1000, 500) == 1000 * 2500 + 500 * 10_000
    assert table.estimate_nano("tiny", 1, 0) == 1  # a ceiling: 0.5 rounds up


def test_unknown_model_is_a_key_error_naming_it() -> None:
    table = PriceTable.from_models({})
    with pytest.raises(KeyError, match="nope"):
        table.cost_nano("nope", Usage(1, 1, 0))
