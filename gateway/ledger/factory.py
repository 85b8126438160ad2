"""Build the ledger backend ``state.backend`` names: the one place that knows both implementations."""

from __future__ import annotations

from gateway.config import Config
from gateway.ledger.backend import LedgerBackend
from gateway.ledger.embedded import EmbeddedBackend


def build_backend(config: Config) -> LedgerBackend:
    """``embedded``: the ledger in ``state.dir`` (one process); ``redis``: the Redis at ``state.redis_url``."""
    state = config.state
    if state.backend == "redis":
        # Imported here: redis-py is ~10 MiB of RSS that an embedded gateway never needs (idle RSS budget).
        from gateway.ledger.redis_backend import RedisBackend

        return RedisBackend(state.redis_url, state.redis_prefix, config.accounts,
                            reservation_ttl_s=state.reservation_ttl_s, usage_retention_days=state.usage_retention_days)
    return EmbeddedBackend.open(state.dir, config.accounts, state.fsync_interval_s, state.usage_retention_days,
                                state.usage_batch_s)
