"""Infer Mesh: an LLM API gateway. ``python gateway.py --help``."""

from __future__ import annotations

import argparse
import asyncio
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
    return asyncio.run(_serve(config, args.host, args.port))


async def _serve(config: object, host: str | None, port: int | None) -> int:
    from gateway.server import Server  # imported late: --check-config stays fast and dependency-light

    server = Server(config)  # type: ignore[arg-type]
    bound = server.start(host, port)
    shown_host = host or server.config.listen.host
    line = f"Infer Mesh listening on http://{shown_host}:{bound}"
    if any(DEMO_KEY in account.keys for account in server.config.accounts):
        line += (f"  — try: curl http://{shown_host}:{bound}/v1/chat/completions -H 'Authorization: Bearer "
                 f"{DEMO_KEY}' -H 'Content-Type: application/json' -d '{{\"model\": \"gpt-4o-mini\", "
                 f"\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'")
    print(line, flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    await stopped.wait()
    await server.drain()
    return 0


if __name__ == "__main__":
    sys.exit(main())
