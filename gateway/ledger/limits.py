"""Per-key spend windows and rate limits: the calendar, the rolling minute, and what a refusal says.

All of it is off unless the operator set it on the key (an account with a
balance is never throttled by default):

* ``limit_usd`` + ``limit_period`` (``day``/``week``/``month``): spend in the
  current UTC calendar window; the window starts over by itself at midnight UTC,
  on Monday, on the 1st. Without a period the limit is for the key's lifetime.
* ``rpm``: requests admitted in the rolling minute.
* ``tpm``: input + output tokens in the rolling minute. A request is admitted
  on its estimate (prompt estimate + max output) while anything is left, and
  the estimate counts until it settles; then its real token count does.
* ``max_concurrent``: requests in flight at once.

The embedded ledger keeps the rolling state here (``KeyRates``, memory only:
a restart forgets the last minute, never the window spend, which is durable).
The Redis ledger does the same in its reserve script, with the window starts
computed here and passed in, so both use the ledger's own clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from gateway.ledger.errors import InvalidLedgerArgument, RateLimited

PERIODS = ("day", "week", "month")
MINUTE_S = 60.0
MAX_RATE = 1_000_000  # rpm/tpm/max_concurrent above this are surely a typo


def window_start(period: str, at: float) -> float:
    """The start (unix seconds) of the UTC calendar window of ``period`` that contains ``at``."""
    moment = datetime.fromtimestamp(at, timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day.timestamp()
    if period == "week":  # ISO weeks start on Monday
        return (day - timedelta(days=day.weekday())).timestamp()
    if period == "month":
        return day.replace(day=1).timestamp()
    raise InvalidLedgerArgument(f"limit_period must be one of {', '.join(PERIODS)}, not {period!r}")


def window_end(period: str, at: float) -> float:
    """When the window containing ``at`` ends, i.e. the next reset."""
    start = datetime.fromtimestamp(window_start(period, at), timezone.utc)
    if period == "day":
        return (start + timedelta(days=1)).timestamp()
    if period == "week":
        return (start + timedelta(days=7)).timestamp()
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month).timestamp()


def window_starts(at: float) -> dict[str, float]:
    """The start of every period's window at ``at`` (the Redis scripts pick the key's own)."""
    return {period: window_start(period, at) for period in PERIODS}


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A key's optional window and rates (its ``limit_nano`` stays beside it, as before limits existed)."""

    period: str | None = None  # day | week | month; None: limit_nano is a lifetime limit
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    def check(self, limit_nano: int | None) -> None:
        """ValueError naming the option that is wrong."""
        if self.period is not None:
            if self.period not in PERIODS:
                raise InvalidLedgerArgument(f"limit_period must be one of {', '.join(PERIODS)}, not {self.period!r}")
            if limit_nano is None:
                raise InvalidLedgerArgument("limit_period needs limit_usd: it says how often that limit starts over")
        for name in ("rpm", "tpm", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 1 <= value <= MAX_RATE):
                raise InvalidLedgerArgument(f"{name} must be an integer from 1 to {MAX_RATE}, not {value!r}")


NO_LIMITS = KeyLimits()


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s"


def refusal(what: str, rpm: int | None, tpm: int | None, max_concurrent: int | None, *, requests_used: int,
            tokens_used: int, inflight: int, requests_reset_s: float, tokens_reset_s: float) -> RateLimited:
    """The 429 for the limit ``what`` (``rpm``, ``tpm`` or ``concurrent``) with every header that applies.

    The requests trio describes ``rpm`` when set, else ``max_concurrent``; the tokens trio is sent when
    ``tpm`` is set.
    """
    headers: dict[str, str] = {}
    if rpm is not None:
        headers.update({"x-ratelimit-limit-requests": str(rpm),
                        "x-ratelimit-remaining-requests": str(max(rpm - requests_used, 0)),
                        "x-ratelimit-reset-requests": duration(requests_reset_s)})
    elif max_concurrent is not None:
        headers.update({"x-ratelimit-limit-requests": str(max_concurrent),
                        "x-ratelimit-remaining-requests": str(max(max_concurrent - inflight, 0)),
                        "x-ratelimit-reset-requests": duration(requests_reset_s)})
    if tpm is not None:
        headers.update({"x-ratelimit-limit-tokens": str(tpm),
                        "x-ratelimit-remaining-tokens": str(max(tpm - tokens_used, 0)),
                        "x-ratelimit-reset-tokens": duration(tokens_reset_s)})
    if what == "rpm":
        message = (f"rate limit reached for this key: {rpm} requests per minute; "
                   f"try again in {duration(requests_reset_s)}")
        wait = requests_reset_s
    elif what == "tpm":
        message = (f"rate limit reached for this key: {tpm} tokens per minute (used {tokens_used}, counting "
                   f"requests in flight at their estimate); try again in {duration(tokens_reset_s)}")
        wait = tokens_reset_s
    else:
        message = (f"this key already has {inflight} requests in flight, its limit (max_concurrent "
                   f"{max_concurrent}); retry when one finishes")
        wait = requests_reset_s
    return RateLimited(message, wait, headers)


class KeyRates:
    """One key's rolling minute and in-flight requests (the embedded ledger's; memory only)."""

    __slots__ = ("requests", "tokens", "tokens_total", "inflight", "inflight_tokens")

    def __init__(self) -> None:
        self.requests: deque[float] = deque()  # admission times
        self.tokens: deque[tuple[float, int]] = deque()  # (settle time, tokens)
        self.tokens_total = 0
        self.inflight = 0
        self.inflight_tokens = 0

    def _expire(self, now: float) -> None:
        horizon = now - MINUTE_S
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= horizon:
            self.tokens_total -= self.tokens.popleft()[1]

    def admit(self, now: float, estimate: int, rpm: int | None, tpm: int | None,
              max_concurrent: int | None) -> None:
        """Count one more request, or raise RateLimited saying which limit and until when."""
        self._expire(now)
        used_tokens = self.tokens_total + self.inflight_tokens
        reason = None
        if max_concurrent is not None and self.inflight >= max_concurrent:
            reason = "concurrent"
        elif rpm is not None and len(self.requests) >= rpm:
            reason = "rpm"
        elif tpm is not None and used_tokens >= tpm:
            reason = "tpm"
        if reason is not None:
            requests_reset = (self.requests[0] + MINUTE_S - now) if self.requests and rpm else 1.0
            if reason == "concurrent":
                requests_reset = 1.0
            raise refusal(reason, rpm, tpm, max_concurrent, requests_used=len(self.requests),
                          tokens_used=used_tokens, inflight=self.inflight, requests_reset_s=requests_reset,
                          tokens_reset_s=self._tokens_reset(now, tpm or 0))
        self.requests.append(now)
        self.inflight += 1
        self.inflight_tokens += estimate

    def _tokens_reset(self, now: float, tpm: int) -> float:
        """Seconds until enough of the minute's tokens age out for the next request to be admitted."""
        over = self.tokens_total + self.inflight_tokens - tpm + 1
        for at, count in self.tokens:
            over -= count
            if over <= 0:
                return max(at + MINUTE_S - now, 0.001)
        return 1.0  # what is in flight alone fills the minute: retry when some of it settles

    def finish(self, now: float, estimate: int, actual_tokens: int | None) -> None:
        """A request ended: free its slot and estimate; count its real tokens (None: released, none used)."""
        self.inflight -= 1
        self.inflight_tokens -= estimate
        if actual_tokens:
            self.tokens.append((now, actual_tokens))
            self.tokens_total += actual_tokens

    @property
    def idle(self) -> bool:
        return not self.requests and not self.tokens and self.inflight == 0
