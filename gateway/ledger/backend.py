"""The ledger as the app sees it: one async interface (``LedgerBackend``) and the values it speaks.

Two implementations, one module each, chosen by ``factory.build_backend`` from
``state.backend``:

* ``embedded.EmbeddedBackend``: the single-process ledger (``ledger.py``:
  memory, journal, snapshots in ``state.dir``) behind thin async wrappers;
* ``redis_backend.RedisBackend``: one Redis shared by every gateway process
  and machine; reserve and settle are single Lua scripts.

Nothing outside ``gateway/ledger`` needs to know which one it holds: the
server's snapshot timer, the fsync metric and the final-snapshot log line go
through ``snapshot``, ``observe_fsync`` and ``last_seq``, which the Redis
backend answers with "nothing to do". Both refuse the same input the same way
(``checks.py``) and move between each other with one export format (``export.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from gateway.ledger.keys import API_KEY, AuthStatus, KeyInfo
from gateway.ledger.limits import NO_LIMITS, KeyLimits
from gateway.ledger.money import nano_to_usd


TOUCH_INTERVAL_S = 60.0


@dataclass(slots=True)
class Reservation:
    """Money held for one in-flight request; ``id`` makes settle/release happen at most once.

    The embedded ledger numbers its holds (int); the Redis backend keys them by request id (str).
    """

    account_id: str
    key_id: str
    amount_nano: int
    id: int | str = 0
    tokens: int | None = None  # the token estimate counted for the key's rate limits (None: it has none)


class LedgerBackend(Protocol):
    """Every ledger operation the app uses. Amounts are integer nano-dollars; views are JSON-ready dicts.

    Errors are the ledger's own (``errors.py``); the HTTP layer maps them to answers in one place.
    """

    kind: str  # "embedded" | "redis": shown by /readyz

    @property
    def available(self) -> bool:
        """False while the ledger cannot be reached (Redis down): ``/readyz`` answers 503."""

    @property
    def last_seq(self) -> int | None:
        """Sequence number of the last journaled change; None for a backend without a journal (Redis)."""

    async def start(self) -> None:
        """Connect and bootstrap config accounts; a Redis that is down is retried in the background."""

    async def snapshot(self) -> bool:
        """Persist a point-in-time copy if this backend keeps one (embedded: taken now, written off the IOLoop
        thread, awaited until durable); False if the store persists on its own (Redis), so the caller's
        periodic timer has nothing to time or log."""

    def observe_fsync(self, hook: Callable[[float], None]) -> None:
        """Report each journal fsync's duration in seconds (from the fsync thread); no-op without a journal."""

    async def authenticate(self, api_key: str) -> tuple[AuthStatus, KeyInfo | None]: ...

    async def reserve(self, key: KeyInfo, amount_nano: int, request_id: str | None = None,
                      tokens: int = 0) -> Reservation:
        """InsufficientBalance / KeyLimitExceeded (402), RateLimited (429), KeyRevoked (401), LedgerUnavailable
        (503). ``tokens``: the request's token estimate (prompt + max output), for the key's ``tpm``."""

    async def settle(self, reservation: Reservation, cost_nano: int, record: dict[str, Any], *,
                     deferrable: bool = False) -> None:
        """Charge once per reservation. ``deferrable``: the output is already delivered (a stream), so when
        the ledger is unreachable the charge is queued and retried instead of raising LedgerUnavailable."""

    async def release(self, reservation: Reservation) -> None:
        """Give the hold back; never raises for an unreachable ledger (the hold expires anyway)."""

    async def touch(self, key: KeyInfo) -> None:
        """Record that a management key was used (``last_used_at``), at most once per ``TOUCH_INTERVAL_S``.

        API keys get ``last_used_at`` from their charges; a management key is never charged, so without this
        the console would show the key you are signed in with as never used."""

    async def credit(self, account_id: str, amount_nano: int, reference: str) -> bool: ...
    async def create_account(self, account_id: str, balance_nano: int = 0) -> dict[str, Any]: ...
    async def account(self, account_id: str) -> dict[str, Any]: ...
    async def accounts(self) -> list[dict[str, Any]]: ...
    async def balance(self, account_id: str) -> dict[str, Any]: ...
    async def create_key(self, account_id: str, name: str, models: Sequence[str] | None = None,
                         limit_nano: int | None = None, expires_at: float | None = None,
                         kind: str = API_KEY, limits: KeyLimits = NO_LIMITS) -> dict[str, Any]: ...
    async def revoke_key(self, key_id: str) -> bool: ...
    async def usage(self, account_id: str | None, limit: int = 100, since: float | None = None,
                    until: float | None = None) -> list[dict[str, Any]]:
        """Records newest first, ``since <= created_at < until``; ``account_id=None``: every account (admin).
        UnknownAccount for an account that does not exist."""

    async def usage_summary(self, account_id: str, width: int, since: float | None = None,
                            until: float | None = None) -> list[dict[str, Any]]:
        """Per (bucket start, model), oldest first: ``requests``, token sums, ``cost_usd``; aggregated by the
        store itself, so the gateway never holds the records."""
    async def export_state(self) -> dict[str, Any]: ...
    async def import_state(self, data: dict[str, Any]) -> dict[str, int]: ...
    async def close(self) -> None: ...


# -- the views both backends return --------------------------------------------------


def amounts_view(account_id: str, balance_nano: int, reserved_nano: int) -> dict[str, Any]:
    """What ``GET /v1/balance`` shows; available may be negative after an overrun."""
    return {"account": account_id, "balance_usd": nano_to_usd(balance_nano),
            "reserved_usd": nano_to_usd(reserved_nano), "available_usd": nano_to_usd(balance_nano - reserved_nano)}


def usage_record(reservation: Reservation, cost_nano: int, record: dict[str, Any]) -> dict[str, Any]:
    """The stored usage record: the caller's fields plus account, key and cost (on a copy)."""
    usage = dict(record)
    usage["account"] = reservation.account_id
    usage["key_id"] = reservation.key_id
    usage["cost_usd"] = nano_to_usd(cost_nano)
    return usage


def record_tokens(record: dict[str, Any]) -> int:
    """Input + output tokens of a usage record: what a settled request counts against its key's ``tpm``."""
    total = 0
    for field in ("input_tokens", "output_tokens"):
        value = record.get(field)
        total += value if isinstance(value, int) and value > 0 else 0
    return total
