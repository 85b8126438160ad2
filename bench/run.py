"""Benchmark the gateway against the mock upstream it relays, side by side: ``python bench/run.py [--quick]``.

Starts ``bench/mock_upstream.py`` and ``gateway.py`` as subprocesses (own
process groups, always stopped in ``finally``), then runs every scenario
against the gateway AND against the upstream directly, interleaved, for
several rounds, so that a noisy machine disturbs both sides alike. Writes
``bench/results/latest.json`` and ``bench/results/latest.md`` (the table for
bench/README.md).

Pinning (``--no-pin`` turns it off): the gateway runs on CPU 0
(``taskset -c 0``); the mock upstream and the load generator (this process
and its forks) on CPU 1. The gateway then has one core to itself, as in the
reference measurements, and the upstream and the client never take its core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import resource
import runpy
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import peers as peer_table  # noqa: E402
from bench import workers as workers_scenario  # noqa: E402
from bench.load import LoadConfig, chat_body, proc_status_kib, run_load  # noqa: E402

KEY = "sk-bench-00000000000000000000"
RESULTS = ROOT / "bench" / "results"

# virtual nodes of the mock and what they do (POST /_control/<name>)
NODE_BEHAVIOUR = {
    "fast": {},  # 12 tokens, no delay
    "stream": {"tokens": 196, "chunk_delay_ms": 20},  # 196 tokens -> 200 SSE events (role, finish, usage, [DONE])
    "many": {"tokens": 896, "chunk_delay_ms": 33},  # ~30 events/s for ~30 s
    "many10": {"tokens": 146, "chunk_delay_ms": 100},  # 10 events/s for 15 s
    "ok-a": {}, "ok-b": {}, "ok-c": {}, "ok-d": {},
    "hang": {"fault": "hang"},
    **peer_table.PEER_NODES,
}


# --------------------------------------------------------------------------- processes


class Child:
    """A subprocess in its own process group, output to a log file, stopped group-wide."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, cpu: int | None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(prefix + argv, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid  # taskset execs the program: same pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_call(port: int, method: str, path: str, body: Any = None, timeout: float = 5.0,
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_http(port: int, path: str, deadline_s: float, child: Child) -> float:
    """Poll until 200; returns seconds since the child was started."""
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
        try:
            status, _ = http_call(port, "GET", path, timeout=1.0)
            if status == 200:
                return time.perf_counter() - child.started
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{child.name} not up on port {port} after {deadline_s} s:\n{child.tail()}")


def start_mock(work: Path, pin: bool) -> tuple[Child, int]:
    port = free_port()
    mock = Child("mock", [sys.executable, "bench/mock_upstream.py", "--port", str(port)], work, 1 if pin else None)
    wait_http(port, "/_stats/default", 10, mock)
    for name, behaviour in NODE_BEHAVIOUR.items():
        status, body = http_call(port, "POST", f"/_control/{name}", behaviour)
        if status != 200:
            raise RuntimeError(f"mock refused behaviour for {name}: {body!r}")
    return mock, port


def write_config(path: Path, mock_port: int, dead_port: int, state_dir: Path) -> None:
    up = f"http://127.0.0.1:{mock_port}/n"
    price = "{input: 0.15, output: 0.60}"
    text = f"""# generated by bench/run.py
listen: {{host: 127.0.0.1, port: 0}}
state: {{dir: "{state_dir}", snapshot_interval_s: 30}}
upstream: {{max_clients: 2048, queue_timeout_s: 5}}
routing: {{strategy: least-latency, max_attempts: 3}}
circuit_breaker: {{failure_threshold: 3, open_s: 5}}
logging: {{access_log: true, level: warning}}
nodes:
  - {{id: fast, provider: openai, base_url: "{up}/fast/v1", api_key: sk-up, models: {{bench-fast: mock-model}}}}
  - {{id: stream, provider: openai, base_url: "{up}/stream/v1", api_key: sk-up, models: {{bench-stream: mock-model}}}}
  - {{id: many, provider: openai, base_url: "{up}/many/v1", api_key: sk-up, models: {{bench-many: mock-model}}}}
  - {{id: many10, provider: openai, base_url: "{up}/many10/v1", api_key: sk-up, models: {{bench-many10: mock-model}}}}
  - {{id: ok-a, provider: openai, base_url: "{up}/ok-a/v1", api_key: sk-up, models: {{bench-fo-healthy: mock-model}}}}
  - {{id: ok-b, provider: openai, base_url: "{up}/ok-b/v1", api_key: sk-up, models: {{bench-fo-healthy: mock-model}}}}
  - {{id: refused, provider: openai, base_url: "http://127.0.0.1:{dead_port}/v1", api_key: sk-up,
     models: {{bench-fo-refused: mock-model}}}}
  - {{id: ok-c, provider: openai, base_url: "{up}/ok-c/v1", api_key: sk-up, models: {{bench-fo-refused: mock-model}}}}
  - {{id: hang, provider: openai, base_url: "{up}/hang/v1", api_key: sk-up, first_byte_timeout_s: 0.5,
     models: {{bench-fo-hang: mock-model}}}}
  - {{id: ok-d, provider: openai, base_url: "{up}/ok-d/v1", api_key: sk-up, models: {{bench-fo-hang: mock-model}}}}
  - {{id: ttft, provider: openai, base_url: "{up}/ttft/v1", api_key: sk-up, models: {{bench-ttft: mock-model}}}}
  - {{id: slow50, provider: openai, base_url: "{up}/slow50/v1", api_key: sk-up, models: {{bench-slow50: mock-model}}}}
  - {{id: burst20, provider: openai, base_url: "{up}/burst20/v1", api_key: sk-up, models: {{bench-burst20: mock-model}}}}
models:
  bench-fast: {{price: {price}}}
  bench-stream: {{price: {price}}}
  bench-many: {{price: {price}}}
  bench-many10: {{price: {price}}}
  bench-fo-healthy: {{price: {price}}}
  bench-fo-refused: {{price: {price}}}
  bench-fo-hang: {{price: {price}}}
  bench-ttft: {{price: {price}}}
  bench-slow50: {{price: {price}}}
  bench-burst20: {{price: {price}}}
accounts:
  - {{id: bench, balance_usd: 1000000000, keys: [{KEY}]}}
"""
    path.write_text(text)


