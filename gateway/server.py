"""One running gateway: listen, snapshot on a timer, reload, drain.

``gateway.py`` drives it from the command line; tests start it on a loopback
port in a thread of their own, so they exercise the same code as production.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from gateway.app import make_app
from gateway.config import Config, load_config
from gateway.observability.logs import log_event
from gateway.services import Services

DRAIN_GRACE_S = 30.0


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.services = Services.build(config)
        self.port = 0
        self._http: HTTPServer | None = None
        self._snapshots: PeriodicCallback | None = None

    def start(self, host: str | None = None, port: int | None = None) -> int:
        """Bind and serve on the current IOLoop; returns the bound port (0 picks a free one)."""
        # Tornado logs malformed requests at INFO quoting the bad header, which may be a key.
        logging.getLogger("tornado.general").setLevel(logging.WARNING)
        host = host or self.config.listen.host
        port = self.config.listen.port if port is None else port
        sockets = bind_sockets(port, host, family=socket.AF_INET, backlog=2048)
        self.port = sockets[0].getsockname()[1]
        self._http = HTTPServer(make_app(self.services), xheaders=False, idle_connection_timeout=300,
                                max_body_size=self.config.limits.max_body_bytes + 1)
        self._http.add_sockets(sockets)
        self._snapshots = PeriodicCallback(self.services.ledger.snapshot,
                                           self.config.state.snapshot_interval_s * 1000)
        self._snapshots.start()
        self.services.ready = True
        return self.port

    def reload(self) -> bool:
        """Re-read the config file; an invalid one is rejected and the running config kept."""
        try:
            config = load_config(self.config.source)
        except Exception as exc:  # ConfigError lists every problem; anything else is also a rejection
            log_event("reload_rejected", problems=str(exc).splitlines())
            return False
        self.services.apply(config)
        self.config = config
        log_event("reloaded", nodes=len(config.nodes), models=len(config.models))
        return True

    async def drain(self, grace_s: float = DRAIN_GRACE_S) -> None:
        """Stop taking requests, let open ones finish (up to ``grace_s``), snapshot, close."""
        services = self.services
        services.draining = True
        log_event("draining")
        if self._http is not None:
            self._http.stop()
        deadline = time.monotonic() + grace_s
        while services.metrics.inflight._value.get() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.close()

    async def close(self) -> None:
        if self._snapshots is not None:
            self._snapshots.stop()
        if self._http is not None:
            self._http.stop()
        await self.services.close()
        log_event("stopped")
