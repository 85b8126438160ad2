"""Scale-out fixtures: a real ``redis-server`` on a free loopback port, gateways (in-process or real processes) on it.

Every test gets its own Redis (``--save '' --appendonly no`` in a tmp dir), so
nothing leaks between tests; tests are skipped only when the ``redis-server``
binary is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.conftest import ROOT, RunningGateway, wait_for  # noqa: F401  (re-exported for the scale tests)
from tests.support.http import request
from tests.support.process import GatewayProcess

KEY = "sk-scale-test-00000000000000000000"
ADMIN_TOKEN = "admin-token-for-scale-tests-0123456789"
REDIS_SERVER = shutil.which("redis-server")

needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """``redis-server`` on 127.0.0.1:<free port>; ``stop``/``start`` simulate an outage (``save`` keeps the data)."""

    def __init__(self, directory: Path, password: str | None = None, unix_socket: Path | None = None) -> None:
        """``password``: ``requirepass``; ``unix_socket``: also listen on that path."""
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.password = password
        self.options = ["--requirepass", password] if password else []
        if unix_socket is not None:
            self.options += ["--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",  # type: ignore[list-item]
                                      "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                                      "--protected-mode", "no", "--loglevel", "warning", *self.options],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except Exception:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def client(self) -> Any:
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True,
                           socket_timeout=5)

    def save(self) -> None:
        self.client().save()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def close(self) -> None:
        self.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis")
    yield server
    server.close()


def redis_config(tmp_path: Path, redis_url: str, *, balance_usd: str = "100", token_delay_ms: int = 0,
                 price: dict[str, Any] | None = None, **state: Any) -> dict[str, Any]:
    """Two in-process mock nodes, one model, the admin API on, one funded account, the Redis ledger."""
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"token": ADMIN_TOKEN},
        "state": {"dir": str(tmp_path / "state"), "backend": "redis", "redis_url": redis_url, **state},
        "logging": {"access_log": False},
        "nodes": [{"id": "mock-a", "provider": "mock", "mock": {"token_delay_ms": token_delay_ms},
                   "models": ["gpt-4o-mini"]},
                  {"id": "mock-b", "provider": "mock", "mock": {"token_delay_ms": token_delay_ms},
                   "models": ["gpt-4o-mini"]}],
        "models": {"gpt-4o-mini": {"price": price or {"input": 0.15, "output": 0.60}}},
        "accounts": [{"id": "scale", "balance_usd": balance_usd, "keys": [KEY]}],
    }


def http_call(port: int, method: str, path: str, body: Any = None, key: str | None = KEY,
              headers: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, Any]:
    """(status, JSON body or raw bytes) of one request (``tests.support.http``)."""
    reply = request(port, method, path, body, key=key, headers=headers, timeout=timeout)
    return reply.status, reply.parsed()


def admin_call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return http_call(port, method, path, body, key=None, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})



def port_of(gateway: Any) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


def wait_ready(port: int, timeout: float = 10) -> None:
    def ready() -> bool:
        try:
            return http_call(port, "GET", "/readyz", key=None)[0] == 200
        except OSError:
            return False
    assert wait_for(ready, timeout), "gateway did not become ready"


@pytest.fixture
def start_redis_gateway(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    """An in-process gateway (conftest's RunningGateway) on a config dict; waits until /readyz is 200."""
    running: list[RunningGateway] = []

    def start(config: dict[str, Any], ready: bool = True) -> RunningGateway:
        path = tmp_path / f"gateway-{len(running)}.yaml"
        path.write_text(yaml.safe_dump(config))
        gateway = RunningGateway(path)
        running.append(gateway)
        if ready:
            wait_ready(port_of(gateway))
        return gateway

    yield start
    for gateway in running:
        gateway.stop()


def start_process(config: dict[str, Any], directory: Path, *args: str, port: int | None = None,
                  env: dict[str, str] | None = None) -> GatewayProcess:
    """``python gateway.py`` (``tests.support.process``) on a config dict, on a free fixed port (``--workers``
    binds it once per worker), returned once ``/readyz`` answers 200 (the Redis ledger is bootstrapped)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    process = GatewayProcess(path, *args, port=port or free_port(), env=env)
    wait_ready(process.port, 20)
    return process


@pytest.fixture
def gateway_processes() -> Iterator[list[GatewayProcess]]:
    """A list the test appends its GatewayProcess objects to; all are stopped afterwards."""
    processes: list[GatewayProcess] = []
    yield processes
    for process in processes:
        process.close()


def chat(port: int, key: str = KEY, stream: bool = False, max_tokens: int = 5, **extra: Any) -> tuple[int, Any]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "spend it"}], "max_tokens": max_tokens,
            "stream": stream, **extra}
    return http_call(port, "POST", "/v1/chat/completions", body, key=key)
