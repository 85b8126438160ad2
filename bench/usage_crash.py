"""How many usage records a ``kill -9`` loses, and how old the oldest lost one was: the batch window, measured.

    python bench/usage_crash.py [--rounds 5] [--batch-s 0.2] [--threads 8]

Each round starts ``gateway.py`` on a fresh state dir (embedded ledger, an
in-process ``mock`` node, snapshots every 60 s so every charge of the round
stays in the journal), sends requests back to back from ``--threads`` client
threads for a random 1-3 s, kills the gateway with SIGKILL, reads the charges
from the journal, restarts it on the same state dir and reads every usage
record back (``/admin/usage?format=csv``). A lost record is a charge without
one; its age is the time from its charge to the kill. Charges are never lost
(the journal is written before each response ends): the round also checks
that every charge is in the balance.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-usage-crash-0000000000000000"
ADMIN = "usage-crash-admin-token-0123456789"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "count me"}], "max_tokens": 4})


def start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "gateway.py"), "--config", str(config), "--port", "0"],
                            cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("Infer Mesh listening on http://"):
                return proc, int(line.split()[4].rsplit(":", 1)[1])
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError("gateway did not start:\n" + log.read_text(errors="replace")[-2000:])


def load(port: int, stop: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    while not stop.is_set():
        try:
            conn.request("POST", "/v1/chat/completions", BODY, headers)
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            return


def get(port: int, path: str, token: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return conn.getresponse().read()


def one_round(work: Path, batch_s: float, threads: int, rng: random.Random) -> dict[str, float]:
    state = work / "state"
    config = {"listen": {"host": "127.0.0.1", "port": 0}, "admin": {"token": ADMIN},
              "state": {"dir": str(state), "snapshot_interval_s": 60, "usage_batch_s": batch_s},
              "logging": {"access_log": False},
              "nodes": [{"id": "mock", "provider": "mock", "models": ["m"]}],
              "models": {"m": {"price": {"input": 1, "output": 2}}},
              "accounts": [{"id": "crash", "balance_usd": 1000, "keys": [KEY]}]}
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    proc, port = start(path, work / "run-1.log")
    stop = threading.Event()
    clients = [threading.Thread(target=load, args=(port, stop)) for _ in range(threads)]
    for client in clients:
        client.start()
    time.sleep(rng.uniform(1.0, 3.0))
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for client in clients:
        client.join()
    charges: dict[str, float] = {}
    charged_nano = 0
    for journal in sorted(state.glob("journal-*.jsonl")):
        for line in journal.read_text().splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("op") == "charge":
                charges[entry["request_id"]] = entry["at"]
                charged_nano += entry["nano"]
    proc, port = start(path, work / "run-2.log")
    try:
        text = get(port, "/admin/usage?account=crash&format=csv&limit=100000", ADMIN).decode()
        balance = json.loads(get(port, "/v1/balance", KEY))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    recorded = {row["request_id"] for row in csv.DictReader(io.StringIO(text))}
    lost = [killed_at - at for request_id, at in charges.items() if request_id not in recorded]
    spent = 1000 * 10**9 - int(round(float(balance["balance_usd"]) * 10**9))
    return {"charges": len(charges), "records": len(recorded), "lost": len(lost),
            "oldest_lost_age_s": round(max(lost, default=0.0), 3), "every_charge_in_balance": spent == charged_nano}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-s", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(17)
    results = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="usage-crash-") as work:
            result = one_round(Path(work), args.batch_s, args.threads, rng)
        results.append(result)
        print(f"round {n + 1}: {json.dumps(result)}", flush=True)
    worst = max(r["oldest_lost_age_s"] for r in results)
    print(f"batch window {args.batch_s} s: at most {max(r['lost'] for r in results)} records lost per crash, "
          f"the oldest settled {worst} s before the kill; every charge kept: "
          f"{all(r['every_charge_in_balance'] for r in results)}")
    sys.exit(0 if all(r["every_charge_in_balance"] for r in results) else 1)


if __name__ == "__main__":
    main()
