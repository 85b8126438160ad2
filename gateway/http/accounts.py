"""The ledger over HTTP: a caller's own balance and usage, and the admin API for accounts and keys.

Client side (API key): ``GET /v1/balance``, ``GET /v1/usage``.
Admin side (admin token, see admin.py): accounts, credits, keys, usage.

Amounts go out as decimal strings (``nano_to_usd``) and come in as decimal
strings or JSON numbers; JSON numbers are parsed as ``Decimal``, never as
binary floats, so ``0.1`` means exactly ten cents. Every request field is
checked here and a bad one answers 400 naming it; unknown fields are refused
too, because a misspelt ``limit_usd`` must not create an unlimited key.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from gateway.auth import Caller, authenticate
from gateway.config import Config
from gateway.errors import ErrorKind, GatewayError
from gateway.http.admin import AdminHandler
from gateway.http.base import BaseHandler, api_key_from
from gateway.http.usage_csv import send_csv
from gateway.ledger.keys import KeyInfo
from gateway.ledger.limits import MAX_RATE, PERIODS, KeyLimits
from gateway.ledger.money import nano_to_usd, usd_to_nano

MAX_ADMIN_BODY = 64 * 1024
MAX_AMOUNT_USD = Decimal(1_000_000_000)  # per account creation, credit or key limit
MAX_USAGE_LIMIT = 1000
DEFAULT_USAGE_LIMIT = 100
MAX_CSV_LIMIT = 100_000  # an invoice's month of records in one download (format=csv)
DEFAULT_CSV_LIMIT = 10_000
USAGE_QUERY = ("limit", "since", "until", "format")
MAX_UNIX_TIME = 253402300799  # 9999-12-31T23:59:59Z

_DECIMAL_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")


def _invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_REQUEST, message, param)


def _not_found(message: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, message)


# -- parsing and validation ---------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_body(raw: bytes, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object with only ``allowed`` fields and every ``required`` one; numbers as Decimal/int."""
    if len(raw) > MAX_ADMIN_BODY:
        raise GatewayError(ErrorKind.PAYLOAD_TOO_LARGE, f"the request body is over {MAX_ADMIN_BODY} bytes")
    if not raw.strip():
        raise _invalid("the request body must be a JSON object")
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise _invalid(f"unknown field '{unknown[0]}'; allowed: {', '.join(allowed)}", unknown[0])
    for name in required:
        if body.get(name) is None:
            raise _invalid(f"'{name}' is required", name)
    return body


def parse_amount(value: Any, param: str, *, allow_zero: bool = False) -> int:
    """USD as a decimal string or JSON number -> nano-dollars; positive, <= 9 decimals, bounded."""
    if isinstance(value, bool) or value is None:
        raise _invalid(f"'{param}' must be a decimal amount in USD such as \"12.50\"", param)
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise _invalid(f"'{param}' must be a non-negative decimal amount in USD such as \"12.50\", "
                           f"not {value[:40]!r}", param)
        amount = Decimal(text)
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    else:
        raise _invalid(f"'{param}' must be a decimal amount in USD such as \"12.50\"", param)
    if not amount.is_finite():
        raise _invalid(f"'{param}' must be a finite amount", param)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise _invalid(f"'{param}' must be {'zero or more' if allow_zero else 'more than zero'}", param)
    if amount > MAX_AMOUNT_USD:
        raise _invalid(f"'{param}' must be at most {MAX_AMOUNT_USD} USD", param)
    try:
        return usd_to_nano(amount)
    except ValueError:
        raise _invalid(f"'{param}' has more than 9 decimal places (a nano-dollar is the smallest unit)",
                       param) from None


