"""Instructions per request: the gateway under callgrind, a count that a busy machine does not disturb.

``python bench/instructions.py [--source DIR ...] [--mode nonstream|stream|events] [--redis | --no-ledger]``

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

``--mode events`` separates a stream's set-up from its per-event cost: the
same gateway relays ``--streams`` streams of ``--events`` A events, then as
many of B events (default 20 and 200), each load counted apart; the per-event
cost is the difference divided by the difference in events the client
received, the set-up what is left of a stream. ``--client chat|messages``
picks the client's protocol, ``--node openai|anthropic`` the node's: same
protocol is the pass-through path, different ones a translator.
``--gap-ms`` spaces the mock's events (0: sent back to back, so several
arrive in one read; large enough, e.g. 20, every event is a chunk of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import CLIENT_PATHS, LoadConfig, chat_body, client_body, run_load  # noqa: E402
from bench.run import KEY, Child, free_port, http_call, start_mock, wait_http, write_config  # noqa: E402
from bench.workers import start_redis, use_redis  # noqa: E402

MODELS = {"nonstream": "bench-fast", "stream": "bench-burst20", "events": ""}

# --mode events: one mock node per node protocol, the model named after it
EVENT_NODES = {
    "openai": ('  - {{id: ev-openai, provider: openai, base_url: "{up}/ev-openai/v1", api_key: sk-up, '
               'models: {{bench-ev-openai: mock-model}}}}\n'),
    "anthropic": ('  - {{id: ev-anthropic, provider: anthropic, base_url: "{up}/ev-anthropic", api_key: sk-up, '
                  'models: {{bench-ev-anthropic: claude-mock}}}}\n'),
}
EVENT_OVERHEAD = 4  # a chat stream is tokens + 4 events (role, finish, usage, [DONE]); other wires differ a little


def add_event_node(config: Path, node: str, mock_port: int) -> None:
    """Add ``node``'s mock node (``EVENT_NODES``) and its model ``bench-ev-<node>`` to a bench config."""
    text = config.read_text()
    text = text.replace("nodes:\n", "nodes:\n" + EVENT_NODES[node].format(up=f"http://127.0.0.1:{mock_port}/n"), 1)
    text = text.replace("models:\n", "models:\n  bench-ev-%s: {price: {input: 0.15, output: 0.60}}\n" % node, 1)
    config.write_text(text)


def _dump_total(gateway: Child, work: Path, seen: set[Path]) -> int:
    """Dump callgrind's counters (which zeroes them) and return the new dump's total."""
    subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True, capture_output=True)
    dumped = max(set(work.glob("callgrind.out.*")) - seen, key=lambda p: p.stat().st_mtime)
    seen.add(dumped)
    keep = os.environ.get("INSTRUCTIONS_KEEP_DUMPS")  # a directory: keep each dump for callgrind_annotate
    if keep:
        shutil.copy(dumped, Path(keep) / f"events-{len(seen)}.out")
    return next(int(line.split()[1]) for line in dumped.read_text().splitlines()
                if line.startswith(("summary:", "totals:")))


def _mock_and_config(work: Path, children: list[Child]) -> tuple[int, Path]:
    """The mock upstream (added to ``children``) and the bench's gateway config pointing at it."""
    mock, mock_port = start_mock(work, pin=False)
    children.append(mock)
    config = work / "gateway.yaml"
    write_config(config, mock_port, free_port(), work / "state")
    return mock_port, config


def _under_callgrind(work: Path, argv: list[str]) -> Child:
    return Child("gateway", ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={work / 'callgrind.out'}", sys.executable, *argv], work, None)


def measure_events(source: Path, client: str, node: str, events: tuple[int, int], streams: int,
                   gap_ms: float) -> dict[str, Any]:
    """Per-stream set-up and per-event instructions: two loads of different stream lengths, one gateway."""
    work = Path(tempfile.mkdtemp(prefix="infermesh-callgrind-"))
    children: list[Child] = []
    try:
        mock_port, config = _mock_and_config(work, children)
        add_event_node(config, node, mock_port)
        port = free_port()
        gateway = _under_callgrind(work, [str(source / "gateway.py"), "--config", str(config), "--port", str(port)])
        children.append(gateway)
        wait_http(port, "/healthz", 300, gateway)
        name = f"ev-{node}"
        load = LoadConfig(url=f"http://127.0.0.1:{port}{CLIENT_PATHS[client]}",
                          body=client_body(client, f"bench-ev-{node}", True),
                          headers={"Authorization": f"Bearer {KEY}"}, stream=True, concurrency=1,
                          requests=20, timeout_s=300)
        http_call(mock_port, "POST", f"/_control/{name}", {"tokens": events[1], "chunk_delay_ms": 0})
        run_load(load)  # warm-up: connections, caches, lazily built tables
        subprocess.run(["callgrind_control", "-i", "on", str(gateway.pid)], check=True, capture_output=True)
        seen: set[Path] = set()
        rows = []
        for count in events:
            http_call(mock_port, "POST", f"/_control/{name}",
                      {"tokens": max(1, count - EVENT_OVERHEAD), "chunk_delay_ms": gap_ms})
            load.requests = streams
            report = run_load(load)
            total = _dump_total(gateway, work, seen)
            rows.append((total, report))
        (short_total, short), (long_total, long) = rows
        per_event = (long_total - short_total) / max(1, long["events"] - short["events"])
        per_stream = short_total / max(1, short["ok"])
        return {"source": str(source), "mode": "events", "client": client, "node": node, "gap_ms": gap_ms,
                "streams": streams, "ok": short["ok"] + long["ok"], "errors": {**short["errors"], **long["errors"]},
                "events_per_stream": [round(short["events"] / max(1, short["ok"]), 1),
                                      round(long["events"] / max(1, long["ok"]), 1)],
                "instructions_per_stream": [round(per_stream), round(long_total / max(1, long["ok"]))],
                "instructions_per_event": round(per_event),
                "setup_per_stream": round(per_stream - per_event * short["events"] / max(1, short["ok"]))}
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(work, ignore_errors=True)


def measure(source: Path, mode: str, requests: int, concurrency: int, redis: bool,
            no_ledger: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="infermesh-callgrind-"))
    children: list[Child] = []
    try:
        mock_port, config = _mock_and_config(work, children)
        if redis:
            redis_port = free_port()
            children.append(start_redis(Child, work, redis_port, persist=False))
            use_redis(config, redis_port)
        port = free_port()
        served = ([str(ROOT / "bench" / "run.py"), "--serve-gateway-without-ledger", str(config), str(port)]
                  if no_ledger else [str(source / "gateway.py"), "--config", str(config), "--port", str(port)])
        gateway = _under_callgrind(work, served)
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
        total = _dump_total(gateway, work, set())
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
    parser.add_argument("--client", choices=sorted(CLIENT_PATHS), default="chat", help="--mode events: client side")
    parser.add_argument("--node", choices=sorted(EVENT_NODES), default="openai", help="--mode events: node side")
    parser.add_argument("--events", default="20,200", help="--mode events: the two stream lengths, A,B")
    parser.add_argument("--streams", type=int, default=20, help="--mode events: streams per length")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="--mode events: the mock's gap between events")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    for source in args.source or [str(ROOT)]:
        if args.mode == "events":
            short, long = (int(n) for n in args.events.split(","))
            print(json.dumps(measure_events(Path(source).resolve(), args.client, args.node, (short, long),
                                            args.streams, args.gap_ms)), flush=True)
            continue
        result = measure(Path(source).resolve(), args.mode, args.requests, args.concurrency, args.redis,
                         args.no_ledger)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
