"""The configuration's types: frozen dataclasses, one per YAML section, and the config error.

Read and validated by ``config.py`` (which re-exports all of these, so the rest
of the gateway imports them from ``gateway.config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Mapping

PROVIDERS = ("openai", "anthropic", "gemini", "mock")
STRATEGIES = ("least-latency", "round-robin")
MODEL_KINDS = ("chat", "embedding")
# Price fields, USD per 1M tokens; each optional one left out bills its tokens at ``input``.
PRICE_FIELDS = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
STATE_BACKENDS = ("embedded", "redis")
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


class ConfigError(Exception):
    """All problems found in one config file, each prefixed with its YAML path."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.warnings = warnings or []  # what would have been left out (e.g. nodes without a key)


def normalize_model_id(model_id: str) -> str:
    """Model ids match case-insensitively with '.' and '-' alike (contract §2)."""
    return model_id.lower().replace(".", "-")


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8080
    metrics_port: int | None = None  # set: /metrics is served only there (same host), e.g. for a private scrape port


@dataclass(frozen=True)
class Admin:
    token: str = ""  # empty: the /admin API is disabled


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_inflight: int = 10000
    stream_heartbeat_s: float = 10.0  # a silent stream gets a ping this often (0: never)
    max_event_bytes: int = 8 * 1024 * 1024  # one upstream stream event; past it the stream fails


@dataclass(frozen=True)
class State:
    dir: str = "data"
    snapshot_interval_s: float = 30.0
    backend: str = "embedded"  # embedded (one process, files in dir) | redis (several processes/machines)
    redis_url: str = ""  # redis://, rediss:// or unix://; required with backend redis
    redis_prefix: str = "infermesh:"  # every Redis key of this gateway starts with it
    reservation_ttl_s: float = 60.0  # redis: a crashed gateway's holds are released after this (live ones renew)
    fsync_interval_s: float = 0.1  # embedded: journal fsync cadence, the most a power loss can take back
    usage_retention_days: int = 400  # usage records older than this are deleted (SQLite or Redis)
    usage_batch_s: float = 0.2  # embedded: usage records are written to SQLite in batches this far apart


@dataclass(frozen=True)
class Timeouts:
    """One timeout per phase of an upstream exchange (aiohttp's lesson)."""

    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 60.0
    idle_timeout_s: float = 120.0
    request_timeout_s: float = 900.0


@dataclass(frozen=True)
class Upstream:
    max_clients: int = 1000
    queue_timeout_s: float = 0.25  # longest wait for a free curl slot before a 503: prompt, never a silent queue
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class Routing:
    strategy: str = "least-latency"
    max_attempts: int = 3


@dataclass(frozen=True)
class CircuitBreaker:
    failure_threshold: int = 5
    open_s: float = 30.0


@dataclass(frozen=True)
class Logging:
    access_log: bool = True  # one JSON line per request on stdout
    level: str = "info"


@dataclass(frozen=True)
class MockOptions:
    """Behaviour of the built-in in-process ``mock`` provider."""

    token_delay_ms: float = 0.0  # pause between streamed tokens
    embedding_dim: int = 8


@dataclass(frozen=True)
class Node:
    id: str
    provider: str
    base_url: str
    api_key: str
    weight: int
    models: Mapping[str, str]  # normalized public model id -> this node's own model id
    responses: bool  # serves /v1/responses natively
    headers: Mapping[str, str]  # extra headers sent upstream (e.g. OpenRouter's HTTP-Referer)
    timeouts: Timeouts
    mock: MockOptions


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens, as Decimal: money is never a binary float."""

    input: Decimal
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None  # tokens written to a 5-minute prompt cache (Anthropic: 1.25 x input)
    cache_write_1h: Decimal | None = None  # tokens written to Anthropic's 1-hour cache (2 x input)


@dataclass(frozen=True)
class Model:
    id: str  # the public id as written in config
    kind: str
    aliases: tuple[str, ...]
    price: Price
    fallbacks: tuple[str, ...]  # public ids, validated to exist
    hedge_after_ms: int | None


@dataclass(frozen=True)
class Account:
    id: str
    balance_usd: Decimal
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    listen: Listen
    admin: Admin
    limits: Limits
    state: State
    upstream: Upstream
    routing: Routing
    circuit_breaker: CircuitBreaker
    logging: Logging
    nodes: tuple[Node, ...]
    models: Mapping[str, Model]  # normalized id -> model
    accounts: tuple[Account, ...]
    source: str = ""  # the file it came from, for reloads
    warnings: tuple[str, ...] = ()  # e.g. nodes left out because their key variable is unset; printed at start

    def find_model(self, model_id: str) -> Model | None:
        """Resolve a client's model id through normalization and aliases."""
        return self._model_index().get(normalize_model_id(model_id))

    def _model_index(self) -> Mapping[str, Model]:
        index = self.__dict__.get("_index")
        if index is None:
            built: dict[str, Model] = {}
            for key, model in self.models.items():
                built[key] = model
                for alias in model.aliases:
                    built.setdefault(normalize_model_id(alias), model)
            object.__setattr__(self, "_index", built)
            index = built
        return index