class Gateway:
    """One gateway process; ``variant`` "real" runs gateway.py, "no-ledger" stubs the ledger's money path."""

    def __init__(self, name: str, config: Path, work: Path, pin: bool, variant: str = "real",
                 source: Path = ROOT) -> None:
        """``source``: the tree whose gateway.py runs (``--compare-gateway``: an older commit, side by side)."""
        self.port = free_port()
        if variant == "real":
            argv = [sys.executable, str(source / "gateway.py"), "--config", str(config), "--port", str(self.port)]
        else:
            argv = [sys.executable, "bench/run.py", "--serve-gateway-without-ledger", str(config), str(self.port)]
        self.child = Child(name, argv, work, 0 if pin else None)
        self.startup_s = wait_http(self.port, "/healthz", 30, self.child)
        time.sleep(1.0)
        self.idle_rss_mib = round((proc_status_kib(self.child.pid, "VmRSS") or 0) / 1024, 1)

    def rss_after_one_request(self) -> float:
        """VmRSS 1 s after one relayed request: the first transfer initialises libcurl's multi handle (and
        the OpenSSL inside pycurl's wheel), which the idle figure, taken before any, does not include."""
        request = {"model": "bench-fast", "messages": [{"role": "user", "content": "hi"}]}
        status, _ = http_call(self.port, "POST", "/v1/chat/completions", request,
                              headers={"Authorization": f"Bearer {KEY}"})
        if status != 200:
            raise RuntimeError(f"the gateway answered {status} to its first request")
        time.sleep(1.0)
        return round((proc_status_kib(self.child.pid, "VmRSS") or 0) / 1024, 1)

    @property
    def pid(self) -> int:
        return self.child.pid

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def stop(self) -> None:
        self.child.stop()


def serve_without_ledger(config: str, port: str) -> None:
    """Bench-only: gateway.py with Ledger.reserve/settle/release stubbed (no journal line, no usage record).

    Authentication still goes through the ledger's key index. This is the
    "ledger off" side of scenario 7; nothing in gateway/ is edited.
    """
    sys.path.insert(0, str(ROOT))
    from gateway.ledger import ledger as ledger_module

    def reserve(self: Any, key: Any, amount_nano: int, tokens: int = 0) -> Any:
        return ledger_module.Reservation(key.account_id, key.key_id, 0, 0)

    ledger_module.Ledger.reserve = reserve  # type: ignore[method-assign]
    ledger_module.Ledger.settle = lambda self, reservation, cost, record: None  # type: ignore[method-assign]
    ledger_module.Ledger.release = lambda self, reservation: None  # type: ignore[method-assign]
    sys.argv = ["gateway.py", "--config", config, "--port", port]
    runpy.run_path(str(ROOT / "gateway.py"), run_name="__main__")


