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
from functools import partial
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Mapping

from gateway.config import Model
from gateway.config import Price as ConfigPrice
from gateway.protocols.canonical import Price, Usage

_NANO_PER_TOKEN_PER_USD_PER_M = 1000  # 10**9 nano/USD / 10**6 tokens


@dataclass(frozen=True, slots=True)
class TokenRates:
    """Nano-dollars per token of each class; ints when exact, else Decimals (then ``exact`` is False)."""

    input: int | Decimal
    output: int | Decimal
    cached_input: int | Decimal
    cache_write: int | Decimal
    cache_write_1h: int | Decimal
    exact: bool

    @classmethod
    def from_price(cls, price: ConfigPrice) -> TokenRates:
        """Convert config prices; a missing cached or cache-write price bills those tokens at the input price."""
        def rate(usd_per_m: Decimal | None) -> Decimal:
            return (price.input if usd_per_m is None else usd_per_m) * _NANO_PER_TOKEN_PER_USD_PER_M

        rates = [rate(price.input), rate(price.output), rate(price.cached_input), rate(price.cache_write),
                 rate(price.cache_write_1h)]
        if all(r == r.to_integral_value() for r in rates):
            return cls(int(rates[0]), int(rates[1]), int(rates[2]), int(rates[3]), int(rates[4]), True)
        return cls(rates[0], rates[1], rates[2], rates[3], rates[4], False)

    def total(self, counts: tuple[int, int, int, int, int], rounding: str) -> int:
        """Nano-dollars for (uncached input, cache reads, 5-minute writes, 1-hour writes, output);
        a single rounding when a rate is fractional."""
        uncached, cached, write_5m, write_1h, output = counts
        amount = (uncached * self.input + cached * self.cached_input + write_5m * self.cache_write
                  + write_1h * self.cache_write_1h + output * self.output)
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
        return cls({key: TokenRates.from_price(m.price) for key, m in models.items()})

    def rates(self, model_key: str) -> TokenRates:
        """The rates of one model; KeyError names an unknown model id."""
        try:
            return self._rates[model_key]
        except KeyError:
            raise KeyError(f"no price for model {model_key!r}") from None

    def pricer(self, model_key: str) -> Price:
        """``usage -> cost_nano`` at one model's prices: what a stream renderer or tap needs for ``usage.cost``."""
        return partial(self.cost_nano, model_key)

    def cost_nano(self, model_key: str, usage: Usage) -> int:
        """The contract's formula: ``(input - cached - cache_write) x input + cached x cached_input
        + cache_write_5m x cache_write + cache_write_1h x cache_write_1h + output x output``.

        Counts are clamped (negatives to 0, cache reads to at most the input,
        cache writes to at most the rest, 1-hour writes to at most the writes) so
        a confused upstream can never make a request pay less than nothing or
        bill a token twice.
        """
        return self.rates(model_key).total(split_usage(usage), ROUND_HALF_UP)

    def estimate_nano(self, model_key: str, prompt_tokens: int, max_output_tokens: int) -> int:
        """The most a request may cost: prompt at the input price plus every allowed output token."""
        return self.rates(model_key).total((max(prompt_tokens, 0), 0, 0, 0, max(max_output_tokens, 0)), ROUND_CEILING)


def split_usage(usage: Usage) -> tuple[int, int, int, int, int]:
    """Usage as disjoint token classes: (uncached input, cache reads, 5-minute writes, 1-hour writes, output)."""
    input_tokens = max(usage.input_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), input_tokens)
    write = min(max(usage.cache_write_tokens, 0), input_tokens - cached)
    write_1h = min(max(usage.cache_write_1h_tokens, 0), write)
    return input_tokens - cached - write, cached, write - write_1h, write_1h, max(usage.output_tokens, 0)
