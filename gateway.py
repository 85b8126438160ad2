"""Infer Mesh: an LLM API gateway. ``python gateway.py --help``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from gateway.config import ConfigError, load_config

DEMO_KEY = "sk-demo-0000000000000000"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway.py", description="Infer Mesh LLM API gateway")
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
    args = parser.parse_args(argv)

    if args.check_config:
        try:
            config = load_config(args.check_config)
        except ConfigError as error:
            for problem in error.problems:
                print(problem)
            return 1
        print(f"{args.check_config}: ok ({len(config.nodes)} nodes, {len(config.models)} models)")
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"{args.config}: invalid config:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
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
        return supervise(args.workers, lambda worker, host, port: asyncio.run(
            _serve(_current_config(config), host, port, args.drain_grace, worker=worker)),
            args.host or config.listen.host, config.listen.port if args.port is None else args.port)
    return asyncio.run(_serve(config, args.host, args.port, args.drain_grace))


def _current_config(config: object) -> object:
    """A (re)started worker reads the file again, so it has what a SIGHUP gave the others; if the file is
    broken now, it keeps the config the supervisor started with."""
    try:
        return load_config(config.source)  # type: ignore[attr-defined]
    except Exception:
        return config


async def _serve(config: object, host: str | None, port: int | None, drain_grace_s: float,
                 worker: int | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then drain; SIGHUP reloads the config.

    Lifecycle events go to stdout as JSON lines (see gateway/observability/logs.py);
    under systemd (``Type=notify``) READY=1 is sent once the ledger is loaded and
    the port is bound, STOPPING=1 when the drain starts.

    ``worker``: one of ``--workers N`` (gateway/workers.py): it binds its own SO_REUSEPORT
    socket, leaves SIGINT to the supervisor, and does not talk to systemd (the supervisor is the service).
    """
    # imported late: --check-config stays fast and dependency-light
    from gateway.observability.logs import install_json_logging, log_event
    from gateway.observability.notify import Notifier
    from gateway.server import Server

    install_json_logging()
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
    bound = server.start(host, port, reuse_port=worker is not None)
    shown_host = host or server.config.listen.host
    line = f"Infer Mesh listening on http://{shown_host}:{bound}"
    if any(DEMO_KEY in account.keys for account in server.config.accounts):
        line += (f"  — try: curl http://{shown_host}:{bound}/v1/chat/completions -H 'Authorization: Bearer "
                 f"{DEMO_KEY}' -H 'Content-Type: application/json' -d '{{\"model\": \"gpt-4o-mini\", "
                 f"\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'")
    print(line, flush=True)
    log_event("started", address=f"http://{shown_host}:{bound}", pid=os.getpid(), worker=worker,
              ledger=server.services.ledger.kind, config=server.config.source,
              nodes=len(server.config.nodes), models=len(server.config.models), drain_grace_s=drain_grace_s,
              access_log=server.config.logging.access_log, systemd_notify=notifier.enabled)
    notifier.ready(f"serving on {shown_host}:{bound}")
    await stopped.wait()
    await server.drain(drain_grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
