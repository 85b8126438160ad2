"""``python gateway.py`` as systemd runs it: a subprocess, signals, JSON lines on stdout.

``gateway_process`` starts the real entry point (``tests.support.process.GatewayProcess``)
from a config dict. ``Stream`` starts a streamed chat completion and returns once its
first event has arrived.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from tests.conftest import ROOT
from tests.support.process import GatewayProcess

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
