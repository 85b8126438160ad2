"""Lifecycle events and Python log records: one JSON object per line on stdout, each with a level."""

from __future__ import annotations

import io
import json
import logging

from gateway.observability.logs import JsonLogHandler, log_event


def test_lifecycle_event_is_one_json_line_with_a_level(capsys):
    log_event("reload_rejected", level="error", problems=["models.x.price.input: must be >= 0"])
    log_event("snapshot", seq=7)
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["kind"] == "event" and first["event"] == "reload_rejected" and first["level"] == "error"
    assert first["problems"] == ["models.x.price.input: must be >= 0"] and first["ts"] > 0
    assert second["level"] == "info" and second["seq"] == 7


def test_python_log_records_become_json_lines_with_their_traceback():
    stream = io.StringIO()
    logger = logging.getLogger("infermesh.test-json-logs")
    logger.propagate = False
    logger.addHandler(JsonLogHandler(stream))
    try:
        logger.warning("disk %s is slow", "sda")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("fsync failed")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    warning, error = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert warning == {"ts": warning["ts"], "kind": "log", "level": "warning", "logger": "infermesh.test-json-logs",
                       "message": "disk sda is slow"}
    assert error["level"] == "error" and "ValueError: boom" in error["exception"]