def parse_text(value: Any, param: str, max_len: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise _invalid(f"'{param}' must be a non-empty string of at most {max_len} characters", param)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _invalid(f"'{param}' must not contain control characters", param)
    return value


KEY_FIELDS = ("name", "models", "limit_usd", "limit_period", "rpm", "tpm", "max_concurrent", "expires_at", "kind")


def parse_key_options(body: dict[str, Any]) -> dict[str, Any]:
    """A new key's limits and expiry from a request body (``POST /admin/accounts/{id}/keys``, ``POST /v1/keys``),
    as ``create_key`` keyword arguments; 400 naming the field at fault."""
    limit = None if body.get("limit_usd") is None else parse_amount(body["limit_usd"], "limit_usd")
    period = body.get("limit_period")
    if period is not None:
        if period not in PERIODS:
            raise _invalid(f"'limit_period' must be one of {', '.join(PERIODS)} (omit it for a lifetime limit)",
                           "limit_period")
        if limit is None:
            raise _invalid("'limit_period' needs 'limit_usd': it says how often that limit starts over",
                           "limit_period")
    rates: dict[str, int | None] = {}
    for name in ("rpm", "tpm", "max_concurrent"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= MAX_RATE):
            raise _invalid(f"'{name}' must be an integer from 1 to {MAX_RATE} (omit it for no limit)", name)
        rates[name] = value
    expires_at = None if body.get("expires_at") is None else parse_unix_time(body["expires_at"], "expires_at")
    return {"limit_nano": limit, "expires_at": expires_at, "limits": KeyLimits(period, **rates)}


def resolve_models(config: Config, value: Any) -> list[str] | None:
    """Public model ids, aliases resolved through the catalogue; None allows every model."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > 1000:
        raise _invalid("'models' must be a non-empty list of model ids, or omitted to allow every model", "models")
    resolved = []
    for index, model_id in enumerate(value):
        param = f"models[{index}]"
        if not isinstance(model_id, str) or not model_id:
            raise _invalid(f"'{param}' must be a model id", param)
        model = config.find_model(model_id)
        if model is None:
            raise _invalid(f"'{param}': the model '{model_id[:128]}' does not exist", param)
        resolved.append(model.id)
    return resolved


def parse_unix_time(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise _invalid(f"'{param}' must be a unix time in seconds (a number)", param)
    if not Decimal(value).is_finite() or not 0 < value <= MAX_UNIX_TIME:
        raise _invalid(f"'{param}' must be a unix time in seconds between 1 and {MAX_UNIX_TIME}", param)
    return float(value)


# -- shared handler behaviour ----------------------------------------------------------


class _LedgerMixin:
    """Query-string parsing shared by the client and admin handlers."""

    def _query(self, allowed: tuple[str, ...]) -> dict[str, str]:
        args = self.request.query_arguments  # type: ignore[attr-defined]
        unknown = sorted(set(args) - set(allowed))
        if unknown:
            raise _invalid(f"unknown query parameter '{unknown[0]}'; allowed: {', '.join(allowed)}", unknown[0])
        result = {}
        for name, values in args.items():
            if len(values) != 1:
                raise _invalid(f"query parameter '{name}' given more than once", name)
            result[name] = values[0].decode("utf-8", "replace")
        return result

    def _usage_window(self, query: dict[str, str]) -> tuple[int, float | None, float | None]:
        """``limit``, ``since`` (inclusive) and ``until`` (exclusive): half-open, so consecutive windows
        (one invoice per month) never count a record twice. CSV allows a larger ``limit``."""
        csv = self._csv(query)
        most, limit = (MAX_CSV_LIMIT, DEFAULT_CSV_LIMIT) if csv else (MAX_USAGE_LIMIT, DEFAULT_USAGE_LIMIT)
        if "limit" in query:
            text = query["limit"].strip()
            if not text.isdigit() or not text.isascii() or not 1 <= int(text) <= most:
                raise _invalid(f"'limit' must be an integer from 1 to {most}", "limit")
            limit = int(text)
        since, until = _time_param(query, "since"), _time_param(query, "until")
        if since is not None and until is not None and until <= since:
            raise _invalid("'until' must be later than 'since'", "until")
        return limit, since, until

    @staticmethod
    def _csv(query: dict[str, str]) -> bool:
        fmt = query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise _invalid("'format' must be 'json' or 'csv'", "format")
        return fmt == "csv"

    async def _send_usage(self, query: dict[str, str], account: str | None) -> None:
        """``{"data": [...]}``, or with ``format=csv`` the same records as CSV, streamed a page at a time."""
        limit, since, until = self._usage_window(query)
        usage = self.services.ledger.usage  # type: ignore[attr-defined]
        if not self._csv(query):
            self.send_json(200, {"data": await usage(account, limit, since, until)})  # type: ignore[attr-defined]
            return
        await send_csv(self, lambda n, before: usage(account, n, since, before), limit, until)


class _ClientHandler(_LedgerMixin, BaseHandler):
    """An API-key caller looking at its own account."""

    async def _caller(self) -> KeyInfo:
        return await authenticate(self.services.ledger, api_key_from(self), Caller.ACCOUNT)


class BalanceHandler(_ClientHandler):
    """``GET /v1/balance``: ``{"account", "balance_usd", "reserved_usd", "available_usd"}``."""

    async def get(self) -> None:
        self._query(())
        key = await self._caller()
        self.send_json(200, await self.services.ledger.balance(key.account_id))


class UsageHandler(_ClientHandler):
    """``GET /v1/usage?limit=&since=&until=&format=``: the caller's account's records, newest first."""

    async def get(self) -> None:
        key = await self._caller()
        await self._send_usage(self._query(USAGE_QUERY), key.account_id)


# -- admin -------------------------------------------------------------------------------


class _AdminLedgerHandler(_LedgerMixin, AdminHandler):
    """Admin handlers of the ledger; ``AdminHandler.prepare`` has checked the admin token."""

    def _body(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        return parse_body(self.request.body, allowed, required)

    def _answer(self, status: int, payload: Any) -> None:
        self.send_json(status, payload)  # AdminHandler marks every answer no-store


class AdminAccountsHandler(_AdminLedgerHandler):
    """``GET /admin/accounts``, ``GET /admin/accounts/{id}``, ``POST /admin/accounts``."""

    async def get(self, account_id: str | None = None) -> None:
        ledger = self.services.ledger
        self._query(())
        if account_id is None:
            self._answer(200, {"data": await ledger.accounts()})
            return
        self._answer(200, await ledger.account(account_id))

    async def post(self, account_id: str | None = None) -> None:
        ledger = self.services.ledger
        if account_id is not None:
            raise GatewayError(ErrorKind.METHOD_NOT_ALLOWED, "POST /admin/accounts creates an account; "
                                                             "the id goes in the body")
        body = self._body(("id", "balance_usd"), ("id",))
        new_id = body["id"]
        if not isinstance(new_id, str) or not _ACCOUNT_ID.fullmatch(new_id):
            raise _invalid("'id' must be 1 to 128 characters of letters, digits and . _ @ : - "
                           "(starting with a letter or digit)", "id")
        balance = 0 if body.get("balance_usd") is None else parse_amount(body["balance_usd"], "balance_usd",
                                                                          allow_zero=True)
        self._answer(201, await ledger.create_account(new_id, balance))  # AccountExists: 409


class AdminCreditHandler(_AdminLedgerHandler):
    """``POST /admin/accounts/{id}/credit {amount_usd, reference}``: applied once per reference."""

    async def post(self, account_id: str) -> None:
        ledger = self.services.ledger
        body = self._body(("amount_usd", "reference"), ("amount_usd", "reference"))
        amount = parse_amount(body["amount_usd"], "amount_usd")
        reference = parse_text(body["reference"], "reference", 256)
        applied = await ledger.credit(account_id, amount, reference)
        balance = await ledger.balance(account_id)
        self._answer(200, {"applied": applied, "reference": reference, "amount_usd": nano_to_usd(amount),
                           **balance})


class AdminKeysHandler(_AdminLedgerHandler):
    """``POST /admin/accounts/{id}/keys {name, models?, limit_usd?, limit_period?, rpm?, tpm?, max_concurrent?,
    expires_at?, kind?}``: the plaintext, once.

    ``kind`` is ``"api"`` (default, an ``sk-`` key) or ``"management"`` (an ``mk-`` console key; docs/console.md).
    """

    async def post(self, account_id: str) -> None:
        ledger = self.services.ledger
        body = self._body(KEY_FIELDS, ("name",))
        kind = "api" if body.get("kind") is None else body["kind"]
        if kind not in ("api", "management"):
            raise _invalid("'kind' must be \"api\" or \"management\"", "kind")
        name = parse_text(body["name"], "name", 128)
        models = resolve_models(self.services.config, body.get("models"))
        options = parse_key_options(body)
        self._answer(201, await ledger.create_key(account_id, name, models, kind=kind, **options))


class AdminKeyHandler(_AdminLedgerHandler):
    """``DELETE /admin/keys/{key_id}``: revoke now (idempotent); 404 for an unknown key."""

    async def delete(self, key_id: str) -> None:
        self._query(())
        if not await self.services.ledger.revoke_key(key_id):
            raise _not_found(f"no key '{key_id[:64]}'")
        self._answer(200, {"key_id": key_id, "revoked": True})


class AdminUsageHandler(_AdminLedgerHandler):
    """``GET /admin/usage?account=&limit=&since=&until=&format=``: every account's records (or one's), newest
    first."""

    async def get(self) -> None:
        query = self._query(("account",) + USAGE_QUERY)
        await self._send_usage(query, query.get("account") or None)


def _time_param(query: dict[str, str], name: str) -> float | None:
    if name not in query:
        return None
    text = query[name].strip()
    if not _DECIMAL_TEXT.fullmatch(text) or float(text) > MAX_UNIX_TIME:
        raise _invalid(f"'{name}' must be a unix time in seconds (a non-negative number)", name)
    return float(text)

