"""One HTTP helper for tests that talk to a gateway on loopback without an SDK."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        """The body as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    def parsed(self) -> Any:
        """The body as JSON when it is JSON, else the raw bytes (an SSE stream, a CSV)."""
        try:
            return self.json()
        except ValueError:
            return self.body


def request(port: int, method: str, path: str, body: Any = None, *, key: str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 20) -> Reply:
    """One request to 127.0.0.1:``port``; ``key`` goes in ``Authorization: Bearer`` unless headers set one."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        all_headers.setdefault("Authorization", f"Bearer {key}")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, None if body is None else json.dumps(body), all_headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()
