"""Infer Mesh: an LLM API gateway. ``python gateway.py --help``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from typing import TextIO

from gateway import eventloop
from gateway.version import __version__
from gateway.cli.startup import DEMO_KEY, bind_problem, demo_key_refusal, port_problem
from gateway.config import Config, ConfigError, load_config

# The cyclic garbage collector runs a pass every GC_THRESHOLD allocations of container objects, not Python's
# default 700. What a request allocates is freed by reference counting when it ends (it makes no reference
# cycles: tests/http/test_no_garbage_cycles.py), so a pass mostly walks, and promotes, the live request's
# objects: a coding agent's 221 KB request body cost ~7 passes and a full collection every ~19 requests,
# 0.4 ms a request passed through and 1.3 ms translated (bench/README.md, seventh session).
GC_THRESHOLD = 50_000


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["admin"]:
        from gateway.cli.admin import main as admin_main
        return admin_main(argv[1:])
    parser = argparse.ArgumentParser(prog="gateway.py", description="Infer Mesh LLM API gateway. "
                                     "Operator commands: python gateway.py admin --help")
    parser.add_argument("--version", action="version", version=f"Infer Mesh {__version__}")
    parser.add_argument("--config", default="conf/gateway.yaml", help="YAML config (default: %(default)s)")
    parser.add_argument("--host", help="listen address (overrides listen.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides listen.port)")
    parser.add_argument("--check-config", metavar="PATH", help="validate a config file and exit 0 or 1")
    parser.add_argument("--drain-grace", type=float, default=30.0, metavar="SECONDS",
                        help="on SIGTERM, how long open requests and streams may run on (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="run N processes on one port (SO_REUSEPORT); needs state.backend: redis")
    parser.add_argument("--export-ledger", metavar="FILE",
                        help="write accounts, balances, keys (hashed) and credit references of the configured "
                             "ledger to FILE (JSON) and exit")
    parser.add_argument("--import-ledger", metavar="FILE",
                        help="load an --export-ledger FILE into the configured ledger (which must not hold "
                             "those accounts yet) and exit")
    parser.add_argument("--allow-demo-key", action="store_true",
                        help="start on a non-loopback address even though the public demo key still works")
    args = parser.parse_args(argv)

    if args.check_config:
        try:
            config = load_config(args.check_config)
        except ConfigError as error:
            for problem in error.problems:
                print(problem)
            for warning in error.warnings:
                print(f"warning: {warning}")
            return 1
        for warning in config.warnings:
            print(f"warning: {warning}")
        print(f"{args.check_config}: ok ({len(config.nodes)} nodes, {len(config.models)} models)")
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as error:
        if len(error.problems) == 1:  # e.g. an unreadable file: one line, no heading
            print(f"error: {error.problems[0]}", file=sys.stderr)
            return 1
        print(f"{args.config}: invalid config:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.drain_grace < 0:
        parser.error("--drain-grace must be >= 0")
    if args.export_ledger or args.import_ledger:
        from gateway.ledger.migrate import export_ledger, import_ledger
        if args.export_ledger and args.import_ledger:
            parser.error("--export-ledger and --import-ledger are separate steps")
        return export_ledger(config, args.export_ledger) if args.export_ledger else import_ledger(config,
                                                                                                   args.import_ledger)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers > 1:
        if config.state.backend != "redis":
            print(f"--workers {args.workers}: the embedded ledger lives in one process, so {args.workers} "
                  f"processes would each admit spending against the whole balance. Set state.backend: redis "
                  f"(see docs/scale-out.md) or run one worker.", file=sys.stderr)
            return 2
        from gateway.workers import supervise
        host = args.host or config.listen.host
        port = config.listen.port if args.port is None else args.port
        refusal = port_problem(host, port) or eventloop.run(_demo_key_check(config, host, args.allow_demo_key))
        if refusal:
            print(refusal, file=sys.stderr)
            return 1
        return supervise(args.workers, lambda worker, host, port: eventloop.run(
            _serve(_current_config(config), host, port, args.drain_grace, worker=worker, allow_demo_key=True)),
            host, port)
    return eventloop.run(_serve(config, args.host, args.port, args.drain_grace, allow_demo_key=args.allow_demo_key))


def _has_demo_key(config: Config) -> bool:
    return any(DEMO_KEY in account.keys for account in config.accounts)


async def _demo_key_check(config: Config, host: str, allowed: bool) -> str | None:
    """For --workers: ask the shared ledger once, in the supervisor, before any worker starts."""
    from gateway.ledger.factory import build_backend
    ledger = build_backend(config)
    try:
        await ledger.start()
        return await demo_key_refusal(ledger, _has_demo_key(config), host, allowed)
    finally:
        await ledger.close()


def _current_config(config: Config) -> Config:
    """A (re)started worker reads the file again, so it has what a SIGHUP gave the others; if the file is
    broken now, it keeps the config the supervisor started with."""
    try:
        return load_config(config.source)
    except Exception:
        return config


async def _serve(config: Config, host: str | None, port: int | None, drain_grace_s: float,
                 worker: int | None = None, allow_demo_key: bool = False) -> int:
    """Serve until SIGTERM or SIGINT, then drain; SIGHUP reloads the config.

    Lifecycle events go to stdout as JSON lines (see gateway/observability/logs.py);
    under systemd (``Type=notify``) READY=1 is sent once the ledger is loaded and
    the port is bound, STOPPING=1 when the drain starts.

    ``worker``: one of ``--workers N`` (gateway/workers.py): it binds its own SO_REUSEPORT
    socket, leaves SIGINT to the supervisor, and does not talk to systemd (the supervisor is the service).
    ``allow_demo_key``: skip the demo-key check (gateway/cli/startup.py); workers are checked by the supervisor.
    """
    # imported late: --check-config stays fast and dependency-light
    from gateway.observability.logs import install_json_logging, log_event
    from gateway.observability.notify import Notifier
    from gateway.server import Server

    install_json_logging()
    gc.set_threshold(GC_THRESHOLD)
    if worker is not None:
        os.environ.pop("NOTIFY_SOCKET", None)
    notifier = Notifier.from_env()
    server = Server(config, notify=notifier.notify)  # type: ignore[arg-type]
    stopped = asyncio.Event()

    def on_stop_signal() -> None:
        if stopped.is_set():
            server.hurry()  # a second SIGTERM / Ctrl-C: skip the rest of the grace period
        stopped.set()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_stop_signal)
    if worker is None:
        loop.add_signal_handler(signal.SIGINT, on_stop_signal)
    else:  # Ctrl-C reaches the whole process group: the supervisor turns it into one SIGTERM per worker
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    await server.start_ledger()  # Redis: connect and bootstrap first (if it is down, serve 503s and retry)
    shown_host = host or server.config.listen.host
    refusal = await demo_key_refusal(server.services.ledger, _has_demo_key(config), shown_host, allow_demo_key)
    if refusal is None:
        try:
            bound = server.start(host, port, reuse_port=worker is not None)
        except OSError as error:
            refusal = bind_problem(error, shown_host, config.listen.port if port is None else port)
    if refusal is not None:
        _say(refusal, sys.stderr)
        await server.services.close()  # nothing was served: no drain, no lifecycle events
        return 1
    line = f"Infer Mesh listening on http://{shown_host}:{bound}"
    if _has_demo_key(server.config):
        line += (f"  — try: curl http://{shown_host}:{bound}/v1/chat/completions -H 'Authorization: Bearer "
                 f"{DEMO_KEY}' -H 'Content-Type: application/json' -d '{{\"model\": \"gpt-4o-mini\", "
                 f"\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'")
    _say(line, sys.stdout)
    log_event("started", address=f"http://{shown_host}:{bound}", pid=os.getpid(), worker=worker,
              ledger=server.services.ledger.kind, config=server.config.source,
              nodes=len(server.config.nodes), models=len(server.config.models), drain_grace_s=drain_grace_s,
              access_log=server.config.logging.access_log, systemd_notify=notifier.enabled)
    notifier.ready(f"serving on {shown_host}:{bound}")
    await stopped.wait()
    await server.drain(drain_grace_s)
    return 0


def _say(line: str, stream: TextIO) -> None:
    """One line in one write: ``print`` writes the text and the newline separately when unbuffered
    (PYTHONUNBUFFERED=1, as under systemd), and the ``--workers`` processes share one stdout, so their
    lines interleaved mid-line."""
    stream.write(line + "\n")
    stream.flush()


if __name__ == "__main__":
    sys.exit(main())
