"""API keys: generation, hashing, and the per-key record the ledger keeps.

Two kinds of key (``KeyRecord.kind``): ``api`` keys (``sk-``) call models;
``management`` keys (``mk-``) sign in to the console and manage their
account's API keys, and never call models (the request path refuses them).
The kind is durable: journaled with the key and kept in snapshots; a record
written before kinds existed reads back as ``api``.

Keys are stored only as SHA-256 hex digests. A plain (unkeyed) hash is
enough because generated keys carry 256 random bits, so a leaked snapshot
cannot be brute-forced back to a key; a keyed HMAC would add a secret file
whose loss would invalidate every key. Config bootstrap keys are hashed on
load like any other and never written anywhere in plaintext.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, Sequence

from gateway.config import normalize_model_id
from gateway.ledger.errors import InvalidLedgerArgument
from gateway.ledger.limits import window_end, window_start
from gateway.ledger.money import nano_to_usd

KEY_PREFIX = "sk-"
MANAGEMENT_KEY_PREFIX = "mk-"

API_KEY = "api"
MANAGEMENT_KEY = "management"
KEY_KINDS = (API_KEY, MANAGEMENT_KEY)
_KIND_PREFIX = {API_KEY: KEY_PREFIX, MANAGEMENT_KEY: MANAGEMENT_KEY_PREFIX}
# The 403 a management key gets on every model endpoint (chat, responses, messages, embeddings,
# count_tokens, /v1/models): said once here so every endpoint says the same.
MANAGEMENT_KEY_REFUSED = ("management keys cannot call models: this is an account management key (mk-) for the "
                          "console and /v1/keys; create an API key (sk-) there and call models with it")


class AuthStatus(str, Enum):
    """Distinct outcomes so the 401 message can say why, without echoing the key."""

    OK = "ok"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"


class KeyInfo(NamedTuple):
    """An immutable view of a key at authentication time, handed to the request path.

    A NamedTuple rather than a frozen dataclass: one is built per authenticated request, and a frozen
    dataclass sets each of its 16 fields through ``object.__setattr__`` (2.5 µs here, against 0.5 µs).
    """

    key_id: str
    account_id: str
    name: str
    prefix: str
    models: frozenset[str] | None  # normalized public model ids; None = all
    limit_nano: int | None
    expires_at: float | None
    created_at: float
    revoked: bool
    spent_nano: int
    last_used_at: float | None
    kind: str = API_KEY  # "api" calls models; "management" only manages its account (see module doc)
    limit_period: str | None = None  # day | week | month; None: limit_nano is a lifetime limit (limits.py)
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    @property
    def is_management(self) -> bool:
        return self.kind == MANAGEMENT_KEY

    def allows(self, model_key: str) -> bool:
        """Whether this key may call the model (normalized id, aliases already resolved)."""
        return self.models is None or model_key in self.models


def generate_key(kind: str = API_KEY) -> str:
    """A new secret key: ``sk-`` (``mk-`` for a management key) and 32 random bytes, urlsafe base64 (43 chars)."""
    return _KIND_PREFIX[kind] + secrets.token_urlsafe(32)


def check_kind(kind: object) -> str:
    """``kind`` if it is one of KEY_KINDS, else ValueError."""
    if not isinstance(kind, str) or kind not in KEY_KINDS:
        raise InvalidLedgerArgument(f"key kind must be one of {', '.join(KEY_KINDS)}, not {kind!r}")
    return kind


def new_key_id() -> str:
    """A short public id to name a key in the admin API and usage records."""
    return "key_" + secrets.token_hex(6)


def hash_key(api_key: str) -> str:
    """The stored form of a key; also the lookup index for authentication."""
    return hashlib.sha256(api_key.encode("utf-8", "replace")).hexdigest()


def key_prefix(api_key: str) -> str:
    """What is shown to identify a key: 10 chars of a long key, 8 of a short config key.

    Short operator-chosen keys (16+ chars) would give away too much of
    their secret with 10 visible characters.
    """
    return api_key[:10] if len(api_key) >= 40 else api_key[:8]


def check_key_options(models: Sequence[str] | None, limit_nano: int | None,
                      expires_at: float | None) -> frozenset[str] | None:
    """Validate a new key's options (ValueError says which); return the normalized model set.

    An empty model list is refused rather than read as "no model allowed":
    a key that can call nothing is always a mistake, and omitting the list
    is how to allow every model.
    """
    if models is not None and (isinstance(models, str) or not models
                               or not all(isinstance(m, str) and m for m in models)):
        raise InvalidLedgerArgument("models must be a non-empty list of model ids, or omitted for all models")
    if limit_nano is not None and (not isinstance(limit_nano, int) or isinstance(limit_nano, bool) or limit_nano < 0):
        raise InvalidLedgerArgument(f"limit must be a non-negative number of nano-dollars, not {limit_nano!r}")
    if expires_at is not None and (not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool)
                                   or not math.isfinite(expires_at)):
        raise InvalidLedgerArgument(f"expires_at must be a unix time, not {expires_at!r}")
    return None if models is None else frozenset(normalize_model_id(m) for m in models)


@dataclass(slots=True)
class KeyRecord:
    """The ledger's mutable state of one key; ``reserved_nano`` lives in memory only."""

    key_id: str
    account_id: str
    key_hash: str
    name: str
    prefix: str
    models: frozenset[str] | None
    limit_nano: int | None
    expires_at: float | None
    created_at: float
    revoked: bool = False
    spent_nano: int = 0
    last_used_at: float | None = None
    reserved_nano: int = 0
    kind: str = API_KEY
    limit_period: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    window_start: float | None = None  # start of the window window_spent_nano belongs to (limit_period set)
    window_spent_nano: int = 0

    def window_spent(self, now: float) -> int:
        """What counts against ``limit_nano`` at ``now``: this window's spend, or everything for a lifetime limit."""
        if self.limit_period is None:
            return self.spent_nano
        if self.window_start == window_start(self.limit_period, now):
            return self.window_spent_nano
        return 0  # the window the last charge fell in is over: a fresh one has started by itself

    def charge(self, nano: int, at: float) -> None:
        """Add a settled cost, in the window of ``at`` (the settle time; replays give the same answer)."""
        self.spent_nano += nano
        self.last_used_at = at
        if self.limit_period is not None:
            start = window_start(self.limit_period, at)
            if start != self.window_start:
                self.window_start, self.window_spent_nano = start, 0
            self.window_spent_nano += nano

    def status(self, now: float) -> tuple[AuthStatus, KeyInfo]:
        """Whether this key may be used at ``now``: every ledger backend answers alike."""
        if self.revoked:
            return AuthStatus.REVOKED, self.info()
        if self.expires_at is not None and now >= self.expires_at:
            return AuthStatus.EXPIRED, self.info()
        return AuthStatus.OK, self.info()

    def info(self) -> KeyInfo:
        """Freeze the current state for the request that just authenticated."""
        return KeyInfo(self.key_id, self.account_id, self.name, self.prefix, self.models, self.limit_nano,
                       self.expires_at, self.created_at, self.revoked, self.spent_nano, self.last_used_at,
                       self.kind, self.limit_period, self.rpm, self.tpm, self.max_concurrent)

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The admin API's view: amounts as USD strings, never the hash; window spend as of ``now``."""
        now = time.time() if now is None else now
        return {
            "key_id": self.key_id,
            "name": self.name,
            "prefix": self.prefix,
            "kind": self.kind,
            "models": None if self.models is None else sorted(self.models),
            "limit_usd": None if self.limit_nano is None else nano_to_usd(self.limit_nano),
            "limit_period": self.limit_period,
            "spent_usd": nano_to_usd(self.spent_nano),
            "window_spent_usd": nano_to_usd(self.window_spent(now)),
            "window_resets_at": None if self.limit_period is None else window_end(self.limit_period, now),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrent": self.max_concurrent,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked": self.revoked,
        }

    def to_state(self) -> dict[str, Any]:
        """The durable form, in snapshots and in the journal's key-creation entries."""
        return {
            "key_id": self.key_id,
            "account": self.account_id,
            "hash": self.key_hash,
            "name": self.name,
            "prefix": self.prefix,
            "models": None if self.models is None else sorted(self.models),
            "limit_nano": self.limit_nano,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "revoked": self.revoked,
            "spent_nano": self.spent_nano,
            "last_used_at": self.last_used_at,
            "kind": self.kind,
            "limit_period": self.limit_period,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrent": self.max_concurrent,
            "window_start": self.window_start,
            "window_spent_nano": self.window_spent_nano,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> KeyRecord:
        """Inverse of ``to_state``; KeyError/TypeError/ValueError on a malformed record (the caller names the file).

        A record without ``kind`` (written before key kinds existed) is an ``api`` key; one without
        limits (written before they existed) has none.
        """
        models = data["models"]
        window = data.get("window_start")
        return cls(
            key_id=str(data["key_id"]),
            account_id=str(data["account"]),
            key_hash=str(data["hash"]),
            name=str(data["name"]),
            prefix=str(data["prefix"]),
            models=None if models is None else frozenset(str(m) for m in models),
            limit_nano=None if data["limit_nano"] is None else int(data["limit_nano"]),
            expires_at=None if data["expires_at"] is None else float(data["expires_at"]),
            created_at=float(data["created_at"]),
            revoked=bool(data["revoked"]),
            spent_nano=int(data["spent_nano"]),
            last_used_at=None if data["last_used_at"] is None else float(data["last_used_at"]),
            kind=check_kind(data.get("kind", API_KEY)),
            limit_period=_optional(data.get("limit_period"), str),
            rpm=_optional(data.get("rpm"), int),
            tpm=_optional(data.get("tpm"), int),
            max_concurrent=_optional(data.get("max_concurrent"), int),
            window_start=None if window is None else float(window),
            window_spent_nano=int(data.get("window_spent_nano") or 0),
        )


def _optional(value: Any, cast: Any) -> Any:
    return None if value is None else cast(value)
