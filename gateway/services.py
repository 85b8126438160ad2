"""The shared services one gateway process builds once and every request uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from gateway import redact
from gateway.config import Config
from gateway.ledger.backend import LedgerBackend
from gateway.ledger.factory import build_backend
from gateway.ledger.pricing import PriceTable
from gateway.observability.logs import AccessLog
from gateway.observability.metrics import Metrics
from gateway.routing.router import Router
from gateway.upstream.client import UpstreamClient
from gateway.upstream.providers import NodeEndpoints


@dataclass
class Services:
    config: Config
    ledger: LedgerBackend
    prices: PriceTable
    router: Router
    client: UpstreamClient
    endpoints: dict[str, NodeEndpoints]
    metrics: Metrics
    access_log: AccessLog | None
    ready: bool = False
    draining: bool = False
    internal_errors: int = 0  # 500s of our own, each a bug with a logged traceback (the test suite fails on any)
    reload: Callable[[], bool] | None = None  # set by the server: re-read the config file, True if applied
    reload_problems: list[str] = field(default_factory=list)  # why the last reload was rejected

    @classmethod
    def build(cls, config: Config) -> "Services":
        redact.register(config)
        router = Router(config)
        return cls(
            config=config,
            ledger=build_backend(config),
            prices=PriceTable.from_models(config.models),
            router=router,
            client=UpstreamClient(config.upstream.max_clients, config.upstream.queue_timeout_s),
            endpoints={node.id: NodeEndpoints(node) for node in config.nodes},
            metrics=Metrics(router.status),
            access_log=AccessLog() if config.logging.access_log else None,
        )

    def apply(self, config: Config) -> None:
        """Swap in a reloaded config: nodes, models and prices change together, open streams keep theirs."""
        redact.register(config)
        self.router.reload(config)
        self.prices = PriceTable.from_models(config.models)
        self.endpoints = {node.id: NodeEndpoints(node) for node in config.nodes}
        self.config = config

    async def close(self) -> None:
        self.client.close()
        await self.ledger.close()
