"""One JSON line per request on stdout, and lifecycle events.

Every line is one JSON object with ``ts`` (Unix seconds) and ``kind``:

- ``access``: one per client request (``logging.access_log``, on by default);
- ``event``: a lifecycle event with a ``level`` (``info``, ``warning``,
  ``error``): ``started`` (with the address), ``reloaded`` /
  ``reload_rejected``, ``draining``, ``drain_timeout``, ``snapshot``,
  ``stopped``;
- ``log``: a record from Python's ``logging`` (libraries, the ledger's
  fsync thread), once ``install_json_logging`` routed it here.

Never API keys (a configured upstream key or the admin token in a line is
``[redacted]``, see ``gateway/redact.py``), never prompt or completion text: the record is built from an
explicit list of fields, not from the request. When the access log is off,
``AccessLog.write`` is never called at all (the caller holds ``None``), so it
costs nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

from gateway import redact

ACCESS_FIELDS = ("request_id", "account", "key_id", "endpoint", "model", "node", "attempts", "status",
                 "input_tokens", "output_tokens", "cached_tokens", "cost_usd", "latency_ms", "ttft_ms",
                 "stream", "error")


def _loggable(value: Any) -> str:
    """A value orjson cannot encode (bytes, a Path, an exception), as text: a log line must never raise."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _json_line(line: dict[str, Any]) -> str:
    """``line`` as one JSON log line, secrets redacted (UTF-8 as is: journald and ``jq`` read it)."""
    return redact.current().text(orjson.dumps(line, default=_loggable).decode()) + "\n"


class AccessLog:
    """One JSON line per request. Written after the answer, so a failing write (stdout closed, a broken pipe)
    must never raise into the request: the line is dropped and counted, as ``JsonLogHandler`` does."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: whatever sys.stdout is at write time
        self.dropped = 0  # lines that could not be written

    def write(self, record: dict[str, Any]) -> None:
        line = {"ts": round(time.time(), 3), "kind": "access"}
        for name in ACCESS_FIELDS:
            value = record.get(name)
            if value is not None:
                line[name] = value
        stream = self._stream or sys.stdout
        try:
            stream.write(_json_line(line))
            stream.flush()
        except (OSError, ValueError, TypeError):  # stdout closed or broken, or text orjson refuses (TypeError:
            # a lone surrogate in an error message): the request is answered, the line is lost
            self.dropped += 1


def log_event(event: str, level: str = "info", **fields: Any) -> None:
    """A lifecycle event (start, reload, drain, snapshot, stop) as one JSON line."""
    line = {"ts": round(time.time(), 3), "kind": "event", "level": level, "event": event, **fields}
    sys.stdout.write(_json_line(line))
    sys.stdout.flush()


class JsonLogHandler(logging.Handler):
    """Python ``logging`` records as JSON lines on stdout, next to the events (one stream for journald)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line: dict[str, Any] = {"ts": round(record.created, 3), "kind": "log",
                                    "level": record.levelname.lower(), "logger": record.name,
                                    "message": record.getMessage()}
            if record.exc_info:
                line["exception"] = logging.Formatter().formatException(record.exc_info)
            stream = self._stream or sys.stdout
            stream.write(_json_line(line))
            stream.flush()
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def install_json_logging(level: int = logging.WARNING) -> None:
    """Route the root logger to ``JsonLogHandler``; for the gateway process, not for tests."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(JsonLogHandler())
    root.setLevel(level)
