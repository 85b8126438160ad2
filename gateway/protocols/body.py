"""The one parse of a client's JSON body, refusing text that cannot travel on.

orjson parses strictly: it refuses invalid UTF-8, a lone UTF-16 surrogate
written as an escape (``"\\ud800"``), and ``NaN`` / ``Infinity`` / numbers
that overflow a double, none of which could be sent on to an upstream. A body
it refuses is a 400; only such a body pays for a second, lenient parse that
finds the field to name for bad text (the common mistake of a client that
split a string mid-character), so the hot path is the one parse.

Integers beyond 64 bits become the nearest float (orjson's reading), so a
field that must be an integer (``max_tokens``) is refused by its own check
with the same 400 as any other out-of-range value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.protocols.canonical import ProtocolError


def parse_body(raw: bytes) -> Any:
    """The decoded JSON body; raises ProtocolError naming the field with invalid text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _refusal(raw, exc) from None


def _refusal(raw: bytes, exc: orjson.JSONDecodeError) -> ProtocolError:
    """Why orjson refused ``raw``, naming the field when its text is at fault."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        field = _field_with_bad_text(_lenient_parse(raw))
        where = f"'{field}'" if field else f"byte {bad.start}"
        return ProtocolError(f"the request body is not valid UTF-8 (at {where})", field)
    field = _field_with_bad_text(_lenient_parse(raw))  # the stdlib keeps a lone surrogate escape as is
    if field is not None:
        return ProtocolError(f"'{field}' contains a lone UTF-16 surrogate", field)
    return ProtocolError(f"the request body is not valid JSON: {exc}")


def _lenient_parse(raw: bytes) -> Any:
    """The body with each invalid byte kept as a surrogate, so the walk can find its field."""
    try:
        return json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than orjson's limit of 1024
        return None


def _field_with_bad_text(value: Any) -> str | None:
    """Path of the first string (key or value) that is not encodable as UTF-8, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return path or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not _encodable(key):
                    return path or "body"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
