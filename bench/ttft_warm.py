"""Time to first token with the gateway idle between streams, and with light traffic keeping it warm.

    python bench/ttft_warm.py [--rounds 5]

The peer table's time to first token (bench/peers.py, ``ttft``) sends one
stream at a time: between a stream's events, and between streams, the gateway
has nothing to do, so each new request runs its path with the CPU's caches and
predictors cold for it. This bench measures how much of the added time that
is. Per round, against the mock's ``ttft`` node (50 ms to the first byte, 20
events 5 ms apart), 40 streams one at a time, the load generator's ``ttft_ms``
p50 for:

* ``direct``: the mock itself;
* ``nginx``: nginx as a plain reverse proxy (bench/peers.py's config);
* ``gateway idle``: the gateway, as in the peer table;
* ``gateway warm``: the gateway while another connection sends it ``GET
  /v1/models`` every ~4 ms (answered by the gateway alone, so the mock, whose
  timers would slow down under load, is not touched).

The "added" figures are each one's p50 minus the same round's direct p50.
The gateway is pinned to CPU 0 (as is nginx); the mock, the generator and the
warming connection to CPU 1. Figures for bench/README.md, never pass/fail.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import LoadConfig, chat_body, run_load  # noqa: E402
from bench.peers import start_nginx  # noqa: E402
from bench.run import KEY, Child, Gateway, free_port, start_mock, write_config  # noqa: E402

WARM_GAP_S = 0.004


def keep_warm(port: int, stop: threading.Event) -> None:
    """``GET /v1/models`` on one keep-alive connection every ``WARM_GAP_S`` until ``stop``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # sets TCP_NODELAY itself
    try:
        while not stop.is_set():
            conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /v1/models answered {response.status}")
            time.sleep(WARM_GAP_S)
    finally:
        conn.close()


def ttft_p50(port: int, path: str, model: str, headers: dict[str, str]) -> float:
    report = run_load(LoadConfig(url=f"http://127.0.0.1:{port}{path}", body=chat_body(model, True), headers=headers,
                                 stream=True, concurrency=1, requests=40))
    if report["errors"]:
        raise RuntimeError(f"errors: {report['errors']}")
    p50: float = report["ttft_ms"]["p50"]
    return p50


def run(rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="infermesh-ttft-warm-"))
    mock, mock_port = start_mock(work, pin=True)  # its ttft node as the peer table's (bench/peers.py PEER_NODES)
    os.sched_setaffinity(0, {1})  # the generator and the warming connection share CPU 1 with the mock
    children: list[Any] = [mock]
    rows: list[dict[str, float]] = []
    try:
        config = work / "gateway.yaml"
        write_config(config, mock_port, free_port(), work / "state")
        gateway = Gateway("gateway", config, work, pin=True)
        children.append(gateway)
        nginx_port = free_port()
        nginx, _ = start_nginx(Child, work, mock_port, nginx_port, True)
        children.append(nginx)
        upstream = "/n/ttft/v1/chat/completions"
        auth = {"Authorization": f"Bearer {KEY}"}
        for round_no in range(1, rounds + 1):
            row = {"direct": ttft_p50(mock_port, upstream, "mock-model", {}),
                   "nginx": ttft_p50(nginx_port, upstream, "mock-model", {}),
                   "gateway idle": ttft_p50(gateway.port, "/v1/chat/completions", "bench-ttft", auth)}
            stop = threading.Event()
            warmer = threading.Thread(target=keep_warm, args=(gateway.port, stop), daemon=True)
            warmer.start()
            try:
                row["gateway warm"] = ttft_p50(gateway.port, "/v1/chat/completions", "bench-ttft", auth)
            finally:
                stop.set()
                warmer.join()
            rows.append(row)
            print(json.dumps({"round": round_no, **{name: round(value, 3) for name, value in row.items()}}), flush=True)
    finally:
        for child in reversed(children):
            child.stop()
    added = {name: round(statistics.median(row[name] - row["direct"] for row in rows), 2)
             for name in ("nginx", "gateway idle", "gateway warm")}
    return {"rounds": rows, "added_p50_ms": added}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the rounds and the medians here")
    args = parser.parse_args(argv)
    result = run(args.rounds)
    print("added time to first token, p50, median of rounds:", result["added_p50_ms"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
