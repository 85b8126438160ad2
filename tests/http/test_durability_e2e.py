"""The ledger survives ``kill -9``: ``python gateway.py`` as a real process, killed under load, restarted.

What a client can rely on after a crash: every response it received in full
was charged (the charge is journaled before the response ends), and nothing
was charged that no request caused. Requests in flight at the kill may or may
not have been charged, each at most once. Credits are applied once per
reference, before and after a restart.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.ledger.money import usd_to_nano
from tests.conftest import base_config
from tests.support.process import GatewayProcess

ADMIN_TOKEN = "admin-token-for-durability-tests-0123456789"
KEY = "sk-durability-000000000000000000"
INITIAL_USD = "1000"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "keep my money safe"}], "max_tokens": 8}


class DurableGateway(GatewayProcess):
    """``python gateway.py`` (``tests.support.process``) with this file's account and admin token at hand."""

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        reply = self.request(method, path, body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        return reply.status, reply.parsed()

    def balance_nano(self, key: str = KEY) -> int:
        reply = self.request("GET", "/v1/balance", key=key)
        assert reply.status == 200, reply.body
        assert reply.json()["reserved_usd"] == "0.000000"
        return usd_to_nano(reply.json()["balance_usd"])

    def chat_cost_nano(self, stream: bool) -> int:
        """One request, read in full; its cost from the header (non-streaming) or the usage record."""
        reply = self.request("POST", "/v1/chat/completions", {**BODY, "stream": stream}, key=KEY)
        assert reply.status == 200
        if not stream:
            return usd_to_nano(reply.headers["x-infermesh-cost-usd"])
        assert reply.body.rstrip().endswith(b"data: [DONE]")
        usage = self.request("GET", "/v1/usage?limit=1", key=KEY).json()
        return usd_to_nano(usage["data"][0]["cost_usd"])


@pytest.fixture
def launch(upstream, tmp_path, request):
    """``launch(**config overrides)`` -> a started gateway process; every one is stopped after the test."""
    name = "durable-" + request.node.name
    upstream.control(name, first_byte_ms=5, chunk_delay_ms=2)  # requests take a few ms: some are in flight
    nodes = [{"id": "up", "provider": "openai", "base_url": upstream.base(name), "api_key": "sk-upstream",
              "models": {"gpt-4o-mini": "up-model"}}]
    config = base_config(tmp_path / "state", nodes, admin={"token": ADMIN_TOKEN},
                         state={"dir": str(tmp_path / "state"), "snapshot_interval_s": 0.2},
                         logging={"access_log": True},
                         accounts=[{"id": "durable", "balance_usd": INITIAL_USD, "keys": [KEY]}])
    config["models"] = {"gpt-4o-mini": config["models"]["gpt-4o-mini"]}
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    started: list[DurableGateway] = []

    def start() -> DurableGateway:
        process = DurableGateway(config_path)
        started.append(process)
        return process

    start.state_dir = tmp_path / "state"  # type: ignore[attr-defined]
    start.config_path = config_path  # type: ignore[attr-defined]
    start.started = started  # type: ignore[attr-defined]
    yield start
    for process in started:
        process.close()


class Load:
    """A few client threads, each sending requests back to back on its own connection until told to stop.

    ``completed`` counts responses read in full (200, the whole body); ``broken``
    counts requests cut off by the kill (at most one per thread, plus possibly
    one refused connection per thread): those are the ones that may or may not
    have been charged.
    """

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.completed = {False: 0, True: 0}
        self.broken = 0
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i % 2 == 1,)) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, stream: bool) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({**BODY, "stream": stream})
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            try:
                conn.request("POST", "/v1/chat/completions", body, headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                with self._lock:
                    self.broken += 1
                return
            with self._lock:
                if response.status == 200 and (not stream or data.rstrip().endswith(b"data: [DONE]")):
                    self.completed[stream] += 1
                else:
                    self.unexpected.append(f"{response.status} {data[:200]!r}")
                    return

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in self._threads)


def test_kill_9_under_load_loses_no_settled_charge(launch):
    rng = random.Random(0x1ED6E5)
    gateway = launch()
    cost = {False: gateway.chat_cost_nano(stream=False), True: gateway.chat_cost_nano(stream=True)}
    assert cost[False] > 0 and cost[True] > 0
    expected = usd_to_nano(INITIAL_USD) - cost[False] - cost[True]
    assert gateway.balance_nano() == expected
    total_completed = 0
    for _ in range(5):
        load = Load(gateway.port)
        time.sleep(rng.uniform(0.1, 0.9))
        gateway.kill()
        load.join()
        assert not load.unexpected, load.unexpected[:3]
        assert sum(load.completed.values()) > 0  # the kill really happened under load
        total_completed += sum(load.completed.values())
        gateway = launch()  # the same state directory
        balance = gateway.balance_nano()
        charged_in_full = load.completed[False] * cost[False] + load.completed[True] * cost[True]
        most = expected - charged_in_full  # every response a client read in full was charged
        least = most - load.broken * max(cost.values())  # plus, at most, each request cut off by the kill
        assert least <= balance <= most, (least, balance, most, load.completed, load.broken)
        expected = balance
    assert total_completed > 20
    # With nothing in flight at the kill, the balance is exact to the nano-dollar.
    for index in range(6):
        expected -= gateway.chat_cost_nano(stream=index % 2 == 1)
    gateway.kill()
    gateway = launch()
    assert gateway.balance_nano() == expected
    # The key's own spend was replayed the same way as the balance.
    status, account = gateway.admin("GET", "/admin/accounts/durable")
    assert usd_to_nano(account["keys"][0]["spent_usd"]) == usd_to_nano(INITIAL_USD) - expected
    # And a clean stop (SIGTERM: drain, final snapshot) agrees too.
    gateway.close()
    assert gateway.proc.returncode == 0
    assert launch().balance_nano() == expected


