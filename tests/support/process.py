"""One helper for ``python gateway.py`` as a subprocess (signals, ``kill -9``, ``--workers``).

``GatewayProcess`` starts the real entry point, collects its stdout and stderr
on a thread, and is started once the gateway prints its address (``Infer Mesh
listening on http://...``): a deadline, never a fixed sleep. A test can wait for
a given output line or lifecycle event the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tests.support.http import Reply, request

ROOT = Path(__file__).resolve().parent.parent.parent
LISTENING = "listening on http://"


class GatewayProcess:
    def __init__(self, config_path: Path, *args: str, port: int = 0, env: dict[str, str] | None = None,
                 start_timeout: float = 20) -> None:
        self.config_path = config_path
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "gateway.py"), "--config", str(config_path), "--host", "127.0.0.1",
             "--port", str(port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=config_path.parent,
            env={**os.environ, **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()
        try:
            first = self.wait_line(lambda line: LISTENING in line, start_timeout)
        except BaseException:
            self.close()  # never leave a supervisor and its workers behind a failed start
            raise
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

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

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

    def request(self, method: str, path: str, body: Any = None, *, key: str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 20) -> Reply:
        return request(self.port, method, path, body, key=key, headers=headers, timeout=timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """``kill -9``: no drain, no final snapshot."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        """SIGTERM (a drain), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
