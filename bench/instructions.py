"""Instructions per request: the gateway under callgrind, a count that a busy machine does not disturb.

``python bench/instructions.py [--source DIR ...] [--mode nonstream|stream] [--redis | --no-ledger]``

Wall-clock and CPU-time figures move with whatever else the machine runs
(other processes' cache traffic, CPU steal in a VM). The number of user-space
instructions the gateway executes per request does not, to within ~0.5 %, so
it is how each change's before and after are compared on a shared machine
(bench/README.md). Kernel work (syscalls, TCP) is not counted: a change that
saves syscalls shows only in CPU time.

Each ``--source`` tree (this one by default; an older commit with
``git archive <commit> | tar -x -C DIR``) runs ``gateway.py`` under
``valgrind --tool=callgrind --instr-atstart=no`` against the mock upstream,
with the bench's config (access log on, ledger journaled; ``--redis`` puts
the ledger on a throw-away ``redis-server``; ``--no-ledger`` runs this tree's
gateway with the ledger's money path stubbed, as bench/run.py's scenario 7
does, so the ledger's share is one subtraction). After a warm-up, instrumentation
is switched on for ``--requests`` requests at ``--concurrency`` connections
and the total divided by the requests (and by the SSE events for streams).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import LoadConfig, chat_body, run_load  # noqa: E402
from bench.run import KEY, Child, free_port, start_mock, wait_http, write_config  # noqa: E402
from bench.workers import start_redis, use_redis  # noqa: E402

MODELS = {"nonstream": "bench-fast", "stream": "bench-burst20"}


def measure(source: Path, mode: str, requests: int, concurrency: int, redis: bool,
            no_ledger: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="infermesh-callgrind-"))
    children: list[Child] = []
    try:
        mock, mock_port = start_mock(work, pin=False)
        children.append(mock)
        config = work / "gateway.yaml"
        write_config(config, mock_port, free_port(), work / "state")
        if redis:
            redis_port = free_port()
            children.append(start_redis(Child, work, redis_port, persist=False))
            use_redis(config, redis_port)
        port = free_port()
        out = work / "callgrind.out"
        served = ([str(ROOT / "bench" / "run.py"), "--serve-gateway-without-ledger", str(config), str(port)]
                  if no_ledger else [str(source / "gateway.py"), "--config", str(config), "--port", str(port)])
        gateway = Child("gateway", ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                    f"--callgrind-out-file={out}", sys.executable, *served], work, None)
        children.append(gateway)
        wait_http(port, "/healthz", 300, gateway)
        stream = mode == "stream"
        load = LoadConfig(url=f"http://127.0.0.1:{port}/v1/chat/completions", body=chat_body(MODELS[mode], stream),
                          headers={"Authorization": f"Bearer {KEY}"}, stream=stream, concurrency=concurrency,
                          requests=100, timeout_s=120)
        run_load(load)  # warm-up: connections, caches, lazily built tables
        subprocess.run(["callgrind_control", "-i", "on", str(gateway.pid)], check=True, capture_output=True)
        load.requests = requests
        report = run_load(load)
        subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True, capture_output=True)
        dumped = max(work.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
        total = next(int(line.split()[1]) for line in dumped.read_text().splitlines()
                     if line.startswith(("summary:", "totals:")))
        return {"source": str(source), "mode": mode, "redis": redis, "no_ledger": no_ledger,
                "concurrency": concurrency,
                "ok": report["ok"], "errors": report["errors"],
                "instructions_per_request": round(total / max(report["ok"], 1)),
                "instructions_per_event": round(total / report["events"]) if stream and report["events"] else None}
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", action="append", help="gateway source tree (repeatable; default: this one)")
    parser.add_argument("--mode", choices=sorted(MODELS), default="nonstream")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--redis", action="store_true", help="the ledger on a throw-away redis-server")
    parser.add_argument("--no-ledger", action="store_true", help="this tree, ledger money path stubbed")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    for source in args.source or [str(ROOT)]:
        result = measure(Path(source).resolve(), args.mode, args.requests, args.concurrency, args.redis,
                         args.no_ledger)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
