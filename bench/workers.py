"""Scenario "workers": ``--workers 2`` on the Redis ledger against one worker on the embedded ledger, on 2 cores.

``python bench/run.py --only workers [--rounds N | --quick]``

Issue 16 asks that two worker processes on the Redis ledger serve at least
1.8x what one process on the embedded ledger serves, on this 2-core machine.
Three gateways, one config apart, measured in turn in every round (the order
rotates) with the same load (64 connections, closed loop, non-streamed):

* ``embedded-1``: one process, the embedded ledger (journal and usage store in
  a temp dir), as in the other scenarios;
* ``redis-1``: one process on the Redis ledger;
* ``redis-2``: ``--workers 2`` on the same Redis.

redis-server runs with its append-only file fsynced every second (what
docs/scale-out.md recommends; the embedded ledger's journal is as durable). Nothing
is pinned here: the gateway's workers, redis-server, the mock upstream and the
load generator all share the two cores, as the issue's target is stated. So
the CPU seconds of each are read around every run, and the report says where
the cores went: a ratio below 2 is as much the other processes' share as the
gateway's.
"""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.load import LoadConfig, chat_body, run_load
from bench.peers import children_of

VARIANTS = ("embedded-1", "redis-1", "redis-2")
CONNECTIONS = 64


@contextmanager
def all_cpus() -> Iterator[None]:
    """Processes started (and generators run) inside float over every core; bench/run.py pins itself to CPU 1."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def start_redis(child_cls: Any, work: Path, port: int, persist: bool) -> Any:
    """A throw-away redis-server on loopback; ``persist``: AOF fsynced every second, else nothing on disk."""
    durability = ["--appendonly", "yes", "--appendfsync", "everysec"] if persist else ["--appendonly", "no"]
    redis = child_cls("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(work), *durability], work, None)
    time.sleep(0.5)
    return redis


def use_redis(config: Path, port: int) -> None:
    """Rewrite a bench config (bench/run.py's write_config) to put its ledger on Redis at ``port``."""
    text = re.sub(r'state: \{dir: "([^"]+)"',
                  lambda m: f'state: {{backend: redis, redis_url: "redis://127.0.0.1:{port}/0", dir: "{m.group(1)}"',
                  config.read_text())
    config.write_text(text)


class Scenario:
    """The three gateways and their redis-server, started once; ``round`` measures each in turn."""

    def __init__(self, run: Any, work: Path, quick: bool, record: Callable[[str, Any], None]) -> None:
        """``run``: the bench/run module as it runs (Child, start_mock, free_port, write_config, wait_http, KEY)."""
        self._run = run
        self._quick = quick
        self._record = record
        self._children: list[Any] = []
        self._gateways: dict[str, tuple[Any, int]] = {}  # variant -> (process, port)
        with all_cpus():
            self._mock, self._mock_port = run.start_mock(work, pin=False)  # its own mock, unpinned too
            self._children.append(self._mock)
            redis_port = run.free_port()
            self._redis = start_redis(run.Child, work, redis_port, persist=True)
            self._children.append(self._redis)
            for variant in VARIANTS:
                config = work / f"gateway-{variant}.yaml"
                run.write_config(config, self._mock_port, run.free_port(), work / f"state-{variant}")
                if variant.startswith("redis"):
                    use_redis(config, redis_port)
                port = run.free_port()
                argv = [sys.executable, str(run.ROOT / "gateway.py"), "--config", str(config), "--port", str(port)]
                if variant == "redis-2":
                    argv += ["--workers", "2"]
                child = run.Child(f"gateway-{variant}", argv, work, None)
                self._children.append(child)
                run.wait_http(port, "/healthz", 30, child)
                self._gateways[variant] = (child, port)
            for variant in VARIANTS:
                self._load(variant, 1.0)  # warm-up: connections, caches, both workers

    def _pids(self, variant: str) -> list[int]:
        child, _ = self._gateways[variant]
        return [child.pid, *children_of(child.pid)]  # --workers: the supervisor and its workers

    def _load(self, variant: str, duration: float) -> dict[str, Any]:
        _, port = self._gateways[variant]
        gateway_pids = self._pids(variant)
        config = LoadConfig(url=f"http://127.0.0.1:{port}/v1/chat/completions", body=chat_body("bench-fast", False),
                            headers={"Authorization": f"Bearer {self._run.KEY}"}, concurrency=CONNECTIONS,
                            duration=duration, timeout_s=10.0,
                            pids=[*gateway_pids, self._mock.pid, self._redis.pid])
        with all_cpus():
            rep = run_load(config)
        rep["roles"] = {"gateway": [str(pid) for pid in gateway_pids], "mock": [str(self._mock.pid)]}
        if variant.startswith("redis"):
            rep["roles"]["redis"] = [str(self._redis.pid)]
        return rep

    def round(self, round_no: int) -> None:
        duration = 2.0 if self._quick else 5.0
        order = VARIANTS[round_no % 3:] + VARIANTS[:round_no % 3]
        entry: dict[str, Any] = {}
        for variant in order:
            rep = self._load(variant, duration)
            entry[variant] = rep
            split = cpu_split(rep)
            print(f"  [workers r{round_no + 1} {variant:10s}] ok {rep['ok']} err {rep['error_count']} "
                  f"rps {rep['rps']} CPU µs/request: " + " ".join(f"{k} {v}" for k, v in split.items()), flush=True)
        self._record("workers", entry)

    def stop(self) -> None:
        for child in reversed(self._children):
            child.stop()


def cpu_split(rep: dict[str, Any]) -> dict[str, float | None]:
    """CPU µs per request of each role (gateway processes summed), the generator, the total, and the cores used."""
    if not rep["ok"]:
        return {}
    out: dict[str, float | None] = {}
    for role, pids in rep["roles"].items():
        seconds = [rep["targets"][pid]["cpu_s"] for pid in pids if rep["targets"].get(pid, {}).get("cpu_s") is not None]
        out[role] = round(sum(seconds) / rep["ok"] * 1e6, 1) if seconds else None
    out["generator"] = round(rep["generator_cpu_s"] / rep["ok"] * 1e6, 1)
    total = sum(v for v in out.values() if v is not None)
    out["total"] = round(total, 1)
    out["cores_used"] = round(total * rep["rps"] / 1e6, 2) if rep["rps"] else None
    return out


def ceiling(variant: str, cpu: dict[str, Any]) -> float | None:
    """Req/s if these processes had the 2 cores to themselves, from CPU per request: each gateway worker is one
    thread of Python (at most one core each), and all of them together fit in the 2 cores."""
    if not cpu.get("gateway") or not cpu.get("total"):
        return None
    workers = 2 if variant == "redis-2" else 1
    return round(min(workers * 1e6 / cpu["gateway"], 2 * 1e6 / cpu["total"]))


def summarize(rounds: list[dict[str, Any]], med: Callable[[list[Any]], float | None]) -> dict[str, Any]:
    """Medians over rounds: req/s and the CPU split of each variant, and the per-round ratios to embedded-1."""
    out: dict[str, Any] = {"rounds": len(rounds)}
    for variant in VARIANTS:
        splits = [cpu_split(r[variant]) for r in rounds]
        cpu = {role: med([s.get(role) for s in splits if s.get(role) is not None])
               for role in ("gateway", "redis", "mock", "generator", "total", "cores_used")}
        out[variant] = {"rps": med([r[variant]["rps"] for r in rounds]),
                        "errors": sum(r[variant]["error_count"] for r in rounds), "cpu_us": cpu,
                        "ceiling_rps": ceiling(variant, cpu)}
    for variant in ("redis-1", "redis-2"):
        out[f"{variant}_vs_embedded-1"] = med([r[variant]["rps"] / r["embedded-1"]["rps"] for r in rounds
                                              if r["embedded-1"]["rps"] and r[variant]["rps"]])
        base, this = out["embedded-1"]["ceiling_rps"], out[variant]["ceiling_rps"]
        out[f"{variant}_vs_embedded-1_ceiling"] = round(this / base, 2) if base and this else None
    return out


def markdown(s: dict[str, Any], fmt: Callable[..., str]) -> list[str]:
    lines = ["", f"Workers ({CONNECTIONS} connections, closed loop, nothing pinned: every process below shares the "
                 f"2 cores; CPU µs per request of each; medians of {s['rounds']} rounds; \"cores used\": the CPU "
                 "these processes got, out of 2, the rest went to other work on the machine; \"ceiling\": req/s "
                 "with the 2 cores to themselves, from CPU per request, each worker at most one core):", "",
             "| variant | req/s | gateway | redis-server | mock | load generator | all | cores used | ceiling | errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    labels = {"embedded-1": "1 worker, embedded ledger", "redis-1": "1 worker, Redis ledger",
              "redis-2": "`--workers 2`, Redis ledger"}
    for variant, label in labels.items():
        q, cpu = s[variant], s[variant]["cpu_us"]
        lines.append(f"| {label} | {fmt(q['rps'])} | {fmt(cpu['gateway'])} | {fmt(cpu['redis'])} | {fmt(cpu['mock'])} "
                     f"| {fmt(cpu['generator'])} | {fmt(cpu['total'])} | {fmt(cpu['cores_used'])} "
                     f"| {fmt(q['ceiling_rps'])} | {q['errors']} |")
    lines += ["", f"`--workers 2` on Redis / 1 embedded worker: {fmt(s['redis-2_vs_embedded-1'], 2)}x measured, "
                  f"{fmt(s['redis-2_vs_embedded-1_ceiling'], 2)}x by ceiling; 1 Redis worker / 1 embedded worker: "
                  f"{fmt(s['redis-1_vs_embedded-1'], 2)}x measured, {fmt(s['redis-1_vs_embedded-1_ceiling'], 2)}x "
                  "by ceiling."]
    return lines
