"""CPU per relayed event when events arrive one at a time, against nginx under the same load.

    python bench/event_cpu.py                       # 200 streams of 200 events, 20 ms apart, 2 rounds
    python bench/event_cpu.py --compare /tmp/old    # and an older tree's gateway.py, in the same rounds
    python bench/event_cpu.py --client messages     # the gateway translating every event (nginx as before)
    python bench/event_cpu.py --node burst20 --streams 32 --client messages   # the peer table's burst20, translated

The peer table's "CPU per relayed event" (bench/peers.py, ``burst20``) sends
a stream's 20 events back to back, so a read carries several of them and a
stream's set-up is spread over only 20 events. An LLM streams the other way:
one token event every 10-50 ms, each a read, a relay and a write of its own.
By default every stream is the mock's ``stream`` node (200 events, 20 ms apart);
``--streams`` of them at once keep ~50 events/s each arriving (10,000/s at
200 streams). The proxy is pinned to CPU 0, the mock and the load generator
to CPU 1. For each proxy the CPU time of its own process over a timed window
is split into user and system time per event: the system part (epoll, one
receive and one send per event) is what any proxy pays, nginx included; the
user part is the proxy's own code. With ``--streams 600`` (~30,000 events/s)
the gateway's core is close to saturated, and ``writes_per_stream`` shows how
many of a stream's events went out together. ``--client messages`` sends the
gateway Anthropic Messages requests for the same OpenAI-protocol node, so it
translates every chunk into Messages events (the issue's "translated" target);
events are then the client's, counted as for chat. nginx, which cannot
translate, stays the chat pass-through anchor. ``--node burst20`` uses the
peer table's node instead (20 events back to back): with ``--streams 32`` the
proxy's core is saturated, as in the peer table's ``burst20`` row.

Figures for bench/README.md, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import CLIENT_PATHS, LoadConfig, chat_body, client_body, run_load  # noqa: E402
from bench.peers import start_nginx  # noqa: E402
from bench.run import KEY, Child, free_port, start_mock, wait_http, write_config  # noqa: E402


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of one process (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        stat = handle.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def write_calls(pid: int) -> int:
    """write-family syscalls of one process so far (/proc/PID/io ``syscw``): the proxies' client writes
    (libcurl's upstream sends are ``sendto``, which it does not count)."""
    with open(f"/proc/{pid}/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("syscw:"))


def measure(load: LoadConfig, pid: int, seconds: float) -> dict[str, Any]:
    """Warm up (300 streams), then one timed window: streams/s, CPU µs per event (user and system apart) and
    write calls per stream."""
    load.requests, load.duration = 300, None
    run_load(load)
    load.requests, load.duration = None, seconds
    user0, system0 = cpu_times(pid)
    writes0 = write_calls(pid)
    report = run_load(load)
    user1, system1 = cpu_times(pid)
    writes1 = write_calls(pid)
    events = max(report["events"], 1)
    return {"streams_per_s": round(report["ok"] / seconds, 1), "events": report["events"],
            "errors": sum(report["errors"].values()),
            "user_us_per_event": round((user1 - user0) / events * 1e6, 1),
            "system_us_per_event": round((system1 - system0) / events * 1e6, 1),
            "cpu_us_per_event": round((user1 - user0 + system1 - system0) / events * 1e6, 1),
            "writes_per_stream": round((writes1 - writes0) / max(report["ok"], 1), 1)}


def run(streams: int, seconds: float, rounds: int, trees: list[tuple[str, Path]],
        client: str = "chat", node: str = "stream") -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="infermesh-event-cpu-"))
    mock, mock_port = start_mock(work, pin=True)
    os.sched_setaffinity(0, {1})  # the load generator shares CPU 1 with the mock
    rows: list[dict[str, Any]] = []
    try:
        for round_no in range(1, rounds + 1):
            port = free_port()
            nginx, worker = start_nginx(Child, work, mock_port, port, True)
            try:
                load = LoadConfig(url=f"http://127.0.0.1:{port}/n/{node}/v1/chat/completions",
                                  body=chat_body("mock-model", True), stream=True, concurrency=streams)
                rows.append({"round": round_no, "proxy": "nginx", **measure(load, worker, seconds)})
            finally:
                nginx.stop()
            for number, (label, tree) in enumerate(trees):
                config = work / f"gateway-{round_no}-{number}.yaml"
                write_config(config, mock_port, free_port(), work / f"state-{round_no}-{number}")
                port = free_port()
                gateway = Child(f"gateway-{round_no}-{number}",
                                [sys.executable, str(tree / "gateway.py"), "--config", str(config), "--port", str(port)],
                                work, 0)
                try:
                    wait_http(port, "/healthz", 60, gateway)
                    load = LoadConfig(url=f"http://127.0.0.1:{port}{CLIENT_PATHS[client]}",
                                      body=client_body(client, f"bench-{node}", True),
                                      headers={"Authorization": f"Bearer {KEY}"}, stream=True, concurrency=streams)
                    rows.append({"round": round_no, "proxy": label, "client": client, "node": node,
                                 **measure(load, gateway.pid, seconds)})
                finally:
                    gateway.stop()
            for row in rows[-1 - len(trees):]:
                print(json.dumps(row), flush=True)
    finally:
        mock.stop()
    return rows


def gateway_trees(compare: Path | None) -> list[tuple[str, Path]]:
    """This tree's gateway, and ``--compare``'s (an older source tree) when given: the columns of a run."""
    return [("Infer Mesh", ROOT)] + ([(f"compare {compare}", compare)] if compare else [])


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rounds``, ``--compare`` and ``--json``, which this bench and ``agent_body`` share."""
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="also an older source tree's gateway.py, in the same rounds")
    parser.add_argument("--json", type=Path, help="write every row here as JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200, help="streams at once")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed window per proxy and round")
    parser.add_argument("--client", choices=sorted(CLIENT_PATHS), default="chat",
                        help="the gateway's clients: chat (pass-through) or messages (every event translated)")
    parser.add_argument("--node", choices=("stream", "burst20"), default="stream",
                        help="the mock's node: stream (200 events, 20 ms apart) or burst20 (20 back to back)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    trees = gateway_trees(args.compare)
    rows = run(args.streams, args.seconds, args.rounds, trees, args.client, args.node)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
