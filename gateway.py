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
    return asyncio.run(_serve(config, args.host, args.port, args.drain_grace))


async def _serve(config: object, host: str | None, port: int | None, drain_grace_s: float) -> int:
    """Serve until SIGTERM or SIGINT, then drain; SIGHUP reloads the config.

    Lifecycle events go to stdout as JSON lines (see gateway/observability/logs.py);
    under systemd (``Type=notify``) READY=1 is sent once the ledger is loaded and
    the port is bound, STOPPING=1 when the drain starts.
    """
    # imported late: --check-config stays fast and dependency-light
    from gateway.observability.logs import install_json_logging, log_event
    from gateway.observability.notify import Notifier
    from gateway.server import Server

    install_json_logging()
    notifier = Notifier.from_env()
    server = Server(config, notify=notifier.notify)  # type: ignore[arg-type]
    stopped = asyncio.Event()

    def on_stop_signal() -> None:
        if stopped.is_set():
            server.hurry()  # a second SIGTERM / Ctrl-C: skip the rest of the grace period
        stopped.set()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_stop_signal)
    loop.add_signal_handler(signal.SIGINT, on_stop_signal)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    bound = server.start(host, port)
    shown_host = host or server.config.listen.host
    line = f"Infer Mesh listening on http://{shown_host}:{bound}"
    if any(DEMO_KEY in account.keys for account in server.config.accounts):
        line += (f"  — try: curl http://{shown_host}:{bound}/v1/chat/completions -H 'Authorization: Bearer "
                 f"{DEMO_KEY}' -H 'Content-Type: application/json' -d '{{\"model\": \"gpt-4o-mini\", "
                 f"\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'")
    print(line, flush=True)
    log_event("started", address=f"http://{shown_host}:{bound}", pid=os.getpid(), config=server.config.source,
              nodes=len(server.config.nodes), models=len(server.config.models), drain_grace_s=drain_grace_s,
              access_log=server.config.logging.access_log, systemd_notify=notifier.enabled)
    notifier.ready(f"serving on {shown_host}:{bound}")
    await stopped.wait()
    await server.drain(drain_grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