# --------------------------------------------------------------------------- measuring


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.pin = not args.no_pin
        self.results: dict[str, Any] = {"scenarios": {}}
        self.mock_port = 0
        self.mock_pid = 0
        self.gw: Gateway | None = None
        self.peers: list[peer_table.Peer] = []

    # one measurement
    def load(self, url: str, model: str, *, gateway: bool, stream: bool = False, pids: list[int] | None = None,
             cpu: set[int] | None = None, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {KEY}"} if gateway else {}
        config = LoadConfig(url=url, body=chat_body(model, stream), headers=headers, stream=stream,
                            pids=pids or [], **kwargs)
        previous = os.sched_getaffinity(0)
        if cpu is not None and self.pin:
            os.sched_setaffinity(0, cpu)
        try:
            return run_load(config)
        finally:
            if cpu is not None and self.pin:
                os.sched_setaffinity(0, previous)

    def direct_url(self, node: str) -> str:
        return f"http://127.0.0.1:{self.mock_port}/n/{node}/v1/chat/completions"

    def pair(self, name: str, round_no: int, node: str, model: str, **kwargs: Any) -> dict[str, Any]:
        """Gateway and direct, order alternating by round; the gateway's and the mock's CPU are measured."""
        assert self.gw is not None
        out: dict[str, Any] = {}
        order = ("gateway", "direct") if round_no % 2 == 0 else ("direct", "gateway")
        for side in order:
            if side == "gateway":
                out[side] = self.load(self.gw.url(), model, gateway=True, pids=[self.gw.pid, self.mock_pid], **kwargs)
            else:
                out[side] = self.load(self.direct_url(node), model, gateway=False, pids=[self.mock_pid], **kwargs)
            self.progress(name, round_no, side, out[side])
        return out

    def progress(self, name: str, round_no: int, side: str, rep: dict[str, Any]) -> None:
        lat = rep["latency_ms"]
        extra = ""
        if rep["stream"]:
            extra = f" ttft p50 {rep['ttft_ms']['p50']} gap p99 {rep['gap_ms']['p99']}"
        print(f"  [{name} r{round_no + 1} {side:8s}] ok {rep['ok']} err {rep['error_count']} {rep['errors'] or ''} "
              f"rps {rep['rps']} p50 {lat['p50']} p99 {lat['p99']} max {lat['max']}{extra}", flush=True)

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.results["scenarios"].setdefault(name, []).append(entry)

    # ---------------------------------------------------------------- scenarios

    def s0_mock_capacity(self, r: int) -> None:
        # the generator on CPU 0 (the gateway is idle), the mock alone on CPU 1
        rep = self.load(self.direct_url("fast"), "bench-fast", gateway=False, pids=[self.mock_pid], cpu={0},
                        concurrency=64, duration=2.0 if self.quick else 5.0)
        self.progress("mock-capacity", r, "direct", rep)
        self.record("mock_capacity", {"direct": rep})

    def s1_sequential(self, r: int) -> None:
        n = 300 if self.quick else 2000
        self.record("sequential", self.pair("sequential", r, "fast", "bench-fast", concurrency=1, requests=n))

    def s2_throughput(self, r: int) -> None:
        d = 3.0 if self.quick else 10.0
        self.record("throughput", self.pair("throughput", r, "fast", "bench-fast", concurrency=64, duration=d))

    def s3_fixed_rate(self, r: int) -> None:
        d = self.args.rate_duration or (5.0 if self.quick else 30.0)
        for rate in (500, 1000):
            self.record(f"rate_{rate}", self.pair(f"rate-{rate}", r, "fast", "bench-fast", rate=float(rate),
                                                  duration=d, timeout_s=10.0))

    def s4_streaming(self, r: int) -> None:
        self.record("streaming", self.pair("streaming", r, "stream", "bench-stream", stream=True, concurrency=100,
                                           requests=100, timeout_s=60.0))

    def s5_many_streams(self, r: int) -> None:
        if self.quick:  # 5 s streams instead of 30 s and 15 s
            http_call(self.mock_port, "POST", "/_control/many", {"tokens": 146})
            http_call(self.mock_port, "POST", "/_control/many10", {"tokens": 46})
        self.record("many_streams", self.pair("many-streams", r, "many", "bench-many", stream=True,
                                              concurrency=1000, requests=1000, timeout_s=120.0,
                                              procs=self.args.stream_procs))
        # the same 1,000 streams at a third of the event rate: what 30k events/s costs vs what 1,000 streams cost
        self.record("many_streams_10", self.pair("many-streams-10/s", r, "many10", "bench-many10", stream=True,
                                                 concurrency=1000, requests=1000, timeout_s=120.0,
                                                 procs=self.args.stream_procs))

    def s6_failover(self, r: int) -> None:
        assert self.gw is not None
        d = 4.0 if self.quick else 12.0
        entry: dict[str, Any] = {}
        direct = self.load(self.direct_url("ok-a"), "bench-fo-healthy", gateway=False, pids=[self.mock_pid],
                           concurrency=16, duration=d)
        self.progress("failover", r, "direct", direct)
        entry["direct"] = direct
        for variant in ("healthy", "refused", "hang"):
            rep = self.load(self.gw.url(), f"bench-fo-{variant}", gateway=True, pids=[self.gw.pid], concurrency=16,
                            duration=d, timeout_s=10.0)
            self.progress("failover", r, variant, rep)
            entry[variant] = rep
        self.record("failover", entry)

    def s7_ledger(self, r: int, gateways: dict[str, Gateway]) -> None:
        d = 3.0 if self.quick else 8.0
        entry: dict[str, Any] = {}
        names = list(gateways)
        if r % 2:
            names.reverse()
        for name in names:
            gw = gateways[name]
            rep = self.load(gw.url(), "bench-fast", gateway=True, pids=[gw.pid], concurrency=64, duration=d)
            self.progress("ledger", r, name, rep)
            entry[name] = rep
        self.record("ledger", entry)

    def s8_peers(self, r: int) -> None:
        self.record("peers", peer_table.measure_round(self.load, self.peers, r, self.quick, self.progress))

    def start_peers(self, work: Path, config: Path, children: list[Any]) -> None:
        """Direct, nginx, LiteLLM (if importable), this gateway, and ``--compare-gateway`` (if given)."""
        assert self.gw is not None
        mock = f"http://127.0.0.1:{self.mock_port}"
        self.peers = [peer_table.Peer("direct", mock, False, [self.mock_pid])]
        if peer_table.nginx_binary():
            port = free_port()
            nginx, worker = peer_table.start_nginx(Child, work, self.mock_port, port, self.pin)
            children.append(nginx)
            self.peers.append(peer_table.Peer("nginx", f"http://127.0.0.1:{port}", False, [worker, self.mock_pid]))
        else:
            print("nginx not installed: no nginx column", flush=True)
        port = free_port()  # the anchor: what a bare Tornado + curl relay costs here (bench/tornado_relay.py)
        relay = Child("tornado-relay", [sys.executable, "bench/tornado_relay.py", "--port", str(port),
                                        "--upstream", mock], work, 0 if self.pin else None)
        children.append(relay)
        wait_http(port, "/healthz", 10, relay)
        self.peers.append(peer_table.Peer("Tornado relay", f"http://127.0.0.1:{port}", False, [relay.pid,
                                                                                              self.mock_pid]))
        if peer_table.litellm_available():
            port = free_port()
            litellm = peer_table.start_litellm(Child, work, self.mock_port, port, self.pin, KEY)
            children.append(litellm)
            wait_http(port, "/health/liveliness", 120, litellm)
            self.peers.append(peer_table.Peer("LiteLLM", f"http://127.0.0.1:{port}", False, [litellm.pid,
                                                                                             self.mock_pid],
                                              litellm=True))
        if self.args.compare_gateway:
            source = Path(self.args.compare_gateway).resolve()
            before_cfg = work / "gateway-compare.yaml"
            before_cfg.write_text(config.read_text().replace(str(work / "state-disk"), str(work / "state-compare")))
            before = Gateway("gateway-compare", before_cfg, work, self.pin, source=source)
            children.append(before)
            self.peers.append(peer_table.Peer(self.args.compare_label, f"http://127.0.0.1:{before.port}", True,
                                              [before.pid, self.mock_pid]))
        self.peers.append(peer_table.Peer("Infer Mesh", f"http://127.0.0.1:{self.gw.port}", True,
                                          [self.gw.pid, self.mock_pid]))
        for peer in self.peers:  # warm-up: connections, caches, the first JIT-free paths
            for node in ("fast", "burst20"):
                self.load(peer.url(node), peer.model(node), gateway=peer.routes, concurrency=8, duration=0.5,
                          stream=node == "burst20")

    def warmup(self) -> None:
        assert self.gw is not None
        for gateway, url in ((True, self.gw.url()), (False, self.direct_url("fast"))):
            self.load(url, "bench-fast", gateway=gateway, concurrency=16, duration=1.0)
        self.load(self.gw.url(), "bench-stream", gateway=True, stream=True, concurrency=10, requests=10)

    # ---------------------------------------------------------------- the whole run

    def run(self) -> dict[str, Any]:
        args = self.args
        work = Path(tempfile.mkdtemp(prefix="infermesh-bench-", dir=args.disk_dir))
        shm_root = Path(tempfile.mkdtemp(prefix="infermesh-bench-", dir="/dev/shm")) if os.path.isdir("/dev/shm") \
            else work / "shm-missing"
        children: list[Any] = []
        started = time.time()
        try:
            mock, self.mock_port = start_mock(work, self.pin)
            children.append(mock)
            self.mock_pid = mock.pid
            dead_port = free_port()  # nobody listens: connections are refused
            disk_cfg, shm_cfg = work / "gateway-disk.yaml", work / "gateway-shm.yaml"
            write_config(disk_cfg, self.mock_port, dead_port, work / "state-disk")
            write_config(shm_cfg, self.mock_port, dead_port, shm_root / "state")
            write_config(work / "gateway-noledger.yaml", self.mock_port, dead_port, work / "state-noledger")
            self.gw = Gateway("gateway", disk_cfg, work, self.pin)
            children.append(self.gw)
            print(f"gateway pid {self.gw.pid} up in {self.gw.startup_s * 1000:.0f} ms, idle RSS "
                  f"{self.gw.idle_rss_mib} MiB; mock pid {self.mock_pid}; work dir {work}", flush=True)
            self.results["startup"] = {"gateway_startup_ms": round(self.gw.startup_s * 1000, 1),
                                       "gateway_idle_rss_mib": self.gw.idle_rss_mib,
                                       "gateway_rss_after_first_request_mib": self.gw.rss_after_one_request()}
            self.warmup()
            wanted = set(args.only.split(",")) if args.only else None
            steps: list[tuple[str, Callable[[int], None]]] = [
                ("mock", self.s0_mock_capacity), ("sequential", self.s1_sequential),
                ("throughput", self.s2_throughput), ("rate", self.s3_fixed_rate),
                ("streaming", self.s4_streaming), ("many", self.s5_many_streams), ("failover", self.s6_failover)]
            steps = [(name, fn) for name, fn in steps if wanted is None or name in wanted]
            if wanted is None or "peers" in wanted:
                self.start_peers(work, disk_cfg, children)
                steps.append(("peers", self.s8_peers))
            ledger_gateways: dict[str, Gateway] = {}
            if wanted is None or "ledger" in wanted:
                ledger_gateways["disk"] = self.gw
                for name, cfg, variant in (("tmpfs", shm_cfg, "real"),
                                           ("no-ledger", work / "gateway-noledger.yaml", "no-ledger")):
                    gw = Gateway(f"gateway-{name}", cfg, work, self.pin, variant)
                    children.append(gw)
                    ledger_gateways[name] = gw
                    self.results.setdefault("extra_startups", []).append(
                        {"name": name, "startup_ms": round(gw.startup_s * 1000, 1), "idle_rss_mib": gw.idle_rss_mib})
                    self.load(gw.url(), "bench-fast", gateway=True, concurrency=16, duration=1.0)  # warm-up
            if (wanted is None or "workers" in wanted) and shutil.which("redis-server"):
                workers = workers_scenario.Scenario(sys.modules[__name__], work, self.quick, self.record)
                children.append(workers)
                steps.append(("workers", workers.round))
            rounds = 1 if self.quick else args.rounds
            for r in range(rounds):
                print(f"round {r + 1}/{rounds}", flush=True)
                for _, fn in steps:
                    fn(r)
                    if not self.gw.child.alive():
                        raise RuntimeError(f"gateway died:\n{self.gw.child.tail()}")
                if ledger_gateways:
                    self.s7_ledger(r, ledger_gateways)
            self.results["gateway_final"] = {
                "rss_mib": round((proc_status_kib(self.gw.pid, "VmRSS") or 0) / 1024, 1),
                "lifetime_peak_rss_mib": round((proc_status_kib(self.gw.pid, "VmHWM") or 0) / 1024, 1)}
        finally:
            for child in reversed(children):
                child.stop()
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(shm_root, ignore_errors=True)
        self.results["machine"] = machine()
        self.results["run"] = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                               "quick": self.quick, "rounds": 1 if self.quick else args.rounds, "pinned": self.pin,
                               "wall_s": round(time.time() - started, 1)}
        self.results["summary"] = summarize(self.results)
        return self.results


