"""Instructions per request of the embedded ledger alone: reserve + settle under callgrind, every thread.

``python bench/ledger_instructions.py [--source DIR ...] [--pairs 2000] [--ioloop-only]``

``bench/instructions.py --no-ledger`` gives the ledger's share of a whole
request, but under valgrind a request takes ~50x longer while the usage
store's batch window (0.2 s) and the journal's fsync interval (0.1 s) do
not stretch, so each SQLite transaction and each fsync is paid by a handful
of requests instead of hundreds. Here the ledger runs on its own, at a pace
where they are shared as at ~1,000 req/s: pairs of reserve + settle with the
pipeline's record (built once, not counted), 50 per 10 ms pause, so the
writer commits ~200 rows per transaction. Each ``--source`` tree (this one by
default) runs in its own ``valgrind --tool=callgrind`` with instrumentation
switched on around the measured pairs; ``--ioloop-only`` replaces the usage
queue's ``append`` by a no-op, leaving what the IOLoop thread does.
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
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-00000000000000000000"


def run_pairs(pairs: int, ioloop_only: bool) -> None:
    """Inside valgrind: warm up, then ``pairs`` reserve + settle between two callgrind toggles."""
    from gateway.config import Account
    from gateway.ledger.ledger import Ledger
    from gateway.protocols.names import Protocol

    state = tempfile.mkdtemp(prefix="infermesh-ledger-")
    ledger = Ledger.open(state, (Account("bench", Decimal(10**9), (KEY,)),), fsync_interval_s=0.1,
                         usage_batch_s=0.2)
    info = ledger.authenticate(KEY)[1]
    assert info is not None
    if ioloop_only:
        ledger.usage_store.append = lambda row: None  # type: ignore[method-assign]
    record = {"request_id": "0123456789abcdef0123", "model": "bench-fast", "node": "fast", "input_tokens": 12,
              "output_tokens": 12, "cached_tokens": 0, "cache_write_tokens": 0, "cache_write_1h_tokens": 0,
              "estimated": False, "status": 200, "latency_ms": 1.2, "ttft_ms": 0.8, "endpoint": Protocol.CHAT,
              "stream": False, "created_at": time.time()}

    def pairs_of(count: int) -> None:
        for i in range(count):
            ledger.settle(ledger.reserve(info, 1_000, 100), 900, record)
            if i % 50 == 49:
                time.sleep(0.01)  # the threads' turn, as between loop turns

    pairs_of(200)
    time.sleep(0.5)
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
    pairs_of(pairs)
    time.sleep(0.6)  # the writer commits the last batch inside the window
    subprocess.run(["callgrind_control", "-d", str(os.getpid())], check=True, capture_output=True)
    ledger.close()
    shutil.rmtree(state, ignore_errors=True)


def measure(source: Path, pairs: int, ioloop_only: bool) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="infermesh-callgrind-"))
    try:
        out = work / "callgrind.out"
        argv = [sys.executable, str(Path(__file__).resolve()), "--inside", str(source), "--pairs", str(pairs)]
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *argv,
                        *(["--ioloop-only"] if ioloop_only else [])], check=True, capture_output=True)
        dumped = work / "callgrind.out.1"  # the dump of the measured pairs (the rest is the exit)
        total = next(int(line.split()[1]) for line in dumped.read_text().splitlines()
                     if line.startswith(("summary:", "totals:")))
        return {"source": str(source), "pairs": pairs, "ioloop_only": ioloop_only,
                "instructions_per_request": round(total / pairs)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", action="append", help="gateway source tree (repeatable; default: this one)")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--ioloop-only", action="store_true", help="the usage queue's append stubbed")
    parser.add_argument("--inside", help=argparse.SUPPRESS)  # run by measure(), under valgrind
    args = parser.parse_args()
    if args.inside:
        sys.path.insert(0, args.inside)
        run_pairs(args.pairs, args.ioloop_only)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    for source in args.source or [str(ROOT)]:
        print(json.dumps(measure(Path(source).resolve(), args.pairs, args.ioloop_only)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
