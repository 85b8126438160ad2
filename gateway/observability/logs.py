"""One JSON line per request on stdout, and lifecycle events.

Never API keys, never prompt or completion text: the record is built from an
explicit list of fields, not from the request. When the access log is off,
``AccessLog.write`` is never called at all (the caller holds ``None``), so it
costs nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import ujson

ACCESS_FIELDS = ("request_id", "account", "key_id", "endpoint", "model", "node", "attempts", "status",
                 "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "latency_ms", "ttft_ms",
                 "stream", "error")


class AccessLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: whatever sys.stdout is at write time

    def write(self, record: dict[str, Any]) -> None:
        line = {"ts": round(time.time(), 3), "kind": "access"}
        for name in ACCESS_FIELDS:
            value = record.get(name)
            if value is not None:
                line[name] = value
        stream = self._stream or sys.stdout
        stream.write(ujson.dumps(line, escape_forward_slashes=False) + "\n")
        stream.flush()


def log_event(event: str, **fields: Any) -> None:
    """A lifecycle event (start, reload, drain, snapshot) as one JSON line."""
    sys.stdout.write(ujson.dumps({"ts": round(time.time(), 3), "kind": "event", "event": event, **fields},
                                 escape_forward_slashes=False) + "\n")
    sys.stdout.flush()
