"""Real things to test against: the mock upstream as a process, the gateway on a loopback port.

The gateway runs its own IOLoop in a background thread, so tests can use the
official (synchronous) OpenAI and Anthropic SDKs, plain HTTP clients and raw
sockets against it exactly as users do.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import eventloop  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.server import Server  # noqa: E402

from tests.support.keys import TEST_KEY  # noqa: E402
from tests.support.logs import guard  # noqa: E402


class MockUpstream:
    """``bench/mock_upstream.py`` in a subprocess; ``node(name)`` gives a virtual node's base URL."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "mock_upstream.py"), "--port", "0"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        self.url = line.strip().rsplit(" ", 1)[-1]

    def base(self, name: str, suffix: str = "/v1") -> str:
        return f"{self.url}/n/{name}{suffix}"

    def control(self, name: str, **behaviour: Any) -> None:
        self._call("POST", f"/_control/{name}", behaviour)

    def stats(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/_stats/{name}")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


class RunningGateway:
    """A gateway serving on 127.0.0.1 from a background thread with its own event loop."""

    def __init__(self, config_path: Path) -> None:
        self.config = load_config(config_path)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server: Server | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self.error:
            raise RuntimeError(f"gateway did not start: {self.error}")
        self.url = f"http://127.0.0.1:{self.server.port}"  # type: ignore[union-attr]

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.server = Server(self.config)
                self.server.start("127.0.0.1", 0)
            except BaseException as exc:  # surfaced to the test thread
                self.error = exc
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await self.server.drain(grace_s=2)

        eventloop.run(main())

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the gateway's loop thread (services are single-threaded) and return its result."""
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(fn), self._loop)  # type: ignore[arg-type]
        return future.result(10)

    @property
    def services(self) -> Any:
        return self.server.services  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop serving; fails the test if the gateway answered any 500 of its own (contract §4)."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        if self.server is not None and self.server.services.internal_errors:
            raise AssertionError(f"the gateway answered {self.server.services.internal_errors} internal error(s) "
                                 "(500); see the logged traceback")


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``condition`` until it is truthy or ``timeout`` passes; returns its last value (wait on events, not sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


async def _as_coroutine(fn: Callable[[], Any]) -> Any:
    result = fn()
    if inspect.isawaitable(result):  # the ledger backends are async (gateway/ledger/backend.py)
        result = await result
    return result


def base_config(state_dir: Path, nodes: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A small config: the given nodes, the usual catalogue, one funded test account."""
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "state": {"dir": str(state_dir), "snapshot_interval_s": 30},
        "logging": {"access_log": False},
        "nodes": nodes,
        "models": {
            "gpt-4o-mini": {"price": {"input": 0.15, "output": 0.60, "cached_input": 0.075}},
            "claude-sonnet-4-6": {"aliases": ["claude-sonnet-4.6"],
                                  "price": {"input": 3.00, "output": 15.00, "cached_input": 0.30,
                                            "cache_write": 3.75, "cache_write_1h": 6.00}},
            "text-embedding-3-small": {"kind": "embedding", "price": {"input": 0.02}},
        },
        "accounts": [{"id": "test", "balance_usd": 100, "keys": [TEST_KEY]}],
    }
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.fixture(autouse=True)
def no_unexpected_error_logs() -> Iterator[None]:
    """Fail the test on any ERROR log record it did not expect (``tests.support.logs.expect_log``)."""
    with guard() as errors:
        yield
    if errors.unexpected:
        pytest.fail("unexpected ERROR log records:\n" + errors.report(), pytrace=False)


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockUpstream]:
    mock = MockUpstream()
    yield mock
    mock.close()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    """Start a gateway from a config dict (see ``base_config``); stopped after the test."""
    running: list[RunningGateway] = []

    def start(config: dict[str, Any]) -> RunningGateway:
        path = tmp_path / f"gateway-{len(running)}.yaml"
        path.write_text(yaml.safe_dump(config))
        gateway = RunningGateway(path)
        running.append(gateway)
        return gateway

    yield start
    failures = []
    for gateway in running:
        try:
            gateway.stop()
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, failures


@pytest.fixture
def openai_gateway(upstream: MockUpstream, start_gateway: Callable[..., RunningGateway], tmp_path: Path,
                   request: pytest.FixtureRequest) -> RunningGateway:
    """One OpenAI-protocol node on the mock upstream (a node name unique to the test), plus a mock node."""
    name = request.node.name.replace("[", "_").replace("]", "_")
    nodes = [
        {"id": "up", "provider": "openai", "base_url": upstream.base(name), "api_key": "sk-upstream-secret",
         "models": {"gpt-4o-mini": "up-model", "claude-sonnet-4-6": "up-claude",
                    "text-embedding-3-small": "up-embed"}},
    ]
    gateway = start_gateway(base_config(tmp_path / "state", nodes))
    gateway.node_name = name  # type: ignore[attr-defined]
    return gateway