def test_credit_applied_once_across_restarts(launch):
    gateway = launch()
    initial = gateway.balance_nano()
    first = gateway.admin("POST", "/admin/accounts/durable/credit", {"amount_usd": "25.5", "reference": "wire-1"})
    assert first[0] == 200 and first[1]["applied"] is True
    again = gateway.admin("POST", "/admin/accounts/durable/credit", {"amount_usd": "25.5", "reference": "wire-1"})
    assert again[0] == 200 and again[1]["applied"] is False
    time.sleep(0.5)  # a snapshot (every 0.2 s) now holds wire-1
    second = gateway.admin("POST", "/admin/accounts/durable/credit", {"amount_usd": "0.000000001",
                                                                       "reference": "wire-2"})
    assert second[1]["applied"] is True  # wire-2 is only in the journal when the process dies
    expected = initial + usd_to_nano("25.5") + 1
    assert gateway.balance_nano() == expected
    gateway.kill()
    for restart in ("kill -9", "SIGTERM"):
        gateway = launch()
        assert gateway.balance_nano() == expected, restart
        for reference, amount in (("wire-1", "25.5"), ("wire-2", "0.000000001")):
            status, body = gateway.admin("POST", "/admin/accounts/durable/credit",
                                         {"amount_usd": amount, "reference": reference})
            assert status == 200 and body["applied"] is False, (restart, reference)
            assert usd_to_nano(body["balance_usd"]) == expected
        gateway.close()


def test_created_key_is_not_on_disk_or_in_logs_after_a_crash(launch):
    gateway = launch()
    status, _ = gateway.admin("POST", "/admin/accounts", {"id": "fresh", "balance_usd": "1"})
    assert status == 201
    status, created = gateway.admin("POST", "/admin/accounts/fresh/keys", {"name": "ci"})
    assert status == 201
    key = created["key"]
    assert gateway.request("POST", "/v1/chat/completions", BODY, key=key).status == 200
    assert gateway.request("POST", "/v1/chat/completions", {**BODY, "stream": True}, key=key).status == 200
    assert gateway.request("GET", "/v1/usage", key=key).status == 200
    assert gateway.request("POST", "/v1/chat/completions", {**BODY, "model": "nope"}, key=key).status == 404
    gateway.kill()  # no final snapshot: the key exists only in the journal
    gateway = launch()
    assert gateway.balance_nano(key) < usd_to_nano("1")  # the key survived the crash (as a hash)
    gateway.admin("DELETE", f"/admin/keys/{created['key_id']}")
    assert gateway.request("GET", "/v1/balance", key=key).status == 401
    gateway.close()
    state_files = [path for path in Path(launch.state_dir).rglob("*") if path.is_file()]
    assert any(path.name.startswith("journal-") for path in state_files)
    assert '"kind":"access"' in launch.started[0].output()
    for name, data in [(path.name, path.read_bytes()) for path in state_files] + [
            (f"gateway output {n}", process.output().encode()) for n, process in enumerate(launch.started)]:
        assert key.encode() not in data, f"{name} holds the key"
        assert KEY.encode() not in data, f"{name} holds the config key"
    assert os.stat(launch.state_dir).st_mode & 0o077 == 0  # the state directory is private


def test_kill_9_loses_at_most_the_last_usage_batch_and_no_charge(launch):
    """Usage records are written in batches off the request path; a crash may lose only the last window.

    Every charge in the journal at the kill must survive the restart (the balance
    test above); every charged request whose usage record is missing after the
    restart must have been settled within the last batch window before the kill
    (``state.usage_batch_s``, 0.2 s by default) plus one commit and the kill's own
    latency: 1 s of slack here, because timings belong in bench/usage_crash.py.
    """
    config = yaml.safe_load(launch.config_path.read_text())
    config["state"]["snapshot_interval_s"] = 60  # every charge of the run stays in the journal, to compare
    launch.config_path.write_text(yaml.safe_dump(config))
    gateway = launch()
    load = Load(gateway.port)
    time.sleep(1.0)
    killed_at = time.time()
    gateway.kill()
    load.join()
    assert sum(load.completed.values()) > 20
    charges = {}
    for path in sorted(launch.state_dir.glob("journal-*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("op") == "charge":
                charges[entry["request_id"]] = entry["at"]
    gateway = launch()
    status, usage = gateway.admin("GET", "/admin/usage?account=durable&limit=1000")
    assert status == 200
    recorded = {record["request_id"] for record in usage["data"]}
    lost = {request_id: at for request_id, at in charges.items() if request_id not in recorded}
    assert len(charges) > 20 and len(lost) < len(charges)
    oldest_lost_age = max((killed_at - at for at in lost.values()), default=0.0)
    assert oldest_lost_age <= 0.2 + 1.0, (len(lost), oldest_lost_age)
