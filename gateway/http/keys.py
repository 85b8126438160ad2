"""Self-service key management and usage aggregates, the JSON API behind the console (docs/console.md).

* ``GET /v1/keys``: the caller's account's keys (API and management, revoked ones too);
* ``POST /v1/keys {name, models?, limit_usd?, limit_period?, rpm?, tpm?, max_concurrent?, expires_at?}``: a new
  API key (``sk-``), plaintext shown once;
* ``DELETE /v1/keys/{key_id}``: revoke one of the account's own keys (another account's -> 404);
* ``GET /v1/usage/summary?bucket=hour|day&since=``: spend and tokens per time bucket and model.

The ``/v1/keys`` endpoints need a management key (``mk-``): an API key gets
403, a missing/unknown/revoked/expired key 401. ``/v1/usage/summary`` takes
either kind, like ``/v1/usage`` and ``/v1/balance``.

Credentials are read from the ``Authorization: Bearer`` (or ``x-api-key``)
header only. No cookie is ever set or read and no CORS header is ever sent,
so another site can neither make a browser send the credential (CSRF) nor
read an answer: there is nothing ambient to forge with.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.auth import Caller, authenticate
from gateway.errors import ErrorKind, GatewayError
from gateway.http.accounts import (
    KEY_FIELDS,
    _LedgerMixin,
    parse_body,
    parse_key_options,
    parse_text,
    resolve_models,
)
from gateway.http.base import BaseHandler, api_key_from
from gateway.ledger.keys import API_KEY, MANAGEMENT_KEY, KeyInfo

MAX_ACTIVE_KEYS = 100  # per account, created self-service: a leaked management key cannot flood the journal
SUMMARY_BUCKETS = {"hour": 3600, "day": 86400}
SUMMARY_DEFAULT_SPAN = {"hour": 48 * 3600, "day": 30 * 86400}
MAX_BUCKETS = 2000


def _invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_REQUEST, message, param)


class _SelfServiceHandler(_LedgerMixin, BaseHandler):
    """The caller's own account; answers are never cached (one of them holds a new key's plaintext).

    Uses only the ledger operations every backend has: authenticate, account, create_key, revoke_key, usage.
    """

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def _manager(self) -> KeyInfo:
        """The caller's key, which must be a management key (401 without a valid key, 403 for an API key)."""
        return await authenticate(self.services.ledger, api_key_from(self), Caller.MANAGEMENT)

    async def _keys(self, account_id: str) -> list[dict[str, Any]]:
        """Every key of the account (revoked ones too), oldest first."""
        return list((await self.services.ledger.account(account_id))["keys"])


class KeysHandler(_SelfServiceHandler):
    """``GET /v1/keys`` and ``POST /v1/keys``."""

    async def get(self) -> None:
        self._query(())
        key = await self._manager()
        self.send_json(200, {"object": "list", "account": key.account_id, "current_key_id": key.key_id,
                             "data": await self._keys(key.account_id)})

    async def post(self) -> None:
        ledger = self.services.ledger
        self._query(())
        key = await self._manager()
        body = parse_body(self.request.body, KEY_FIELDS, ("name",))
        kind = body.get("kind")
        if kind is not None and kind != API_KEY:
            if kind == MANAGEMENT_KEY:
                raise GatewayError(ErrorKind.PERMISSION, "management keys can only be created by the operator "
                                                         "(admin API); here you can create API keys",
                                   "kind", code="management_key_creation")
            raise _invalid("'kind' must be \"api\" or omitted", "kind")
        name = parse_text(body["name"], "name", 128)
        models = resolve_models(self.services.config, body.get("models"))
        options = parse_key_options(body)
        active = sum(1 for k in await self._keys(key.account_id)
                     if not k["revoked"] and k.get("kind", API_KEY) == API_KEY)
        if active >= MAX_ACTIVE_KEYS:
            raise _invalid(f"this account already has {active} active API keys (the most allowed is "
                           f"{MAX_ACTIVE_KEYS}); revoke some first")
        self.send_json(201, await ledger.create_key(key.account_id, name, models, kind=API_KEY, **options))


class KeyHandler(_SelfServiceHandler):
    """``DELETE /v1/keys/{key_id}``: revoke now (idempotent); 404 for an unknown key or another account's.

    The caller may revoke any key of its own account, management keys included,
    even the one it signed in with (``signed_out`` is then true): that is how a
    leaked management key is killed without waiting for the operator.
    """

    async def delete(self, key_id: str) -> None:
        self._query(())
        key = await self._manager()
        if not any(k["key_id"] == key_id for k in await self._keys(key.account_id)):
            raise GatewayError(ErrorKind.NOT_FOUND, f"no key '{key_id[:64]}' in this account")
        if not await self.services.ledger.revoke_key(key_id):
            raise GatewayError(ErrorKind.NOT_FOUND, f"no key '{key_id[:64]}' in this account")
        self.send_json(200, {"key_id": key_id, "revoked": True, "signed_out": key_id == key.key_id})


class UsageSummaryHandler(_SelfServiceHandler):
    """``GET /v1/usage/summary?bucket=hour|day&since=&until=``: totals per (bucket start, model), oldest first.

    Buckets are aligned to UTC (``start`` is a unix time divisible by 3600 or
    86400). ``since`` defaults to 48 hours (hourly) or 30 days (daily) ago,
    ``until`` to now. The usage store adds the records up itself (SQL
    ``GROUP BY``, or a Lua script in Redis), so every record in the window
    counts and none is loaded into the gateway. Either kind of key may ask.
    """

    async def get(self) -> None:
        query = self._query(("bucket", "since", "until"))
        key = await authenticate(self.services.ledger, api_key_from(self), Caller.ACCOUNT)
        bucket = query.get("bucket", "day")
        if bucket not in SUMMARY_BUCKETS:
            raise _invalid("'bucket' must be 'hour' or 'day'", "bucket")
        width = SUMMARY_BUCKETS[bucket]
        now = time.time()
        _, since, until = self._usage_window({name: query[name] for name in ("since", "until") if name in query})
        if since is None:
            since = (until or now) - SUMMARY_DEFAULT_SPAN[bucket]
        first = int(since // width) * width
        if ((until or now) - first) / width > MAX_BUCKETS:
            raise _invalid(f"that is more than {MAX_BUCKETS} {bucket}s; use a later 'since' or "
                           f"bucket=day", "since")
        rows = await self.services.ledger.usage_summary(key.account_id, width, since, until)
        self.send_json(200, {"account": key.account_id, "bucket": bucket, "bucket_seconds": width,
                             "since": since, "until": until or now, "first_bucket": first,
                             "records": sum(row["requests"] for row in rows), "data": rows})
