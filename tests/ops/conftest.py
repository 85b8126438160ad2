"""``python gateway.py`` as systemd runs it: a subprocess, signals, JSON lines on stdout.

``GatewayProcess`` starts the real entry point on a free port, collects its
stdout on a thread and lets a test wait for a given lifecycle event (with a
deadline, never a fixed sleep). ``open_stream`` starts a streamed chat
completion and returns once its first event has arrived.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.conftest import ROOT

from tests.support.keys import DEMO_KEY


def demo_config(tmp_path: Path, token_delay_ms: int | None = None) -> dict[str, Any]:
    """``conf/gateway.yaml`` as shipped, with its state in ``tmp_path`` (and slower mock tokens if asked)."""
    config = yaml.safe_load((ROOT / "conf" / "gateway.yaml").read_text())
    config["state"]["dir"] = str(tmp_path / "state")
    config["listen"]["port"] = 0
    if token_delay_ms is not None:
        for node in config["nodes"]:
            node["mock"]["token_delay_ms"] = token_delay_ms
    return config


class GatewayProcess:
    def __init__(self, config_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "gateway.py"), "--config", str(config_path), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=config_path.parent,
            env={**os.environ, **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()
        first = self.wait_line(lambda line: "listening on http://" in line, 15)
        self.url = first.split("listening on ", 1)[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        """The first output line (from the start) matching ``predicate``; fails at the deadline or EOF."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(f"no matching line within {timeout}s; output:\n" + "\n".join(self.lines))
                self._changed.wait(left)

    def json_lines(self) -> list[dict[str, Any]]:
        with self._changed:
            lines = list(self.lines)
        return [json.loads(line) for line in lines if line.startswith("{")]

    def events(self) -> list[str]:
        return [line["event"] for line in self.json_lines() if line.get("kind") == "event"]

    def wait_event(self, name: str, timeout: float = 10, nth: int = 1) -> dict[str, Any]:
        """The ``nth`` lifecycle event called ``name`` (counted from the start of the output)."""
        count = 0

        def match(text: str) -> bool:
            nonlocal count
            if text.startswith("{") and json.loads(text).get("event") == name:
                count += 1
            return count == nth

        return json.loads(self.wait_line(match, timeout))

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        return self.proc.wait(timeout)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers={"Authorization": f"Bearer {DEMO_KEY}",
                                                              "Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Stream:
    """A streamed chat completion read as it arrives."""

    def __init__(self, port: int, model: str, prompt: str, key: str = DEMO_KEY) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True}
        self.conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        self.received = b""
        while b"data: " not in self.received:  # the first event: the stream is under way
            line = self.response.readline()
            assert line, "the stream ended before its first event"
            self.received += line

    def rest(self) -> bytes:
        """Everything until the server ends the response (cleanly or not)."""
        try:
            self.received += self.response.read()
        except http.client.IncompleteRead as exc:
            self.received += exc.partial
        finally:
            self.conn.close()
        return self.received


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start ``gateway.py`` from a config dict; killed after the test if it is still running."""
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> GatewayProcess:
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        process = GatewayProcess(path, *args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
