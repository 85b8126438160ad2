"""Stalled readers cost bounded memory, and a full upstream pool answers a prompt 503.

The gateway runs as its own process (``gateway.py``) so its RSS is its own.
Timings are bench/stalled.py's business; here only the memory bound (a
number, generous) and what every client is answered.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.load import proc_status_kib
from bench.stalled import stall
from tests.support.keys import TEST_KEY
from tests.conftest import ROOT, MockUpstream, base_config, wait_for

STREAMS = 300
BOUND_MIB = 100  # generous: the budget is 300 MB for 1,000 streams; bench/README.md has the figure


def start(tmp_path: Path, config: dict) -> tuple[subprocess.Popen, int]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, str(ROOT / "gateway.py"), "--config", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(proc.stdout.readline().split("http://127.0.0.1:")[1].split()[0])  # type: ignore[union-attr]
    return proc, port


def get(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, json.dumps(body) if body else None,
                 {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def test_stalled_streams_cost_bounded_memory(upstream: MockUpstream, tmp_path: Path):
    upstream.control("stalled-flood", fault="endless")
    nodes = [{"id": "flood", "provider": "openai", "base_url": upstream.base("stalled-flood"), "api_key": "sk-up-x",
              "models": {"gpt-4o-mini": "m"}}]
    config = base_config(tmp_path / "state", nodes)
    config["models"] = {"gpt-4o-mini": config["models"]["gpt-4o-mini"]}
    config["logging"] = {"access_log": False}
    proc, port = start(tmp_path, config)
    sockets = []
    try:
        assert get(port, "GET", "/healthz")[0] == 200
        time.sleep(0.5)
        idle_kib = proc_status_kib(proc.pid, "VmRSS")
        sockets = stall(port, STREAMS, "gpt-4o-mini", TEST_KEY)  # the bench's client: a 4 KiB window, a request, never a read
        assert wait_for(lambda: upstream.stats("stalled-flood")["in_flight"] >= STREAMS, timeout=60)
        samples = [proc_status_kib(proc.pid, "VmRSS")]

        def settled() -> bool:  # every transfer paused: RSS stops moving
            samples.append(proc_status_kib(proc.pid, "VmRSS"))
            return abs(samples[-1] - samples[-2]) < 1024
        wait_for(settled, timeout=60, interval=1.0)
        assert get(port, "GET", "/healthz")[0] == 200  # still serving
        grown_mib = (samples[-1] - idle_kib) / 1024
        assert grown_mib < BOUND_MIB, f"{STREAMS} stalled streams grew the gateway by {grown_mib:.0f} MiB"
    finally:
        for sock in sockets:
            sock.close()
        upstream.control("stalled-flood", fault=None)
        # Clients gone: the gateway aborts every upstream transfer.
        wait_for(lambda: upstream.stats("stalled-flood")["in_flight"] == 0, timeout=30)
        proc.terminate()
        proc.wait(15)
    assert upstream.stats("stalled-flood")["in_flight"] == 0


@pytest.mark.parametrize("bound", ["max_clients", "max_inflight"])
def test_a_full_bound_is_a_prompt_503_with_retry_after(upstream: MockUpstream, tmp_path: Path, bound: str):
    upstream.control("stalled-hang", fault="hang")
    nodes = [{"id": "hang", "provider": "openai", "base_url": upstream.base("stalled-hang"), "api_key": "sk-up-x",
              "models": {"gpt-4o-mini": "m"}},
             {"id": "m", "provider": "mock", "models": ["claude-sonnet-4-6", "text-embedding-3-small"]}]
    config = base_config(tmp_path / "state", nodes)
    config["upstream"] = {"max_clients": 2} if bound == "max_clients" else {}
    config["limits"] = {"max_inflight": 2} if bound == "max_inflight" else {}
    config["logging"] = {"access_log": False}
    proc, port = start(tmp_path, config)
    hung = []
    try:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
        for _ in range(2):  # two requests that hold the only two places
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/v1/chat/completions", body,
                         {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"})
            hung.append(conn)
        assert wait_for(lambda: upstream.stats("stalled-hang")["in_flight"] == 2, timeout=20)
        status, headers, data = get(port, "POST", "/v1/messages",
                                    {"model": "claude-sonnet-4-6" if bound == "max_inflight" else "gpt-4o-mini",
                                     "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert json.loads(data)["error"]["type"] == "overloaded_error"
        assert get(port, "GET", "/healthz")[0] == 200
    finally:
        for conn in hung:
            conn.close()
        upstream.control("stalled-hang", fault=None)
        proc.terminate()
        proc.wait(15)
