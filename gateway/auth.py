"""Who is calling: the one place a presented key becomes a ``KeyInfo``, or a 401/403.

Three kinds of caller exist: API keys (``sk-``) call models; management keys
(``mk-``) manage an account's keys from the console; either may read its own
balance and usage. Every endpoint states which it accepts, so the refusal
messages and codes are the same everywhere.
"""

from __future__ import annotations

from enum import Enum

from gateway.errors import ErrorKind, GatewayError
from gateway.ledger.backend import LedgerBackend
from gateway.ledger.keys import MANAGEMENT_KEY_REFUSED, AuthStatus, KeyInfo

MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
_REASONS = {AuthStatus.REVOKED: "this key has been revoked", AuthStatus.EXPIRED: "this key has expired"}


class Caller(Enum):
    MODELS = "models"  # API keys only
    ACCOUNT = "account"  # either kind
    MANAGEMENT = "management"  # management keys only


async def authenticate(ledger: LedgerBackend, api_key: str | None, caller: Caller) -> KeyInfo:
    """The key's info; raises GatewayError (401 unknown/revoked/expired, 403 wrong kind)."""
    if not api_key:
        raise GatewayError(ErrorKind.AUTHENTICATION, MISSING_KEY, code="invalid_api_key")
    status, key = await ledger.authenticate(api_key)
    if status is not AuthStatus.OK or key is None:
        raise GatewayError(ErrorKind.AUTHENTICATION, _REASONS.get(status, "invalid key"), code="invalid_api_key")
    if caller is Caller.MODELS and key.is_management:
        raise GatewayError(ErrorKind.PERMISSION, MANAGEMENT_KEY_REFUSED, code="management_key")
    if caller is Caller.MANAGEMENT and not key.is_management:
        raise GatewayError(ErrorKind.PERMISSION, "API keys cannot manage keys: sign in with a management key "
                                                 "(mk-), which the operator creates with the admin API",
                           code="management_key_required")
    if key.is_management:
        await ledger.touch(key)  # so the console shows when it was last used (API keys: at each charge)
    return key
