"""The one parse of a client's JSON body, refusing text that cannot travel on.

ujson accepts two things the rest of the gateway cannot send anywhere: a lone
UTF-16 surrogate written as an escape (``"\\ud800"``) and its UTF-8 encoding
(bytes ``ED A0 80``). Either becomes a ``str`` that fails the moment it is
encoded for the upstream, which used to surface as a 500. Both are caught
here, before routing, as a 400 naming the field.

Cost on the hot path: one strict UTF-8 decode (C speed, no copy kept) and one
precompiled regex scan for a surrogate escape. Only a body that fails either
pays for the walk that finds the field to name.
"""

from __future__ import annotations

import json
import re
from typing import Any

import ujson

from gateway.protocols.canonical import ProtocolError

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_body(raw: bytes) -> Any:
    """The decoded JSON body; raises ProtocolError naming the field with invalid text."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        field = _field_with_bad_text(_lenient_parse(raw))
        where = f"'{field}'" if field else f"byte {exc.start}"
        raise ProtocolError(f"the request body is not valid UTF-8 (at {where})", field) from None
    try:
        body = ujson.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"the request body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw):  # a pair is fine (ujson joins it); a lone half is not
        field = _field_with_bad_text(body)
        if field is not None:
            raise ProtocolError(f"'{field}' contains a lone UTF-16 surrogate", field)
    return body


def _lenient_parse(raw: bytes) -> Any:
    """The body with each invalid byte kept as a surrogate, so the walk can find its field."""
    try:
        return json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError:
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
