"""Lifecycle events and Python log records: one JSON object per line on stdout, each with a level."""

from __future__ import annotations

import io
import json
import logging

from gateway.observability.logs import AccessLog, JsonLogHandler, log_event


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


def test_a_field_orjson_cannot_encode_becomes_text_not_an_exception(capsys, tmp_path):
    """orjson refuses bytes and other objects; an event carrying one (an error's raw output, a path) is still
    logged, as text, because a log line must never raise into what it reports on."""
    log_event("snapshot_failed", level="error", output=b"disk full \xff", path=tmp_path, error=OSError(28, "full"))
    line = json.loads(capsys.readouterr().out)
    assert line["output"] == "disk full \ufffd" and line["path"] == str(tmp_path)
    assert line["error"] == "[Errno 28] full"


def test_access_log_with_a_lone_surrogate_drops_the_line_and_counts_it():
    """A lone surrogate (orjson's TypeError) costs the line, never the request the line is about."""
    stream = io.StringIO()
    log = AccessLog(stream)
    log.write({"request_id": "r1", "error": "bad \ud800 text"})
    log.write({"request_id": "r2", "model": "ü"})
    assert log.dropped == 1
    assert [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()] == ["r2"]
