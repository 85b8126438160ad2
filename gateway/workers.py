"""``python gateway.py --workers N``: one supervisor, N gateway processes on one port.

The supervisor loads the config, then forks the workers before any IOLoop,
socket or Redis connection exists. Each worker binds its own ``SO_REUSEPORT``
socket after the fork and the kernel spreads new connections evenly (measured:
1.8x one process on 2 cores; one socket bound before the fork split unevenly).
Workers share nothing in memory: the ledger is the Redis backend (the
embedded ledger is refused for N > 1), and Prometheus metrics go through
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a fresh
temp dir made here), so any worker's ``/metrics`` shows the sum of all.

Signals, for the whole group: SIGTERM (and SIGINT) is forwarded as SIGTERM to
every worker, which drains as a single gateway does; the supervisor exits 0
once all have exited. SIGHUP is forwarded: every worker reloads the config.
A worker that dies on its own (crash, OOM kill) is restarted; its in-flight
reservations are released by their expiry in Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

RESTART_WINDOW_S = 10.0
RESTART_BURST = 5  # more crashes than this within the window: wait a second between restarts


def _event(name: str, **fields: Any) -> None:
    from gateway.observability.logs import log_event
    log_event(name, **fields)


def supervise(workers: int, serve: Callable[[int, str, int], int], host: str, port: int) -> int:
    """Fork ``workers`` processes running ``serve(index, host, port)``; supervise until they all stop."""
    from gateway.observability.logs import install_json_logging
    install_json_logging()
    if port == 0:  # every worker must bind the same port: pick it here
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or ""
    own_dir = not metrics_dir
    if own_dir:
        metrics_dir = tempfile.mkdtemp(prefix="infermesh-metrics-")
    else:  # an operator-chosen dir must start empty, or dead processes' counters would be summed in
        for name in os.listdir(metrics_dir):
            if name.endswith(".db"):
                os.unlink(os.path.join(metrics_dir, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    children: dict[int, int] = {}
    stopping = False
    crashes: list[float] = []

    def spawn(index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing in flight yet: just stop
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's own handler: it reads the file anew
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                code = serve(index, host, port)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def forward(sig: int) -> None:
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            _event("workers_stopping", signal=signal.Signals(signum).name, workers=len(children))
        stopping = True
        forward(signal.SIGTERM)  # a second one hurries the workers' drain, as for one gateway

    def on_hup(signum: int, frame: object) -> None:
        forward(signal.SIGHUP)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    _event("workers_starting", workers=workers, port=port, pid=os.getpid(), metrics_dir=metrics_dir)
    for index in range(workers):
        spawn(index)
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            if pid not in children:
                continue
            index = children.pop(pid)
            _mark_dead(pid)
            if stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            now = time.monotonic()
            crashes[:] = [t for t in crashes if now - t < RESTART_WINDOW_S] + [now]
            _event("worker_exited", level="error", worker=index, pid=pid, code=code, restarting=True)
            if len(crashes) > RESTART_BURST:
                time.sleep(1.0)
            if not stopping:
                spawn(index)
    finally:
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    _event("workers_stopped")
    return 0


def _mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight counts) from the aggregated /metrics."""
    try:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid)
    except Exception:
        pass