# --------------------------------------------------------------------------- summary


def pick(rep: dict[str, Any], path: str) -> Any:
    value: Any = rep
    for part in path.split("."):
        if value is None:
            return None
        value = value.get(part) if isinstance(value, dict) else None
    return value


def med(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    sc = results["scenarios"]
    out: dict[str, Any] = {}

    def paired(name: str, path: str, a: str = "gateway", b: str = "direct") -> dict[str, Any]:
        rounds = sc.get(name, [])
        av = [pick(r[a], path) for r in rounds]
        bv = [pick(r[b], path) for r in rounds]
        diffs = [x - y for x, y in zip(av, bv) if x is not None and y is not None]
        ratios = [x / y for x, y in zip(av, bv) if x is not None and y]
        return {a: med(av), b: med(bv), "added": med(diffs), "ratio": med(ratios), "rounds": len(rounds)}

    def gw_target(name: str, field: str, side: str = "gateway") -> float | None:
        values = []
        for r in sc.get(name, []):
            targets = r[side]["targets"]
            if targets:
                values.append(next(iter(targets.values())).get(field))
        return med(values)

    def errors(name: str, side: str) -> int:
        return sum(r[side]["error_count"] for r in sc.get(name, []))

    if "mock_capacity" in sc:
        out["mock_capacity"] = {"rps": med([pick(r["direct"], "rps") for r in sc["mock_capacity"]]),
                                "mock_cpu_us_per_request": med([next(iter(r["direct"]["targets"].values()))
                                                                .get("cpu_us_per_request")
                                                                for r in sc["mock_capacity"]])}
    if "sequential" in sc:
        out["sequential"] = {"p50_ms": paired("sequential", "latency_ms.p50"),
                             "p99_ms": paired("sequential", "latency_ms.p99"),
                             "gateway_cpu_us_per_request": gw_target("sequential", "cpu_us_per_request")}
    if "throughput" in sc:
        out["throughput"] = {"rps": paired("throughput", "rps"), "p50_ms": paired("throughput", "latency_ms.p50"),
                             "p99_ms": paired("throughput", "latency_ms.p99"),
                             "gateway_cpu_us_per_request": gw_target("throughput", "cpu_us_per_request"),
                             "gateway_core_share": gw_target("throughput", "cpu_share_of_core"),
                             "errors": {"gateway": errors("throughput", "gateway"),
                                        "direct": errors("throughput", "direct")}}
    for rate in (500, 1000):
        name = f"rate_{rate}"
        if name in sc:
            out[name] = {"p50_ms": paired(name, "latency_ms.p50"), "p99_ms": paired(name, "latency_ms.p99"),
                         "max_ms": paired(name, "latency_ms.max"),
                         "achieved_rps": paired(name, "rps"),
                         "gateway_cpu_us_per_request": gw_target(name, "cpu_us_per_request"),
                         "errors": {"gateway": errors(name, "gateway"), "direct": errors(name, "direct")}}
    for name in ("streaming", "many_streams", "many_streams_10"):
        if name in sc:
            out[name] = {"ok": paired(name, "ok"), "ttft_p50_ms": paired(name, "ttft_ms.p50"),
                         "ttft_p99_ms": paired(name, "ttft_ms.p99"),
                         "total_p50_ms": paired(name, "latency_ms.p50"),
                         "total_p99_ms": paired(name, "latency_ms.p99"),
                         "gap_p99_ms": paired(name, "gap_ms.p99"),
                         "stream_max_gap_p99_ms": paired(name, "stream_max_gap_ms.p99"),
                         "max_gap_ms": paired(name, "gap_ms.max"),
                         "events": paired(name, "events"),
                         "gateway_cpu_us_per_event": gw_target(name, "cpu_us_per_event"),
                         "gateway_core_share": gw_target(name, "cpu_share_of_core"),
                         "gateway_peak_rss_mib": gw_target(name, "peak_rss_mib"),
                         "errors": {"gateway": errors(name, "gateway"), "direct": errors(name, "direct")}}
    if "failover" in sc:
        fo: dict[str, Any] = {}
        for variant in ("direct", "healthy", "refused", "hang"):
            rounds = sc["failover"]
            fo[variant] = {k: med([pick(r[variant], p) for r in rounds]) for k, p in
                           (("rps", "rps"), ("p50_ms", "latency_ms.p50"), ("p99_ms", "latency_ms.p99"),
                            ("max_ms", "latency_ms.max"), ("over_250ms", "slow_over_250ms"))}
            fo[variant]["errors"] = sum(r[variant]["error_count"] for r in rounds)
        out["failover"] = fo
    if "peers" in sc:
        names = list(sc["peers"][0]["ttft"])
        fixed = ("direct", "nginx", "LiteLLM")
        names = [n for n in fixed if n in names] + sorted((n for n in names if n not in fixed),
                                                           key=lambda n: n == "Infer Mesh")
        out["peers"] = {"names": names, "rows": peer_table.summarize(sc["peers"], names)}
    if "ledger" in sc:
        lg: dict[str, Any] = {}
        for variant in ("disk", "tmpfs", "no-ledger"):
            rounds = [r for r in sc["ledger"] if variant in r]
            if not rounds:
                continue
            lg[variant] = {"rps": med([r[variant]["rps"] for r in rounds]),
                           "cpu_us_per_request": med([next(iter(r[variant]["targets"].values()))
                                                      .get("cpu_us_per_request") for r in rounds]),
                           "errors": sum(r[variant]["error_count"] for r in rounds)}
        if "disk" in lg and "no-ledger" in lg:
            rounds = [r for r in sc["ledger"] if r["no-ledger"]["rps"] and r["no-ledger"]["ok"]]
            lg["disk_vs_no_ledger_rps_ratio"] = med([r["disk"]["rps"] / r["no-ledger"]["rps"] for r in rounds])
            lg["tmpfs_vs_no_ledger_rps_ratio"] = med([r["tmpfs"]["rps"] / r["no-ledger"]["rps"] for r in rounds])
            lg["disk_vs_no_ledger_cpu_ratio"] = med([
                next(iter(r["disk"]["targets"].values()))["cpu_us_per_request"]
                / next(iter(r["no-ledger"]["targets"].values()))["cpu_us_per_request"] for r in rounds])
        out["ledger"] = lg
    if "workers" in sc:
        out["workers"] = workers_scenario.summarize(sc["workers"], med)
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pycurl
    import tornado
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "tornado": tornado.version, "pycurl": pycurl.version,
            "loadavg_at_end": os.getloadavg()}


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    m = results["machine"]
    run = results["run"]
    lines = [f"Run {run['date']}, {'quick (1 short round)' if run['quick'] else str(run['rounds']) + ' rounds'}, "
             f"{'gateway pinned to CPU 0, mock + load generator to CPU 1' if run['pinned'] else 'unpinned'}; "
             f"{m['nproc']} × {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, tornado {m['tornado']}, "
             f"{m['pycurl'].split()[0]} ({m['pycurl'].split()[1]}). Medians over rounds; \"added\" and "
             f"\"ratio\" are medians of the per-round gateway − direct and gateway / direct.", "",
             "| # | scenario | metric | gateway | direct | added | ratio |", "|---|---|---|---|---|---|---|"]

    def row(num: str, name: str, metric: str, p: dict[str, Any] | None, unit: str = "") -> None:
        if not p:
            return
        lines.append(f"| {num} | {name} | {metric} | {fmt(p.get('gateway'))}{unit} | {fmt(p.get('direct'))}{unit} | "
                     f"{fmt(p.get('added'))}{unit} | {fmt(p.get('ratio'))} |")

    def plain(num: str, name: str, metric: str, value: Any, unit: str = "") -> None:
        lines.append(f"| {num} | {name} | {metric} | {fmt(value)}{unit} | | | |")

    if "startup" in results:
        plain("0", "startup", "process start → first 200 /healthz", results["startup"]["gateway_startup_ms"], " ms")
        plain("0", "startup", "idle RSS", results["startup"]["gateway_idle_rss_mib"], " MiB")
        if "gateway_rss_after_first_request_mib" in results["startup"]:
            plain("0", "startup", "RSS 1 s after the first relayed request",
                  results["startup"]["gateway_rss_after_first_request_mib"], " MiB")
    if "mock_capacity" in s:
        lines.append(f"| 0 | mock upstream alone (64 conns, generator on the other core) | req/s | | "
                     f"{fmt(s['mock_capacity']['rps'])} | | |")
    if "sequential" in s:
        q = s["sequential"]
        row("1", "sequential, 1 conn", "p50", q["p50_ms"], " ms")
        row("1", "sequential, 1 conn", "p99", q["p99_ms"], " ms")
        plain("1", "sequential, 1 conn", "gateway CPU / request", q["gateway_cpu_us_per_request"], " µs")
    if "throughput" in s:
        q = s["throughput"]
        row("2", "throughput, 64 conns", "req/s", q["rps"])
        row("2", "throughput, 64 conns", "p50", q["p50_ms"], " ms")
        row("2", "throughput, 64 conns", "p99", q["p99_ms"], " ms")
        plain("2", "throughput, 64 conns", "gateway CPU / request", q["gateway_cpu_us_per_request"], " µs")
        plain("2", "throughput, 64 conns", "errors (gateway / direct)",
              f"{q['errors']['gateway']} / {q['errors']['direct']}")
    for rate in (500, 1000):
        q = s.get(f"rate_{rate}")
        if q:
            label = f"open loop {rate}/s"
            row("3", label, "p50", q["p50_ms"], " ms")
            row("3", label, "p99", q["p99_ms"], " ms")
            row("3", label, "max", q["max_ms"], " ms")
            row("3", label, "achieved req/s", q["achieved_rps"])
            plain("3", label, "gateway CPU / request", q["gateway_cpu_us_per_request"], " µs")
            plain("3", label, "errors (gateway / direct)", f"{q['errors']['gateway']} / {q['errors']['direct']}")
    for key, label, num in (("streaming", "100 streams × 200 events @ 20 ms", "4"),
                            ("many_streams", "1,000 streams @ ~30 events/s", "5"),
                            ("many_streams_10", "1,000 streams @ 10 events/s", "5b")):
        q = s.get(key)
        if q:
            row(num, label, "streams completed", q["ok"])
            row(num, label, "time to first token p50", q["ttft_p50_ms"], " ms")
            row(num, label, "time to first token p99", q["ttft_p99_ms"], " ms")
            row(num, label, "total time p50", q["total_p50_ms"], " ms")
            row(num, label, "total time p99", q["total_p99_ms"], " ms")
            row(num, label, "gap between chunks p99", q["gap_p99_ms"], " ms")
            row(num, label, "per-stream max gap p99", q["stream_max_gap_p99_ms"], " ms")
            row(num, label, "largest gap", q["max_gap_ms"], " ms")
            plain(num, label, "gateway CPU / relayed event", q["gateway_cpu_us_per_event"], " µs")
            plain(num, label, "gateway share of its core", q["gateway_core_share"])
            plain(num, label, "gateway peak RSS", q["gateway_peak_rss_mib"], " MiB")
            plain(num, label, "errors (gateway / direct)", f"{q['errors']['gateway']} / {q['errors']['direct']}")
    if "peers" in s:
        lines += ["", "Peers (medians over rounds; \"+\" is added to the direct figure of the same round):", "",
                  peer_table.markdown(s["peers"]["rows"], s["peers"]["names"]).rstrip("\n")]
    if "failover" in s:
        fo = s["failover"]
        lines += ["", "Failover (16 connections, closed loop; breaker: 3 failures, open 5 s; "
                  "hang node first_byte_timeout 0.5 s):", "",
                  "| target | req/s | p50 | p99 | max | requests > 250 ms | errors |", "|---|---|---|---|---|---|---|"]
        labels = {"direct": "mock directly", "healthy": "gateway, both nodes healthy",
                  "refused": "gateway, first node refuses connections", "hang": "gateway, first node hangs"}
        for variant, label in labels.items():
            q = fo[variant]
            lines.append(f"| {label} | {fmt(q['rps'])} | {fmt(q['p50_ms'])} ms | {fmt(q['p99_ms'])} ms | "
                         f"{fmt(q['max_ms'])} ms | {fmt(q['over_250ms'])} | {q['errors']} |")
    if "ledger" in s:
        lg = s["ledger"]
        lines += ["", "Ledger (64 connections, closed loop; one gateway process per variant, same config):", "",
                  "| variant | req/s | gateway CPU / request | errors |", "|---|---|---|---|"]
        labels = {"disk": "ledger + journal + usage log on disk (/tmp, ext4/virtio)",
                  "tmpfs": "same, state.dir on tmpfs (/dev/shm)",
                  "no-ledger": "ledger money path stubbed (reserve/settle/release no-ops)"}
        for variant, label in labels.items():
            if variant in lg:
                q = lg[variant]
                lines.append(f"| {label} | {fmt(q['rps'])} | {fmt(q['cpu_us_per_request'])} µs | {q['errors']} |")
        if "disk_vs_no_ledger_rps_ratio" in lg:
            lines += ["", f"Throughput with the ledger on disk / ledger off: {fmt(lg['disk_vs_no_ledger_rps_ratio'], 3)}; "
                      f"on tmpfs / off: {fmt(lg['tmpfs_vs_no_ledger_rps_ratio'], 3)}; CPU per request disk / off: "
                      f"{fmt(lg['disk_vs_no_ledger_cpu_ratio'], 3)}."]
    if "workers" in s:
        lines += workers_scenario.markdown(s["workers"], fmt)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))  # inherited by every child


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-gateway-without-ledger"]:
        serve_without_ledger(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round of every scenario (smoke run)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every scenario (default 3)")
    parser.add_argument("--rate-duration", type=float, help="seconds per fixed-rate run (default 30; quick 5)")
    parser.add_argument("--stream-procs", type=int, default=1, help="load generator processes for scenario 5")
    parser.add_argument("--only", help="comma list of: mock,sequential,throughput,rate,streaming,many,failover,"
                                       "ledger,peers,workers (bench/workers.py: --workers 2 on Redis vs 1 embedded worker)")
    parser.add_argument("--compare-gateway", metavar="DIR",
                        help="also measure the gateway.py of this source tree in the peer table (e.g. an older "
                             "commit: git archive <commit> | tar -x -C DIR)")
    parser.add_argument("--compare-label", default="Infer Mesh before", help="its column's name")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--disk-dir", default="/tmp", help="where the on-disk state dir goes (default /tmp)")
    parser.add_argument("--out", default=str(RESULTS / "latest.json"))
    args = parser.parse_args(argv)
    raise_nofile()
    if not args.no_pin:
        if len(os.sched_getaffinity(0) | {0, 1}) < 2 or (os.cpu_count() or 1) < 2:
            args.no_pin = True
        else:
            os.sched_setaffinity(0, {1})  # this process and the generators it forks
    results = Bench(args).run()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    table = markdown(results)
    out.with_suffix(".md").write_text(table)
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
