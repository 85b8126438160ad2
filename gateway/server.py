"""One running gateway: listen, snapshot on a timer, reload, drain.

``gateway.py`` drives it from the command line (signals, systemd
notifications); tests start it on a loopback port in a thread of their own, so
they exercise the same code as production.

Draining (SIGTERM) keeps the listening socket open until the very end, on
purpose: a request that arrives during the grace period gets a clean ``503``
with ``Retry-After`` (and ``/readyz`` says 503) instead of a connection
refused, which clients and load balancers cannot tell from a crash. Open
requests and streams run to completion. When the grace period is over, the
upstream exchanges still open are aborted (curl transfers end, and the relay
writes the protocol's error event to the client), then whatever is left of
the client connections is closed, the listener is closed, and the ledger writes
its final snapshot.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable

from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from gateway.app import make_app, make_metrics_app
from gateway.config import Config, ConfigError, load_config
from gateway.http.h1 import H1Server
from gateway.observability.logs import AccessLog, log_event
from gateway.services import Services

DRAIN_GRACE_S = 30.0
ABORT_WAIT_S = 1.0  # after the grace period: time for aborted streams to write their error event and settle
IDLE_CONNECTION_S = 300.0  # a keep-alive connection with no request (or a head that never ends) is closed


def _no_notify(*states: str) -> bool:
    return False


class Server:
    def __init__(self, config: Config, notify: Callable[..., bool] = _no_notify) -> None:
        """``notify`` sends systemd notifications (``Notifier.notify``); a no-op by default."""
        self.config = config
        self.services = Services.build(config)
        # The journal's fsync thread reports each fsync; prometheus-client histograms are thread-safe.
        self.services.ledger.observe_fsync(self.services.metrics.fsync.observe)
        self._ledger_started: asyncio.Task[None] | None = None
        self.port = 0
        self.metrics_port: int | None = None  # bound port of listen.metrics_port, when set
        self._metrics_http: H1Server | None = None
        self.services.reload = self.reload
        self._notify = notify
        self._http: H1Server | None = None
        self._snapshots: PeriodicCallback | None = None
        self._hurry = asyncio.Event()
        self._closed = False
        self._client_closed = False

    def start(self, host: str | None = None, port: int | None = None, reuse_port: bool = False) -> int:
        """Bind and serve on the current IOLoop; returns the bound port (0 picks a free one).

        ``reuse_port``: ``--workers N``, each worker binds its own SO_REUSEPORT socket after the fork and
        the kernel spreads connections evenly between them.
        """
        host = host or self.config.listen.host
        port = self.config.listen.port if port is None else port
        sockets = bind_sockets(port, host, family=socket.AF_INET, backlog=2048, reuse_port=reuse_port)
        self.port = sockets[0].getsockname()[1]
        self._http = H1Server(make_app(self.services), max_body_size=self.config.limits.max_body_bytes + 1,
                              idle_timeout_s=IDLE_CONNECTION_S)
        self._http.add_sockets(sockets)
        if self.config.listen.metrics_port is not None:
            metrics_sockets = bind_sockets(self.config.listen.metrics_port, host, family=socket.AF_INET,
                                           reuse_port=reuse_port)
            self.metrics_port = metrics_sockets[0].getsockname()[1]
            self._metrics_http = H1Server(make_metrics_app(self.services), max_body_size=1 << 20,
                                          idle_timeout_s=IDLE_CONNECTION_S)
            self._metrics_http.add_sockets(metrics_sockets)
        self._snapshots = PeriodicCallback(self._snapshot, self.config.state.snapshot_interval_s * 1000)
        self._snapshots.start()
        if self._ledger_started is None:
            self._ledger_started = asyncio.ensure_future(self.services.ledger.start())
        self.services.ready = True
        return self.port

    async def start_ledger(self) -> None:
        """Connect the shared ledger (Redis) and add config accounts; if Redis is down the gateway still
        starts, answers 503 to billed requests and ``/readyz``, and picks up once Redis answers."""
        if self._ledger_started is None:
            self._ledger_started = asyncio.ensure_future(self.services.ledger.start())
        await self._ledger_started

    # -- snapshots -------------------------------------------------------------

    async def _snapshot(self) -> None:
        """The periodic snapshot, timed (until durable) and logged; a failure is logged and the gateway keeps serving.

        A backend that persists on its own (Redis) answers False and nothing is timed or logged.
        PeriodicCallback awaits this before scheduling the next one.
        """
        began = time.monotonic()
        try:
            if not await self.services.ledger.snapshot():
                return
        except Exception as exc:
            log_event("snapshot_failed", level="error", error=f"{type(exc).__name__}: {exc}")
            return
        elapsed = time.monotonic() - began
        self.services.metrics.snapshot.observe(elapsed)
        log_event("snapshot", seq=self.services.ledger.last_seq, duration_ms=round(elapsed * 1000, 1))

    # -- reload ----------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file; nodes, models and prices change together, open streams keep going.

        An invalid file is rejected (every problem logged in a ``reload_rejected``
        event) and the running config kept. Only nodes, models, prices, routing,
        breakers, limits, logging and the admin token take effect; ``listen``,
        ``state`` and ``upstream`` need a restart (the event says so), and
        accounts in the file are a bootstrap for an empty ledger, not reloaded.
        """
        metrics = self.services.metrics
        self._notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            try:
                config = load_config(self.config.source)
            except ConfigError as exc:
                return self._reject(exc.problems)
            except Exception as exc:  # anything else is a rejection too, never a crash
                return self._reject([f"{self.config.source}: {type(exc).__name__}: {exc}"])
            old = self.config
            try:
                self.services.apply(config)
            except Exception as exc:
                self.services.apply(old)  # put the running config back together
                return self._reject([f"{self.config.source}: cannot apply: {type(exc).__name__}: {exc}"])
            if config.logging.access_log != (self.services.access_log is not None):
                self.services.access_log = AccessLog() if config.logging.access_log else None
            self.config = config
            self.services.reload_problems = []
            metrics.reloads.labels("ok").inc()
            metrics.reload_ok.set(1)
            restart = [name for name in ("listen", "state", "upstream")
                       if getattr(config, name) != getattr(old, name)]
            fields: dict[str, object] = {"nodes": len(config.nodes), "models": len(config.models)}
            if restart:
                fields["restart_required"] = restart
            if config.warnings:  # e.g. nodes left out because their key variable is unset
                fields["warnings"] = list(config.warnings)
            log_event("reloaded", level="warning" if restart or config.warnings else "info", source=config.source,
                      **fields)
            return True
        finally:
            self._notify("READY=1", f"STATUS=serving on port {self.port}")

    def _reject(self, problems: list[str]) -> bool:
        self.services.reload_problems = list(problems)
        self.services.metrics.reloads.labels("rejected").inc()
        self.services.metrics.reload_ok.set(0)
        log_event("reload_rejected", level="error", source=self.config.source, problems=problems,
                  kept="the running config")
        return False

    # -- drain and stop --------------------------------------------------------

    def hurry(self) -> None:
        """End the grace period now (a second SIGTERM or Ctrl-C while draining)."""
        self._hurry.set()

    async def drain(self, grace_s: float = DRAIN_GRACE_S) -> None:
        """Answer 503 to new requests, let open ones finish (up to ``grace_s``), then end them and close."""
        services = self.services
        metrics = services.metrics
        services.draining = True  # /readyz and the model endpoints answer 503 from now on
        self._notify("STOPPING=1", "STATUS=draining")
        log_event("draining", inflight=metrics.inflight_now(), streams=metrics.streams_now(),
                  grace_s=grace_s)
        began = time.monotonic()
        if not await self._wait_idle(began + grace_s):
            left = metrics.inflight_now()
            log_event("drain_timeout", level="warning", inflight=left, grace_s=grace_s)
            # Aborting the upstream transfers makes each relay write its protocol's error event.
            self._close_client()
            if not await self._wait_idle(time.monotonic() + ABORT_WAIT_S, hurry=False) and self._http is not None:
                # Not upstream-bound (a mock node, a client that stopped reading): close the connections,
                # which aborts their exchanges through the handlers' on_connection_close.
                await self._close_connections()
                await self._wait_idle(time.monotonic() + ABORT_WAIT_S, hurry=False)
        log_event("drained", inflight=metrics.inflight_now(), duration_ms=round((time.monotonic() - began) * 1000))
        await self.close()

    async def _wait_idle(self, deadline: float, hurry: bool = True) -> bool:
        """True once no request is in flight; False at the deadline (or when hurried)."""
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self.services.metrics.wait_idle())]
        if hurry:
            waits.append(asyncio.ensure_future(self._hurry.wait()))
        try:
            await asyncio.wait(waits, timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self.services.metrics.inflight_now() == 0

    async def _close_connections(self) -> None:
        if self._http is None:
            return
        aborted = await self._http.close_all_connections(ABORT_WAIT_S)
        if aborted:  # their clients stopped reading: what was buffered for them is dropped
            log_event("connections_aborted", level="warning", connections=aborted)

    def _close_client(self) -> None:
        """Abort the upstream transfers still open and close the curl pool, once (it cannot close twice).

        This is ``Services.close`` in two steps, so the final snapshot can be timed and logged.
        """
        if not self._client_closed:
            self._client_closed = True
            self.services.client.close()

    async def close(self) -> None:
        """Stop listening, close connections, abort upstreams, final snapshot. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.services.draining = True
        if self._snapshots is not None:
            self._snapshots.stop()
        if self._metrics_http is not None:
            self._metrics_http.stop()
        if self._http is not None:
            self._http.stop()  # the listener closes only now: until here, late requests got a 503
            await self._close_connections()
        self._close_client()
        began = time.monotonic()
        ledger = self.services.ledger
        try:
            await ledger.close()  # embedded: the final snapshot, then the journal and the state directory lock
        except Exception as exc:
            log_event("stopped", level="error", error=f"final snapshot failed: {type(exc).__name__}: {exc}")
            raise
        if ledger.last_seq is not None:  # a journaled ledger (embedded) wrote its final snapshot
            log_event("snapshot", final=True, seq=ledger.last_seq,
                      duration_ms=round((time.monotonic() - began) * 1000, 1))
        log_event("stopped")
