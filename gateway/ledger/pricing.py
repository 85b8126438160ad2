"""Prices per token in nano-dollars, and the cost of a request's usage.

Config prices are USD per 1M tokens, so a token costs ``price * 1000`` nano.
With at most three decimals per 1M (every public price list we know of:
$0.02, $2.50, $0.075) that is an integer and costs are computed with integer
arithmetic only: 1,000,000 one-token charges at $0.02/1M sum to exactly $0.02.

A finer price (say $0.0001/1M = 0.1 nano per token) cannot be an integer
per token. Rounding per token would bill such tokens at 0 or double, so the
request's cost is computed as a Decimal and rounded half-up to the nano once
per request; the error is at most half a nano-dollar per request.
Estimates (the reservation cap) round up instead: they are a ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Mapping

from gateway.config import Model
from gateway.protocols.canonical import Usage

_NANO_PER_TOKEN_PER_USD_PER_M = 1000  # 10**9 nano/USD / 10**6 tokens


@dataclass(frozen=True, slots=True)
class TokenRates:
    """Nano-dollars per token; ints when exact, else Decimals (then ``exact`` is False)."""

    input: int | Decimal
    output: int | Decimal
    cached_input: int | Decimal
    exact: bool

    @classmethod
    def from_usd_per_million(cls, input_: Decimal, output: Decimal, cached_input: Decimal | None) -> TokenRates:
        """Convert config prices; a missing cached price bills cached tokens at the input price."""
        rates = [price * _NANO_PER_TOKEN_PER_USD_PER_M
                 for price in (input_, output, input_ if cached_input is None else cached_input)]
        if all(rate == rate.to_integral_value() for rate in rates):
            return cls(int(rates[0]), int(rates[1]), int(rates[2]), True)
        return cls(rates[0], rates[1], rates[2], False)

    def total(self, uncached: int, cached: int, output: int, rounding: str) -> int:
        """Nano-dollars for these token counts; a single rounding when a rate is fractional."""
        amount = uncached * self.input + cached * self.cached_input + output * self.output
        if self.exact:
            return int(amount)
        return int(Decimal(amount).quantize(Decimal(1), rounding=rounding))


class PriceTable:
    """Per-model token rates, built once per config load (not per request)."""

    def __init__(self, rates: Mapping[str, TokenRates]) -> None:
        self._rates = dict(rates)

    @classmethod
    def from_models(cls, models: Mapping[str, Model]) -> PriceTable:
        """Key the table by the normalized model id, as ``Config.models`` is."""
        return cls({key: TokenRates.from_usd_per_million(m.price.input, m.price.output, m.price.cached_input)
                    for key, m in models.items()})

    def rates(self, model_key: str) -> TokenRates:
        """The rates of one model; KeyError names an unknown model id."""
        try:
            return self._rates[model_key]
        except KeyError:
            raise KeyError(f"no price for model {model_key!r}") from None

    def cost_nano(self, model_key: str, usage: Usage) -> int:
        """``(input - cached) x input + cached x cached_input + output x output``.

        Counts are clamped: negative counts to 0 and cached to at most input,
        so a confused upstream can never make a request pay less than nothing
        or bill cached tokens twice.
        """
        input_tokens = max(usage.input_tokens, 0)
        cached = min(max(usage.cached_tokens, 0), input_tokens)
        return self.rates(model_key).total(input_tokens - cached, cached, max(usage.output_tokens, 0),
                                           ROUND_HALF_UP)

    def estimate_nano(self, model_key: str, prompt_tokens: int, max_output_tokens: int) -> int:
        """The most a request may cost: prompt at the input price plus every allowed output token."""
        return self.rates(model_key).total(max(prompt_tokens, 0), 0, max(max_output_tokens, 0), ROUND_CEILING)
